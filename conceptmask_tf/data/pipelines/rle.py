"""COCO run-length masks: checked on the host, decoded in the input pipeline.

A COCO RLE lists alternating run lengths of 0s and 1s (starting with 0s) over the mask
read in column-major order; the compressed form packs the runs into a string. Records
are checked once on the host (`compressed_counts`): a corrupt string would otherwise
make `pycocotools` write past its buffer. The pipeline decodes with
`pycocotools.mask.decode` inside `tf.numpy_function`, which measured 2-3x faster than a
pure-graph decode (cumulative sum of run boundaries) on this machine kind: 0.6-0.85 ms
against 1.3-2.5 ms for a 480x640 mask with 2.4K runs (`tf.repeat` was slower still and
allocates [runs, longest run], which exhausts memory on masks with long and many runs).
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


def decode_mask_and_ignore(counts: tf.Tensor, ignore_counts: tf.Tensor, height: tf.Tensor,
                           width: tf.Tensor) -> tf.Tensor:
    """Decodes a mask and its ignore region in the input pipeline.

    Args:
        counts: string scalar, compressed counts checked by `compressed_counts`.
        ignore_counts: string scalar, same for the ignore region, "" for none.
        height, width: int32 scalars, the mask size.

    Returns:
        uint8 [height, width, 2]: channel 0 the mask, channel 1 the ignore region, in {0, 1}.
    """
    masks = tf.numpy_function(_decode_pair, [counts, ignore_counts, height, width], tf.uint8,
                              stateful=False)
    return tf.ensure_shape(masks, [None, None, 2])


def _decode_pair(counts: bytes, ignore_counts: bytes, height: np.int32,
                 width: np.int32) -> np.ndarray:
    # Strings arrive as bytes in a traced pipeline and as 0-d arrays when run eagerly.
    counts, ignore_counts = np.asarray(counts).item(), np.asarray(ignore_counts).item()
    size = [int(height), int(width)]
    mask = mask_utils.decode({"size": size, "counts": counts})  # [h, w] uint8
    ignore = (mask_utils.decode({"size": size, "counts": ignore_counts}) if ignore_counts
              else np.zeros_like(mask))
    return np.stack([mask, ignore], axis=-1)
