"""Stage 2 input: images with per-concept box masks (paper §4.2, OIVG boxes).

The box masks are rasterised in the graph from normalised box coordinates mapped into the
image's crop window, then flipped with the image, so masks and image always agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.data.box_geometry import clip_boxes
from conceptmask_tf.data.datasets.augment import Augmentation, crop, crop_boxes, flip_left_right
from conceptmask_tf.data.datasets.builder import check_fields, check_positive, make_dataset
from conceptmask_tf.data.images import resize_image
from conceptmask_tf.data.shards import ShardSet
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import BoxedImage

UNKNOWN_CONCEPT = register_skip_reason("concept not in concept_index (its boxes are dropped)",
                                       Severity.EXPECTED)
NO_KNOWN_CONCEPT = register_skip_reason("image without a box of a concept in concept_index",
                                        Severity.EXPECTED)
NON_FINITE_BOX = register_skip_reason("box with non-finite coordinates", Severity.BAD_ANNOTATION)
TOO_MANY_CONCEPTS = register_skip_reason("more concepts than max_concepts (a subset is used)",
                                         Severity.EXPECTED)


def rasterize_boxes(boxes: tf.Tensor, size: int) -> tf.Tensor:
    """Box masks on a size x size grid: a cell is inside if its centre is inside the box.

    Edges follow `conceptmask_tf.data.boxes.rasterize_boxes` (xmin <= x < xmax), so boxes
    sharing an edge do not both claim a cell. Along an axis where a box covers no cell
    centre (a box thinner than a cell), the cell holding the box's middle is marked
    instead, so no box vanishes.

    Args:
        boxes: float32 [N, 4] (xmin, ymin, xmax, ymax), normalised.
        size: Grid side m.

    Returns:
        float32 [N, m, m] in {0, 1}, rows along y.
    """
    centres = (tf.range(size, dtype=tf.float32) + 0.5) / size  # [m]

    def inside(low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:  # [N], [N] -> bool [N, m]
        covered = (centres >= low[:, None]) & (centres < high[:, None])
        middle = tf.cast(tf.floor((low + high) / 2 * size), tf.int32)
        middle_cell = tf.one_hot(tf.clip_by_value(middle, 0, size - 1), size, on_value=True,
                                 off_value=False, dtype=tf.bool)
        empty = ~tf.reduce_any(covered, axis=1, keepdims=True)
        return covered | (empty & middle_cell)

    rows = inside(boxes[:, 1], boxes[:, 3])  # [N, m]
    cols = inside(boxes[:, 0], boxes[:, 2])  # [N, m]
    return tf.cast(rows[:, :, None] & cols[:, None, :], tf.float32)


def num_refinement_examples(images: Sequence[BoxedImage],
                            concept_index: Mapping[str, int]) -> int:
    """Examples per pass before file checks: images with a box of an indexed concept."""
    return sum(any(c in concept_index for c in image.concepts) for image in images)


def refinement_dataset(data_root: str, images: Sequence[BoxedImage],
                       concept_index: Mapping[str, int], *, image_size: int, mask_size: int,
                       max_concepts: int, batch_size: int, training: bool,
                       seed: int | None = None, flip: bool = True, scale_jitter: float = 0.0,
                       max_bad_fraction: float | None = None,
                       skips: SkipCounter | None = None,
                       shuffle_buffer: int | None = None,
                       repeat: bool = False,
                       image_labels: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                       max_labels: int = 16) -> tf.data.Dataset:
    """Batches of images with one box mask per concept, padded to `max_concepts`.

    The paper's stage-2 supervision G: 1 inside the boxes of the concept, 0 outside. Per
    image, the concepts in `concept_index` are kept (others counted in `skips`); an
    image with none is dropped. Above `max_concepts`, eval keeps the first ones (in
    first-seen order) and training draws a new random subset every pass; such images are
    counted. A concept's mask is 1 on every cell whose centre lies in one of its boxes
    (`rasterize_boxes`). After a random crop, a concept with no box left in view gets
    `concept_valid = 0` (its id is kept).

    Args:
        data_root: The directory image paths are relative to.
        images: The box records.
        concept_index: Concept name -> id (the row of its word vector).
        image_size: Output image side S.
        mask_size: Box mask side m.
        max_concepts: Concept slots per image Kmax.
        batch_size: Examples per batch B.
        training: Shuffle, augment and drop the last partial batch; otherwise record order,
            no augmentation, all examples.
        seed: Makes shuffling, augmentation and concept subsets repeatable.
        flip: Random horizontal flips (of image and box masks) in training.
        scale_jitter: Random zoom-in crops in training (see `Augmentation`).
        max_bad_fraction: Stop when more than this fraction of the records is bad
            (`make_dataset`; bad image files are found and dropped where they are read);
            None: no limit.
        skips: Counts dropped records; by default a new counter that is logged.
        shuffle_buffer: Shuffle buffer; None shuffles all examples.
        repeat: Repeat indefinitely; pair with `steps_per_epoch`.
        image_labels: Verified image-level labels per image (its path as in `images`):
            (vocabulary rows int [n], present float [n] in {0, 1}); None leaves them out.
            An image without an entry gets none.
        max_labels: Label slots per image L (more are subsampled like the concepts).

    Returns:
        Dataset of (features, targets):
        features {"image": float32 [B, S, S, 3] in [0, 255],
                  "concept_ids": int32 [B, Kmax], -1 in padding slots},
        targets {"box_masks": float32 [B, Kmax, m, m] in {0, 1}, zero in padding slots,
                 "concept_valid": float32 [B, Kmax], 1 for a supervised concept}.
        With `image_labels`, also features["label_ids"] int32 [B, L] (-1 = padding) and
        targets["label_present"] float32 [B, L].

    Raises:
        DataError: No usable example is left.
    """
    check_positive(image_size=image_size, mask_size=mask_size, max_concepts=max_concepts,
                   batch_size=batch_size, max_labels=max_labels)
    counter = skips if skips is not None else SkipCounter(source=data_root)
    elements = refinement_elements(data_root, images, concept_index, max_concepts, counter,
                                   image_labels)
    dataset = _pipeline(elements, len(elements["path"]), image_size=image_size,
                        mask_size=mask_size, max_concepts=max_concepts,
                        with_labels=image_labels is not None, max_labels=max_labels,
                        flip=flip, scale_jitter=scale_jitter, batch_size=batch_size,
                        training=training, seed=seed, shuffle_buffer=shuffle_buffer,
                        repeat=repeat, skips=counter, max_bad_fraction=max_bad_fraction)
    if skips is None:
        counter.log()
    return dataset


def refinement_elements(data_root: str, images: Sequence[BoxedImage],
                        concept_index: Mapping[str, int], max_concepts: int,
                        skips: SkipCounter,
                        image_labels: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
                        ) -> dict[str, Any]:
    """Stage 2's per-example host rows (what `refinement_dataset` reads and
    `shards.write_shards` writes): "path", "concept_ids" int32 [N, None] (first-seen
    order), "boxes" float32 [N, None, 4] (clipped), "box_slots" int32 [N, None] (each
    box's index into its concept_ids) and, with `image_labels`, "label_ids" int32
    [N, None] and "label_present" float32 [N, None]. Dropped boxes and images are counted
    in `skips` (`max_concepts` only decides which images are counted as over it)."""
    rows = [row for row in (_image_row(image, concept_index, max_concepts, skips)
                            for image in images) if row is not None]
    elements: dict[str, Any] = {
        "path": [os.path.join(data_root, row[0]) for row in rows],
        "concept_ids": _ragged([row[1] for row in rows], np.int32),
        "boxes": _ragged([row[2] for row in rows], np.float32),
        "box_slots": _ragged([row[3] for row in rows], np.int32),
    }
    if image_labels is not None:
        no_labels = (np.zeros(0, np.int32), np.zeros(0, np.float32))
        labels = [image_labels.get(row[0], no_labels) for row in rows]
        elements["label_ids"] = _ragged([ids for ids, _ in labels], np.int32)
        elements["label_present"] = _ragged([present for _, present in labels], np.float32)
    return elements


def refinement_dataset_from_shards(shards: ShardSet, *, image_size: int, mask_size: int,
                                   max_concepts: int, batch_size: int, training: bool,
                                   skips: SkipCounter, with_labels: bool = False,
                                   max_labels: int = 16, seed: int | None = None,
                                   flip: bool = True, scale_jitter: float = 0.0,
                                   max_bad_fraction: float | None = None,
                                   shuffle_buffer: int | None = None, repeat: bool = False,
                                   input_pipelines: tuple[int, int] = (1, 0)
                                   ) -> tf.data.Dataset:
    """`refinement_dataset` of the examples written to `shards` (`shards.write_shards` of
    `refinement_elements`); `input_pipelines` splits the files between workers
    (`make_dataset`).

    Raises:
        DataError: The shards hold another stage's examples, or no labels with
            `with_labels`.
    """
    check_positive(image_size=image_size, mask_size=mask_size, max_concepts=max_concepts,
                   batch_size=batch_size, max_labels=max_labels)
    check_fields(shards, "refinement", ["concept_ids", "boxes", "box_slots"]
                 + (["label_ids", "label_present"] if with_labels else []))
    return _pipeline(shards, shards.num_examples, image_size=image_size, mask_size=mask_size,
                     max_concepts=max_concepts, with_labels=with_labels,
                     max_labels=max_labels, flip=flip, scale_jitter=scale_jitter,
                     batch_size=batch_size, training=training, seed=seed,
                     shuffle_buffer=shuffle_buffer, repeat=repeat, skips=skips,
                     max_bad_fraction=max_bad_fraction, input_pipelines=input_pipelines)


def _pipeline(source: dict[str, Any] | ShardSet, num_examples: int, *, image_size: int,
              mask_size: int, max_concepts: int, with_labels: bool, max_labels: int,
              flip: bool, scale_jitter: float, **options: Any) -> tf.data.Dataset:
    augmentation = Augmentation(flip=flip, scale_jitter=scale_jitter)

    def parse(element: dict[str, tf.Tensor], seed: tf.Tensor | None):
        view_seed = subset_seed = None
        if seed is not None:
            view_seed, subset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        view = augmentation.view(view_seed)
        image, window = crop(element["image"], view.window)
        image = flip_left_right(resize_image(image, image_size), view.flip)  # [S, S, 3]
        boxes, visible = crop_boxes(element["boxes"], window)  # [nb, 4], [nb]
        box_masks = rasterize_boxes(boxes, mask_size) * tf.cast(visible, tf.float32)[:, None,
                                                                                       None]
        concept_ids = element["concept_ids"]  # [n]
        n = tf.shape(concept_ids)[0]
        slots = element["box_slots"]  # [nb] index into concept_ids; every slot has a box
        masks = tf.math.unsorted_segment_max(box_masks, slots, n)  # [n, m, m]
        # Flipping the grid, not the boxes, mirrors the masks exactly, edge cells included.
        masks = flip_left_right(masks, view.flip, width_axis=-1)
        valid = tf.math.unsorted_segment_max(tf.cast(visible, tf.float32), slots, n)  # [n]
        order = (tf.range(n) if subset_seed is None
                 else tf.argsort(tf.random.stateless_uniform([n], subset_seed)))
        chosen = order[:max_concepts]  # [k]
        pad = max_concepts - tf.size(chosen)
        features = {
            "image": image,
            "concept_ids": tf.ensure_shape(
                tf.pad(tf.gather(concept_ids, chosen), [[0, pad]], constant_values=-1),
                [max_concepts]),
        }
        targets = {
            "box_masks": tf.ensure_shape(
                tf.pad(tf.gather(masks, chosen), [[0, pad], [0, 0], [0, 0]]),
                [max_concepts, mask_size, mask_size]),
            "concept_valid": tf.ensure_shape(tf.pad(tf.gather(valid, chosen), [[0, pad]]),
                                             [max_concepts]),
        }
        if with_labels:
            label_ids, present = element["label_ids"], element["label_present"]  # [n_l]
            label_seed = (None if subset_seed is None
                          else tf.random.experimental.stateless_fold_in(subset_seed, 1))
            features["label_ids"], targets["label_present"] = _label_slots(
                label_ids, present, max_labels, label_seed)
        return features, targets

    return make_dataset(source, parse, num_examples=num_examples, what="refinement",
                        **options)


def _label_slots(label_ids: tf.Tensor, present: tf.Tensor, max_labels: int,
                 seed: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
    """Up to L labels (the first ones, or a random subset with a seed), padded with -1 / 0."""
    n = tf.shape(label_ids)[0]
    order = (tf.range(n) if seed is None
             else tf.argsort(tf.random.stateless_uniform([n], seed)))
    chosen = order[:max_labels]
    pad = max_labels - tf.size(chosen)
    ids = tf.pad(tf.gather(label_ids, chosen), [[0, pad]], constant_values=-1)
    return (tf.ensure_shape(ids, [max_labels]),
            tf.ensure_shape(tf.pad(tf.gather(present, chosen), [[0, pad]]), [max_labels]))


def _image_row(image: BoxedImage, concept_index: Mapping[str, int], max_concepts: int,
               skips: SkipCounter) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """(path, concept ids [n], boxes [nb, 4], box slots [nb]) or None if nothing is left."""
    for concept in image.concepts:
        if concept not in concept_index:
            skips.skip(UNKNOWN_CONCEPT, path=image.image, record=concept)
    boxes = [b for b in image.boxes if b.concept in concept_index]
    coords = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes],
                      dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(coords).all(axis=1)
    clipped, reasons = clip_boxes(*np.nan_to_num(coords).T)
    good = finite & np.array([r is None for r in reasons], dtype=bool)
    for box, ok, reason in zip(boxes, good, reasons):
        if not ok:
            skips.skip(reason or NON_FINITE_BOX, path=image.image, record=box.concept)
    boxes = [b for b, ok in zip(boxes, good) if ok]
    concepts = list(dict.fromkeys(b.concept for b in boxes))  # first-seen order
    if not concepts:
        skips.skip(NO_KNOWN_CONCEPT, path=image.image)
        return None
    if len(concepts) > max_concepts:
        skips.skip(TOO_MANY_CONCEPTS, path=image.image,
                   record=f"{len(concepts)} > {max_concepts}")
    slot_of = {c: i for i, c in enumerate(concepts)}
    ids = np.array([concept_index[c] for c in concepts], dtype=np.int32)
    slots = np.array([slot_of[b.concept] for b in boxes], dtype=np.int32)
    return image.image, ids, clipped[good].astype(np.float32), slots


def _ragged(rows: list[np.ndarray], dtype: type) -> tf.RaggedTensor:
    """Stacks variable-length rows [n_i, ...] into a ragged tensor [N, None, ...]."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    values = np.concatenate(rows).astype(dtype) if rows else np.zeros(0, dtype)
    return tf.RaggedTensor.from_row_lengths(values, lengths)
