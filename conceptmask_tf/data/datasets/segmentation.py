"""Stage 3 input: one example per (image, concept mask) (paper §4.3, COCO masks)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.data.datasets.augment import (
    Augmentation,
    crop,
    flip_left_right,
    nearest_window_pixels,
    resample_window,
)
from conceptmask_tf.data.datasets.builder import check_fields, check_positive, make_dataset
from conceptmask_tf.data.datasets.rle import compressed_counts, sample_masks
from conceptmask_tf.data.images import resize_image
from conceptmask_tf.data.shards import ShardSet
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import MaskedImage

UNKNOWN_CONCEPT = register_skip_reason("concept not in concept_index (its mask is dropped)",
                                       Severity.EXPECTED)
BAD_MASK = register_skip_reason("bad mask RLE", Severity.BAD_ANNOTATION)


def num_segmentation_examples(images: Sequence[MaskedImage],
                              concept_index: Mapping[str, int] | None) -> int:
    """Examples per pass before file and RLE checks: masks of indexed concepts (all if None)."""
    return sum(concept_index is None or m.concept in concept_index
               for image in images for m in image.masks)


def segmentation_dataset(data_root: str, images: Sequence[MaskedImage],
                         concept_index: Mapping[str, int] | None, *, image_size: int,
                         batch_size: int, training: bool, seed: int | None = None,
                         flip: bool = True, scale_jitter: float = 0.0,
                         max_bad_fraction: float | None = None,
                         keep_bad_images: bool = False,
                         skips: SkipCounter | None = None,
                         shuffle_buffer: int | None = None,
                         repeat: bool = False,
                         attention: Sequence[np.ndarray] | None = None) -> tf.data.Dataset:
    """Batches of (image, concept) examples with the concept's full-resolution mask.

    Each `ConceptMask` of an image is one example, so an image appears once per concept.
    Masks are cropped with the image and resized by nearest neighbour (an output pixel
    takes the source pixel under its centre), so they stay exactly binary; they are
    decoded and sampled once per batch (`rle.sample_masks`). Crowd pixels
    (`ignore_rle`) get weight 0.

    Args:
        data_root: The directory image paths are relative to.
        images: The mask records.
        concept_index: Concept name -> id (the row of its word vector); masks of other
            concepts are counted in `skips` and dropped. None keeps every mask, with
            `concept_id` -1 (for label-agnostic use).
        image_size: Output side S of image and mask.
        batch_size: Examples per batch B.
        training: Shuffle, augment and drop the last partial batch; otherwise record order,
            no augmentation, all examples.
        seed: Makes shuffling and augmentation repeatable.
        flip: Random horizontal flips (of image and masks) in training.
        scale_jitter: Random zoom-in crops in training (see `Augmentation`).
        max_bad_fraction: Stop when more than this fraction of the records is bad
            (`make_dataset`; bad image files are found and dropped where they are read);
            None: no limit.
        keep_bad_images: Keep the examples of bad image files (black images), so the
            outputs align with the records: the attention cache (`make_dataset`).
        skips: Counts dropped records; by default a new counter that is logged.
        shuffle_buffer: Shuffle buffer; None shuffles all examples.
        repeat: Repeat indefinitely; pair with `steps_per_epoch`.
        attention: Precomputed attention maps to carry with the examples, one array
            float [N, h_a, w_a] per scale a, row n for the n-th example of this same call
            with `training=False` (record order, skipped records left out; see
            `training.segmentation.attention_cache`). Each example's maps get its
            view: the crop window resampled (`resample_window`) and the flip.

    Returns:
        Dataset of (features, targets):
        features {"image": float32 [B, S, S, 3] in [0, 255], "concept_id": int32 [B],
                  and with `attention` "attention_a": float32 [B, 1, h_a, w_a]},
        targets {"mask": float32 [B, S, S, 1] in {0, 1},
                 "mask_weight": float32 [B, S, S, 1], 0 on crowd pixels, else 1}.

    Raises:
        DataError: No usable example is left.
        ValueError: `attention` does not have one row per usable example.
    """
    check_positive(image_size=image_size, batch_size=batch_size)
    counter = skips if skips is not None else SkipCounter(source=data_root)
    elements = segmentation_elements(data_root, images, concept_index, counter)
    num_rows = len(elements["path"])
    for scale, maps in enumerate(attention or ()):
        if len(maps) != num_rows or np.ndim(maps) != 3:
            raise ValueError(f"attention at scale {scale} must be [{num_rows}, h, w] (one "
                             f"map per usable example), got shape {np.shape(maps)}")
        elements[f"attention_{scale}"] = np.asarray(maps, dtype=np.float32)
    dataset = _pipeline(elements, num_rows, image_size=image_size, flip=flip,
                        scale_jitter=scale_jitter, batch_size=batch_size, training=training,
                        seed=seed, shuffle_buffer=shuffle_buffer, repeat=repeat,
                        skips=counter, max_bad_fraction=max_bad_fraction,
                        keep_bad_images=keep_bad_images)
    if skips is None:
        counter.log()
    return dataset


def segmentation_elements(data_root: str, images: Sequence[MaskedImage],
                          concept_index: Mapping[str, int] | None, skips: SkipCounter
                          ) -> dict[str, Any]:
    """Stage 3's per-example host rows, one per usable mask (what `segmentation_dataset`
    reads and `shards.write_shards` writes): "path", "concept_id" int32 [N], "size" int32
    [N, 2] (the record's height, width), "counts" and "ignore_counts" (compressed RLE
    bytes; b"" for no crowd region). Dropped masks are counted in `skips`."""
    rows = [row for image in images for row in _mask_rows(image, concept_index, skips)]
    return {
        "path": [os.path.join(data_root, row[0]) for row in rows],
        "concept_id": np.array([row[1] for row in rows], dtype=np.int32),
        "size": np.array([row[2] for row in rows], dtype=np.int32).reshape(-1, 2),
        "counts": [row[3] for row in rows],
        "ignore_counts": [row[4] for row in rows],
    }


def segmentation_dataset_from_shards(shards: ShardSet, *, image_size: int, batch_size: int,
                                     training: bool, skips: SkipCounter,
                                     seed: int | None = None, flip: bool = True,
                                     scale_jitter: float = 0.0,
                                     max_bad_fraction: float | None = None,
                                     shuffle_buffer: int | None = None, repeat: bool = False,
                                     input_pipelines: tuple[int, int] = (1, 0)
                                     ) -> tf.data.Dataset:
    """`segmentation_dataset` (without cached attention) of the examples written to
    `shards` (`shards.write_shards` of `segmentation_elements`); `input_pipelines` splits
    the files between workers (`make_dataset`).

    Raises:
        DataError: The shards hold another stage's examples.
    """
    check_positive(image_size=image_size, batch_size=batch_size)
    check_fields(shards, "segmentation",
                 ["concept_id", "size", "counts", "ignore_counts"])
    return _pipeline(shards, shards.num_examples, image_size=image_size, flip=flip,
                     scale_jitter=scale_jitter, batch_size=batch_size, training=training,
                     seed=seed, shuffle_buffer=shuffle_buffer, repeat=repeat, skips=skips,
                     max_bad_fraction=max_bad_fraction, input_pipelines=input_pipelines)


def _pipeline(source: dict[str, Any] | ShardSet, num_examples: int, *, image_size: int,
              flip: bool, scale_jitter: float, **options: Any) -> tf.data.Dataset:
    augmentation = Augmentation(flip=flip, scale_jitter=scale_jitter)

    def parse(element: dict[str, tf.Tensor], seed: tf.Tensor | None):
        view = augmentation.view(seed)
        image, window = crop(element["image"], view.window)
        features = {"image": flip_left_right(resize_image(image, image_size), view.flip),
                    "concept_id": element["concept_id"]}  # image [S, S, 3]
        for key in (k for k in element if k.startswith("attention_")):
            maps = resample_window(element[key][..., tf.newaxis], window)  # [h, w, 1]
            maps = tf.transpose(flip_left_right(maps, view.flip), (2, 0, 1))
            features[key] = tf.ensure_shape(maps, [1, *element[key].shape])  # static h, w
        extras = {"window": view.window, "flip": view.flip, "size": element["size"],
                  "counts": element["counts"], "ignore_counts": element["ignore_counts"]}
        return features, {}, extras

    def finish_batch(features: dict[str, tf.Tensor], _, extras: dict[str, tf.Tensor]):
        # The masks read the image's normalised window: they align even if the record's
        # size is not the file's (then they differ in pixels).
        rows, cols = nearest_window_pixels(extras["size"], extras["window"], image_size)
        cols = tf.where(extras["flip"][:, tf.newaxis], tf.reverse(cols, [1]), cols)
        masks = sample_masks(extras["counts"], extras["ignore_counts"], extras["size"], rows,
                             cols)  # [B, S, S, 2] uint8
        masks = tf.ensure_shape(masks, features["image"].shape[:-1].concatenate([2]))
        masks = tf.cast(masks, tf.float32)
        return features, {"mask": masks[..., 0:1], "mask_weight": 1.0 - masks[..., 1:2]}

    return make_dataset(source, parse, num_examples=num_examples, what="segmentation",
                        finish_batch=finish_batch, **options)


def _mask_rows(image: MaskedImage, concept_index: Mapping[str, int] | None,
               skips: SkipCounter) -> list[tuple[str, int, tuple[int, int], bytes, bytes]]:
    """(path, concept id, (h, w), counts, ignore counts or b"") per usable mask."""
    rows = []
    for concept_mask in image.masks:
        concept = concept_mask.concept
        if concept_index is not None and concept not in concept_index:
            skips.skip(UNKNOWN_CONCEPT, path=image.image, record=concept)
            continue
        try:
            counts = compressed_counts(concept_mask.rle, image.height, image.width)
            ignore = (b"" if concept_mask.ignore_rle is None else
                      compressed_counts(concept_mask.ignore_rle, image.height, image.width))
        except (ValueError, KeyError, TypeError) as e:
            skips.skip(BAD_MASK, path=image.image, record=f"{concept}: {e}")
            continue
        concept_id = -1 if concept_index is None else concept_index[concept]
        rows.append((image.image, concept_id, (image.height, image.width), counts, ignore))
    return rows
