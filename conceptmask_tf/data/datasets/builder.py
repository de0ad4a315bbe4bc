"""What the stage pipelines share: file checks, then shuffle, augment, batch and prefetch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.data.images import check_images
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError

# parse(element, seed) -> (features, targets); seed is int64 [2] in training, None in eval.
# With a FinishBatch, parse returns (features, targets, extras) and finish_batch maps the
# batched triple to (features, targets).
Parse = Callable[[dict[str, tf.Tensor], tf.Tensor | None], Any]
FinishBatch = Callable[[Any, Any, Any], Any]


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive int."""
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def usable_images(data_root: str, paths: Sequence[str], skips: SkipCounter,
                  check_files: bool) -> np.ndarray:
    """bool [len(paths)]: which image files the graph can read (all if not checking).

    Each distinct file is checked once; failures are counted in `skips`.
    """
    if not check_files:
        return np.ones(len(paths), dtype=bool)
    distinct = list(dict.fromkeys(paths))
    ok = dict(zip(distinct, check_images(data_root, distinct, skips)))
    return np.array([ok[p] for p in paths], dtype=bool)


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in one pass over `num_examples` (training drops the last partial batch)."""
    check_positive(batch_size=batch_size)
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def make_dataset(elements: Mapping[str, Any], parse: Parse, *, num_examples: int,
                 batch_size: int, training: bool, seed: int | None,
                 shuffle_buffer: int | None, repeat: bool, what: str,
                 skips: SkipCounter, finish_batch: FinishBatch | None = None
                 ) -> tf.data.Dataset:
    """Builds the batched dataset from per-example host arrays.

    Training: shuffle (seeded, reshuffled each pass), one int64 seed per example from
    `Dataset.random` (so parallel augmentation stays deterministic), fixed batch shapes
    (`drop_remainder=True`). Eval: record order, no seeds, every example kept.

    Args:
        elements: Arrays (or ragged tensors) with `num_examples` rows.
        parse: Maps one row (and its seed) to (features, targets).
        num_examples: Rows in `elements`.
        batch_size: Examples per batch.
        training: Training or eval mode.
        seed: Shuffle and augmentation seed; None for a nondeterministic order.
        shuffle_buffer: Shuffle buffer size; None for all examples (a full shuffle).
        repeat: Repeat indefinitely (each pass reshuffled), for `steps_per_epoch`.
        what: Names the pipeline in errors.
        skips: The skips so far, quoted when nothing is left.
        finish_batch: Work done once per batch instead of once per example (vectorised
            ops; a tf.data function pays a fixed cost per op and example): maps the
            batched (features, targets, extras) of `parse` to (features, targets).

    Raises:
        DataError: No example is left.
        ValueError: Training without `repeat` on fewer examples than one batch.
    """
    if num_examples == 0:
        raise DataError(f"no usable {what} examples. {skips.report()}".strip())
    if training and not repeat and num_examples < batch_size:
        raise ValueError(f"{num_examples} {what} examples make no full batch of {batch_size}; "
                         "lower batch_size or pass repeat=True")
    ds = tf.data.Dataset.from_tensor_slices(dict(elements))
    if training:
        ds = ds.shuffle(shuffle_buffer or num_examples, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
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
    return ds.with_options(options)
