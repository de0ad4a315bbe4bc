"""What the stage pipelines share: shuffle, checked image reads, augment, batch, prefetch."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.data.images import ImageReader
from conceptmask_tf.data.shards import ShardSet, shard_examples
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError

# parse(element, seed) -> (features, targets); seed is int64 [2] in training, None in eval;
# element["image"] is the decoded image of element["path"], uint8 [H, W, 3].
# With a FinishBatch, parse returns (features, targets, extras) and finish_batch maps the
# batched triple to (features, targets).
Parse = Callable[[dict[str, tf.Tensor], tf.Tensor | None], Any]
FinishBatch = Callable[[Any, Any, Any], Any]


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive int."""
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_fields(shards: ShardSet, stage: str, needed: Sequence[str]) -> None:
    """Raises DataError unless `shards` hold `stage`'s examples with the `needed` fields."""
    where = os.path.join(shards.directory, "shards.json")
    if shards.stage != stage:
        raise DataError(f"these shards hold {shards.stage} examples, not {stage} ones", where)
    missing = [name for name in needed if name not in shards.fields]
    if missing:
        raise DataError(f"the {stage} shards have no {', '.join(missing)} field(s): write "
                        "them again with conceptmask-shards", where)


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in one pass over `num_examples` (training drops the last partial batch)."""
    check_positive(batch_size=batch_size)
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def make_dataset(elements: Mapping[str, Any] | ShardSet, parse: Parse, *, num_examples: int,
                 batch_size: int, training: bool, seed: int | None,
                 shuffle_buffer: int | None, repeat: bool, what: str,
                 skips: SkipCounter, finish_batch: FinishBatch | None = None,
                 max_bad_fraction: float | None = None, keep_bad_images: bool = False,
                 input_pipelines: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Builds the batched dataset from per-example host arrays or from shards.

    Each example's image file ("path") is read and decoded after the shuffle, by an
    `ImageReader`: nothing reads the images before the first step, and a bad file is
    skipped (its example dropped) and counted in `skips` where it is read. From shards,
    the image bytes stored with each example are decoded in the graph (their writer
    decoded each one and left bad files out, counted: `shards.write_shards`). From the
    decoded image on, both sources take one code path. Training:
    shuffle (seeded, reshuffled each pass), one int64 seed per example from
    `Dataset.random` (so parallel augmentation stays deterministic), fixed batch shapes
    (`drop_remainder=True`). Eval: record order, no seeds, every example with a good
    image kept.

    Args:
        elements: Arrays (or ragged tensors) with `num_examples` rows, or the shards
            holding them (`shards.write_shards`; files split between input pipelines,
            interleaved, records shuffled in `shuffle_buffer`: `shards.shard_examples`).
        parse: Maps one row (and its seed) to (features, targets).
        num_examples: Rows in `elements`.
        batch_size: Examples per batch.
        training: Training or eval mode.
        seed: Shuffle and augmentation seed; None for a nondeterministic order.
        shuffle_buffer: Shuffle buffer size; None for all examples (a full shuffle).
        repeat: Repeat indefinitely (each pass reshuffled), for `steps_per_epoch`.
        what: Names the pipeline in errors.
        skips: The skips so far, quoted when nothing is left; bad images are added.
        finish_batch: Work done once per batch instead of once per example (vectorised
            ops; a tf.data function pays a fixed cost per op and example): maps the
            batched (features, targets, extras) of `parse` to (features, targets).
        max_bad_fraction: Stop the pipeline (`SkipCounter.check_bad_fraction`, DataError
            in `skips.over_limit`) as soon as more than this fraction of the records is
            bad; None: no limit. Every image bad stops it too (training would wait for a
            good one forever). From shards, the limit was checked before training on the
            writer's counts.
        keep_bad_images: Keep the examples of bad images, with a black 1 x 1 image, so
            the outputs stay aligned with the records (e.g. a cache of per-example
            outputs for a pipeline that drops them); they are counted all the same.
        input_pipelines: (count, index) of this worker's input pipeline: shards are
            split between them by file (host arrays are left to tf.distribute).

    Raises:
        DataError: No example is left.
        ValueError: Training without `repeat` on fewer examples than one batch.
    """
    if num_examples == 0:
        raise DataError(f"no usable {what} examples. {skips.report()}".strip())
    if training and not repeat and num_examples < batch_size:
        raise ValueError(f"{num_examples} {what} examples make no full batch of {batch_size}; "
                         "lower batch_size or pass repeat=True")
    from_shards = isinstance(elements, ShardSet)
    if from_shards:  # their writer decoded each image and left bad ones out, counted
        ds = shard_examples(elements, training=training, seed=seed,
                            shuffle_buffer=shuffle_buffer, repeat=repeat,
                            input_pipelines=input_pipelines)
    else:
        ds = tf.data.Dataset.from_tensor_slices(dict(elements))
        if training:
            ds = ds.shuffle(shuffle_buffer or num_examples, seed=seed,
                            reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = _read_images(ds, elements["path"], num_examples, what=what, skips=skips,
                          max_bad_fraction=max_bad_fraction, keep_bad_images=keep_bad_images)
    if training:
        seeds = tf.data.Dataset.random(seed=None if seed is None else seed + 1,
                                       rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda element, r: parse(element, tf.stack([r, tf.constant(0, tf.int64)])),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda element: parse(element, None), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    if finish_batch is not None:
        ds = ds.map(finish_batch, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    if from_shards:  # split by file above, per worker
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
    return ds.with_options(options)


def _read_images(ds: tf.data.Dataset, paths: Any, num_examples: int, *, what: str,
                 skips: SkipCounter, max_bad_fraction: float | None,
                 keep_bad_images: bool) -> tf.data.Dataset:
    """Replaces each element's "path" by its checked "image" (`ImageReader`), dropping
    bad ones unless `keep_bad_images`; enforces the limits of `make_dataset`."""
    distinct: list[int] = []  # distinct image files, counted at the first bad one only

    def check_limits() -> None:
        if max_bad_fraction is not None:
            skips.check_bad_fraction(num_examples, max_bad_fraction)
        if not distinct:  # a pass over the paths, kept off start-up
            distinct.append(len(set(np.asarray(paths).tolist())))
        if len(reader.bad_files) >= distinct[0]:
            skips.over_limit = DataError(f"no usable {what} image: every image file is bad. "
                                         f"{skips.report()}".strip())
            raise skips.over_limit

    reader = ImageReader(skips, check_limits)

    def read(element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image, ok = reader(element.pop("path"))
        return {**element, "image": image, "image_ok": ok}

    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    if not keep_bad_images:
        ds = ds.filter(lambda element: element["image_ok"])
    return ds
