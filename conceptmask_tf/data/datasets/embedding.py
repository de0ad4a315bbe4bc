"""Stage 1 input: images with their soft-topic target vectors (paper §4.1)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.data.datasets.augment import Augmentation, crop, flip_left_right
from conceptmask_tf.data.datasets.builder import check_fields, check_positive, make_dataset
from conceptmask_tf.data.images import resize_image
from conceptmask_tf.data.shards import ShardSet
from conceptmask_tf.data.skips import SkipCounter


def embedding_dataset(data_root: str, images: Sequence[str], targets: np.ndarray, *,
                      image_size: int, batch_size: int, training: bool,
                      seed: int | None = None, flip: bool = True, scale_jitter: float = 0.0,
                      max_bad_fraction: float | None = None,
                      skips: SkipCounter | None = None,
                      shuffle_buffer: int | None = None, repeat: bool = False,
                      tag_rows: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches of (image, soft-topic target) for the embedding network.

    Images are squashed to `image_size` x `image_size` (bilinear, no antialias) and go
    out as float32 pixels in [0, 255]. Files that cannot be read are counted in `skips`
    and dropped, with their targets, where the pipeline reads them (`make_dataset`).

    Args:
        data_root: The directory image paths are relative to.
        images: Image paths relative to `data_root`, [N].
        targets: float [N, D], row i the target of images[i].
        image_size: Output side S.
        batch_size: Examples per batch B.
        training: Shuffle, augment (flip, `scale_jitter`) and drop the last partial batch;
            otherwise record order, no augmentation, all examples.
        seed: Makes shuffling and augmentation repeatable.
        flip: Random horizontal flips in training.
        scale_jitter: Random zoom-in crops in training (see `Augmentation`).
        max_bad_fraction: Stop when more than this fraction of the records is bad
            (`make_dataset`); None: no limit.
        skips: Counts dropped files; by default a new counter that is logged.
        shuffle_buffer: Shuffle buffer; None shuffles all examples (memory grows with N).
        repeat: Repeat indefinitely; pair with `steps_per_epoch`.
        tag_rows: int [N, T], row i the vocabulary rows of images[i]'s tags (-1 pads),
            for the tag loss; None leaves them out.

    Returns:
        Dataset of (image float32 [B, S, S, 3], target float32 [B, D]), or with
        `tag_rows` (image, {"embedding": target, "tags": int32 [B, T]}).

    Raises:
        ValueError: `targets` or `tag_rows` is not aligned with `images`, or a size is
            not positive.
        DataError: No usable image is left.
    """
    check_positive(image_size=image_size, batch_size=batch_size)
    counter = skips if skips is not None else SkipCounter(source=data_root)
    elements = embedding_elements(data_root, images, targets, tag_rows)
    dataset = _pipeline(elements, len(images), image_size=image_size, batch_size=batch_size,
                        training=training, seed=seed, flip=flip, scale_jitter=scale_jitter,
                        max_bad_fraction=max_bad_fraction, skips=counter,
                        shuffle_buffer=shuffle_buffer, repeat=repeat,
                        with_tags=tag_rows is not None)
    if skips is None:
        counter.log()
    return dataset


def embedding_elements(data_root: str, images: Sequence[str], targets: np.ndarray,
                       tag_rows: np.ndarray | None = None) -> dict[str, Any]:
    """Stage 1's per-example host rows: "path", "target" float32 [N, D] and, with
    `tag_rows`, "tags" int32 [N, T] (what `embedding_dataset` reads and
    `shards.write_shards` writes).

    Raises:
        ValueError: `targets` or `tag_rows` is not aligned with `images`.
    """
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or len(targets) != len(images):
        raise ValueError(f"targets must be [len(images)={len(images)}, D], got {targets.shape}")
    elements: dict[str, Any] = {"path": [os.path.join(data_root, p) for p in images],
                                "target": targets}
    if tag_rows is not None:
        tag_rows = np.asarray(tag_rows, dtype=np.int32)
        if tag_rows.ndim != 2 or len(tag_rows) != len(images):
            raise ValueError(f"tag_rows must be [len(images)={len(images)}, T], got "
                             f"{tag_rows.shape}")
        elements["tags"] = tag_rows
    return elements


def embedding_dataset_from_shards(shards: ShardSet, *, image_size: int, batch_size: int,
                                  training: bool, skips: SkipCounter, with_tags: bool = False,
                                  seed: int | None = None, flip: bool = True,
                                  scale_jitter: float = 0.0,
                                  max_bad_fraction: float | None = None,
                                  shuffle_buffer: int | None = None, repeat: bool = False,
                                  input_pipelines: tuple[int, int] = (1, 0)
                                  ) -> tf.data.Dataset:
    """`embedding_dataset` of the examples written to `shards` (`shards.write_shards` of
    `embedding_elements`); `input_pipelines` splits the files between workers
    (`make_dataset`).

    Raises:
        DataError: The shards hold another stage's examples, or no tags with `with_tags`.
    """
    check_positive(image_size=image_size, batch_size=batch_size)
    check_fields(shards, "embedding", ["target"] + (["tags"] if with_tags else []))
    return _pipeline(shards, shards.num_examples, image_size=image_size,
                     batch_size=batch_size, training=training, seed=seed, flip=flip,
                     scale_jitter=scale_jitter, max_bad_fraction=max_bad_fraction,
                     skips=skips, shuffle_buffer=shuffle_buffer, repeat=repeat,
                     with_tags=with_tags, input_pipelines=input_pipelines)


def _pipeline(source: dict[str, Any] | ShardSet, num_examples: int, *, image_size: int,
              with_tags: bool, flip: bool, scale_jitter: float, **options: Any
              ) -> tf.data.Dataset:
    augmentation = Augmentation(flip=flip, scale_jitter=scale_jitter)

    def parse(element: dict[str, tf.Tensor], seed: tf.Tensor | None):
        view = augmentation.view(seed)
        image, _ = crop(element["image"], view.window)
        image = flip_left_right(resize_image(image, image_size), view.flip)  # [S, S, 3]
        if with_tags:
            return image, {"embedding": element["target"], "tags": element["tags"]}
        return image, element["target"]

    return make_dataset(source, parse, num_examples=num_examples, what="embedding",
                        **options)
