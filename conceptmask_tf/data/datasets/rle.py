"""COCO run-length masks: checked on the host, decoded in the input pipeline.

A COCO RLE lists alternating run lengths of 0s and 1s (starting with 0s) over the mask
read in column-major order; the compressed form packs the runs into a string. Records
are checked once on the host (`compressed_counts`): a corrupt string would otherwise
make `pycocotools` write past its buffer. The pipeline decodes with
`pycocotools.mask.decode` in one `tf.numpy_function` call per batch (`sample_masks`),
which also crops and resizes by indexing. A call per example (the former code) holds the
GIL once per example, and at the concept world's 128 px that halved the pipeline's
throughput; graph versions measured slower still on this machine kind (a full decode by cumulative sums:
1.3-2.5 ms against 0.6-0.85 ms for a 480x640 mask with 2.4K runs; looking the sampled
pixels up in the run ends: 0.4-0.5 ms per 128x128 mask; `tf.repeat` allocates [runs,
longest run]). BENCHMARKS.md, "Input pipeline".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from pycocotools import mask as mask_utils

_MAX_GROUPS = 12  # 5-bit groups per value; 12 covers any int64-sized run


def compressed_counts(rle: dict[str, Any], height: int, width: int) -> bytes:
    """Checks an RLE against the image size and returns its compressed counts string.

    Args:
        rle: ``{"size": [h, w], "counts": ...}``, compressed (bytes or str) or
            uncompressed (a list of run lengths).
        height, width: The image size the mask must have.

    Returns:
        The compressed counts (bytes), as `pycocotools.mask.decode` takes them.

    Raises:
        ValueError: The size differs from (height, width), or the counts are malformed
            or do not cover height * width pixels.
    """
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise ValueError(f"mask size {size[0]}x{size[1]} differs from image size "
                         f"{height}x{width}")
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = np.asarray(counts, dtype=np.int64)
        counts = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)["counts"]
    else:
        counts = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        runs = unpack_counts(counts)
    if runs.size and runs.min() < 0:
        raise ValueError("negative run length")
    if runs.sum() != height * width:
        raise ValueError(f"runs cover {runs.sum()} pixels, not {height}x{width}")
    return counts


def unpack_counts(counts: bytes) -> np.ndarray:
    """Unpacks a compressed COCO counts string to run lengths.

    Each value is a little-endian sequence of 5-bit groups stored as chr(48 + group);
    bit 0x20 says more groups follow and bit 0x10 of the last group marks a negative
    value. From the third value on, each is stored as the difference to the value two
    places back, so the runs are cumulative sums over even and over odd positions.

    Args:
        counts: The compressed string.

    Returns:
        int64 [R] run lengths.

    Raises:
        ValueError: A byte outside the alphabet, or the string ends inside a value.
    """
    codes = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48  # [G]
    if codes.size == 0:
        return np.zeros(0, np.int64)
    if codes.min() < 0 or codes.max() >= 64:
        raise ValueError("byte outside the COCO counts alphabet")
    last = (codes & 0x20) == 0  # [G] last group of its value
    if not last[-1]:
        raise ValueError("counts string ends inside a value")
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))  # [R] first group of each value
    lengths = np.diff(np.append(starts, codes.size))  # [R] groups per value
    if lengths.max() > _MAX_GROUPS:
        raise ValueError("run length too large")
    position = np.arange(codes.size) - np.repeat(starts, lengths)  # [G] group index in value
    values = np.add.reduceat((codes & 0x1F) << (5 * position), starts)  # [R]
    negative = (codes[last] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def sample_masks(counts: tf.Tensor, ignore_counts: tf.Tensor, sizes: tf.Tensor,
                 rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """Decodes a batch of masks and their ignore regions and reads them at given pixels.

    One `tf.numpy_function` call per batch: pycocotools decodes each mask, numpy picks
    the rows and columns (a crop and nearest-neighbour resize as index lists, see
    `augment.nearest_window_pixels`).

    Args:
        counts: string [B], compressed counts checked by `compressed_counts`.
        ignore_counts: string [B], the same for the ignore regions, "" for none.
        sizes: int32 [B, 2], each mask's (height, width).
        rows: int32 [B, S_h] source rows.
        cols: int32 [B, S_w] source columns.

    Returns:
        uint8 [B, S_h, S_w, 2] in {0, 1}: channel 0 the mask, channel 1 the ignore
        region, at (rows[b, i], cols[b, j]).
    """
    masks = tf.numpy_function(_sample_batch, [counts, ignore_counts, sizes, rows, cols],
                              tf.uint8, stateful=False)
    return tf.ensure_shape(masks, [None, None, None, 2])


def _sample_batch(counts: np.ndarray, ignore_counts: np.ndarray, sizes: np.ndarray,
                  rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`sample_masks` on the host: numpy arrays in, uint8 [B, S_h, S_w, 2] out."""
    out = np.zeros((len(counts), rows.shape[1], cols.shape[1], 2), np.uint8)
    for b, (mask_counts, ignore, (height, width)) in enumerate(zip(counts, ignore_counts,
                                                                   sizes)):
        size = [int(height), int(width)]
        # Rows, then columns: 5x faster than one np.ix_ index at 128 x 128.
        mask = mask_utils.decode({"size": size, "counts": mask_counts})
        out[b, :, :, 0] = mask[rows[b]][:, cols[b]]
        if ignore:
            mask = mask_utils.decode({"size": size, "counts": ignore})
            out[b, :, :, 1] = mask[rows[b]][:, cols[b]]
    return out
