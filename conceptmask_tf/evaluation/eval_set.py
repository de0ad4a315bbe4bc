"""The evaluation ground truth of a data root: (image, concept) pairs of every split, per image.

The four `eval/<split>.json` files may list the same images (the concept world does): a
model pass costs one backbone and encoder run per image whatever the number of concepts,
so pairs are merged per image file across splits and every variant runs once per image.
Each pair remembers its split, so metrics are still split by supervision level.

A pair is a concept with its merged mask ("present") or a verified-absent concept
("neg_category_ids", not present). Pairs the model cannot be asked about are left out and
counted: concepts without a word vector (`unknown_concepts`), present concepts whose mask
has no pixel (crowd-only annotations) and images that cannot be read or whose size differs
from their annotation (`skips`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_utils

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data import coco
from conceptmask_tf.data.boxes import rasterize_boxes
from conceptmask_tf.data.images import check_images, read_image
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.records import load_json, require_dict
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.splits import GROUND_TRUTH_KINDS, read_split_ground_truth
from conceptmask_tf.data.types import ConceptBox, ConceptMask, MaskedImage
from conceptmask_tf.errors import DataError

logger = logging.getLogger(__name__)

EMPTY_MASK = "present concept whose mask has no pixel (crowd-only annotation), not scored"
SIZE_MISMATCH = "image size differs from its annotation (masks would not align)"
# Largest B * K * H * W of one model batch (float32 mask probabilities: 256 MB).
MAX_BATCH_ELEMENTS = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class EvalPair:
    """One (image, concept) question of one split.

    Attributes:
        split: The supervision split the pair belongs to.
        concept: Normalised concept name (it has a word vector).
        mask: The merged ground truth of a present concept; None for a verified-absent one.
    """

    split: str
    concept: str
    mask: ConceptMask | None

    @property
    def present(self) -> bool:
        return self.mask is not None

    def truth(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(bool [H, W] ground-truth mask, bool [H, W] ignored pixels or None); present only."""
        if self.mask is None:
            raise ValueError(f"{self.concept!r} is verified absent: it has no mask")
        ignore = self.mask.ignore_rle
        return (coco.decode_mask(self.mask.rle).astype(bool),
                None if ignore is None else coco.decode_mask(ignore).astype(bool))

    def box_truth(self) -> np.ndarray:
        """bool [H, W] union of the concept's instance boxes (the Table 1 ground truth).

        A pixel is inside a box when its centre is (`data.boxes.rasterize_boxes`); a box
        too small to hold a pixel centre keeps the pixel under its own centre. Without
        boxes (a file whose annotations had none) the boxes come from the mask's
        instances as merged: one box around the whole mask.
        """
        if self.mask is None:
            raise ValueError(f"{self.concept!r} is verified absent: it has no box")
        height, width = (int(v) for v in self.mask.rle["size"])
        boxes = self.mask.boxes or (tuple(mask_utils.toBbox(self.mask.rle)),)
        truth = np.zeros((height, width), bool)
        for x, y, w, h in boxes:
            box = ConceptBox(self.concept, x / width, y / height, (x + w) / width,
                             (y + h) / height)
            region = rasterize_boxes([box], height, width)
            if not region.any():
                region[min(int(y + h / 2), height - 1), min(int(x + w / 2), width - 1)] = True
            truth |= region
        return truth


@dataclasses.dataclass(frozen=True)
class EvalImage:
    """An image file with its pairs from every split.

    Attributes:
        image: Path relative to the data root; also the image id in the metrics.
        height, width: Size from the annotation (checked against the file).
        pairs: Its pairs, split by split in `SPLITS` order, file order within a split.
    """

    image: str
    height: int
    width: int
    pairs: tuple[EvalPair, ...]

    def select(self, splits: Sequence[str], present: bool = True,
               absent: bool = False) -> list[EvalPair]:
        """The pairs of `splits`: the present ones and/or the verified-absent ones."""
        return [p for p in self.pairs
                if p.split in splits and (present if p.present else absent)]


@dataclasses.dataclass
class EvalSet:
    """The ground truth of the splits found under a data root.

    Attributes:
        data_root: The data root.
        images: Images with at least one pair, in first-seen order.
        vectors: concept -> float32 [D] word vector, for every concept of a pair.
        splits: Splits whose eval file was read.
        missing_splits: Splits without an eval file.
        supercategories: (split, concept) -> the COCO category's "supercategory" (or None).
        unknown_concepts: concept -> number of pairs skipped for want of a word vector.
        skips: Other records left out (see the module docstring).
    """

    data_root: str
    images: list[EvalImage]
    vectors: dict[str, np.ndarray]
    splits: tuple[str, ...]
    missing_splits: tuple[str, ...]
    supercategories: dict[tuple[str, str], str | None]
    unknown_concepts: collections.Counter
    skips: SkipCounter

    def pixels(self, image: EvalImage) -> np.ndarray:
        """uint8 [H, W, 3] pixels of an image, decoded as the training graph does.

        No EXIF rotation is applied: annotations are drawn in the stored frame.
        """
        path = os.path.join(self.data_root, image.image)
        return read_image(tf.constant(path)).numpy()

    def vectors_for(self, pairs: Sequence[EvalPair]) -> tuple[list[str], np.ndarray]:
        """Distinct concepts of `pairs` (first-seen order) and their vectors float32 [K, D]."""
        concepts = list(dict.fromkeys(p.concept for p in pairs))
        return concepts, np.stack([self.vectors[c] for c in concepts])


def load_eval_set(data_root: str, embeddings: ConceptEmbeddings,
                  splits: Sequence[str] = SPLITS, max_images: int | None = None,
                  check_files: bool = True, which: str = "eval") -> EvalSet:
    """Reads `eval/<split>.json` (or `val/<split>.json`) of every split there is and merges
    the pairs per image.

    Args:
        data_root: The data root (DESIGN.md §3).
        embeddings: Word vectors; concepts without one (not in the vocabulary and not a
            phrase of vocabulary words) are skipped and counted.
        splits: Splits to read; a missing file is logged and listed in `missing_splits`.
        max_images: Keep at most this many images of each split: the first, in file
            order, that have a pair left (None: all).
        check_files: Check that each image file is readable and has its annotated size.
        which: "eval" (the test set, for reported figures) or "val" (the validation set,
            for every choice).

    Returns:
        The evaluation set.

    Raises:
        DataError: No split has an eval file, or a file is malformed.
    """
    if which not in GROUND_TRUTH_KINDS:
        raise ValueError(f"which must be one of {GROUND_TRUTH_KINDS}, got {which!r}")
    root = DataRoot(data_root)
    skips = SkipCounter(os.path.join(data_root, which))
    unknown: collections.Counter = collections.Counter()
    vectors: dict[str, np.ndarray] = {}
    supercategories: dict[tuple[str, str], str | None] = {}
    found, missing = [], []
    merged: dict[str, tuple[MaskedImage, list[EvalPair]]] = {}
    for split in splits:
        path = root.eval_file(split) if which == "eval" else root.val_file(split)
        if not files.exists(path):
            logger.warning("no ground truth for split %r (%s does not exist): its metrics "
                           "are null", split, path)
            missing.append(split)
            continue
        found.append(split)
        supercategories.update({(split, c): s for c, s in _supercategories(path).items()})
        kept = 0
        for item in read_split_ground_truth(root, split, which, skips=skips):
            if max_images is not None and kept >= max_images:
                break
            pairs = _pairs(item, split, embeddings, vectors, unknown, skips, path)
            if pairs:
                kept += 1
                merged.setdefault(item.image, (item, []))[1].extend(pairs)
    if not found:
        raise DataError(f"no evaluation ground truth: none of "
                        f"{', '.join(f'{which}/{s}.json' for s in splits)} exists",
                        path=os.path.join(data_root, which))
    if unknown:
        logger.warning("%d pairs of %d concepts without a word vector were skipped: %s",
                       sum(unknown.values()), len(unknown), ", ".join(sorted(unknown)[:10]))
    usable = _usable_files(data_root, [m for m, _ in merged.values()], skips, check_files)
    images = [EvalImage(item.image, item.height, item.width, tuple(pairs))
              for (item, pairs), ok in zip(merged.values(), usable) if ok]
    skips.log(logger)
    return EvalSet(data_root, images, vectors, tuple(found), tuple(missing), supercategories,
                   unknown, skips)


def _pairs(item: MaskedImage, split: str, embeddings: ConceptEmbeddings,
           vectors: dict[str, np.ndarray], unknown: collections.Counter,
           skips: SkipCounter, path: str) -> list[EvalPair]:
    """The scoreable pairs of one image of one split (vectors filled in as a side effect)."""
    pairs = []
    candidates = [(m.concept, m) for m in item.masks] + [(c, None) for c in item.neg_concepts]
    for concept, mask in candidates:
        if concept not in vectors:
            if concept not in embeddings:
                unknown[concept] += 1
                continue
            vectors[concept] = embeddings.vector(concept)
        if mask is not None and int(mask_utils.area(mask.rle)) == 0:
            skips.skip(EMPTY_MASK, path=path, record=f"{item.image} {concept!r}")
            continue
        pairs.append(EvalPair(split, concept, mask))
    return pairs


def _supercategories(path: str) -> dict[str, str | None]:
    """Normalised category name -> its "supercategory" (None when absent) of a COCO file."""
    data = require_dict(load_json(path), "the top level", path)
    categories = data.get("categories")
    if not isinstance(categories, list):
        return {}
    out = {}
    for category in categories:
        if isinstance(category, dict) and isinstance(category.get("name"), str):
            value = category.get("supercategory")
            out[normalize_concept(category["name"])] = value if isinstance(value, str) else None
    return out


def _usable_files(data_root: str, items: list[MaskedImage], skips: SkipCounter,
                  check_files: bool) -> list[bool]:
    """Whether each image file decodes and has the size of its annotation."""
    if not check_files:
        return [True] * len(items)
    readable = check_images(data_root, [m.image for m in items], skips)
    usable = []
    for item, ok in zip(items, readable):
        if ok:
            path = os.path.join(data_root, item.image)
            with files.open_file(path, "rb") as f, Image.open(f) as image:  # the header only
                ok = image.size == (item.width, item.height)
            if not ok:
                skips.skip(SIZE_MISMATCH, path=path,
                           record=f"file {image.size[0]}x{image.size[1]}, annotation "
                                  f"{item.width}x{item.height}")
        usable.append(ok)
    return usable


def make_batches(sizes: Sequence[tuple[int, int]], num_concepts: Sequence[int],
                 batch_size: int, max_elements: int = MAX_BATCH_ELEMENTS
                 ) -> Iterator[list[int]]:
    """Groups items into model batches of one image size.

    Items of equal (H, W) form a group (groups in order of first appearance); within a
    group, items are taken by increasing K (stable), so batch-mates have similar concept
    counts and little padding. A batch closes at `batch_size` items, or before
    B * max(K) * H * W would pass `max_elements` (a batch always takes at least one item).
    Items with no concept are left out.

    Args:
        sizes: (H, W) of each item.
        num_concepts: K of each item.
        batch_size: Most items per batch (>= 1).
        max_elements: Budget of B * K_max * H * W per batch.

    Yields:
        Lists of item indices.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (size, k) in enumerate(zip(sizes, num_concepts)):
        if k > 0:
            groups.setdefault(tuple(size), []).append(i)
    for (height, width), members in groups.items():
        batch: list[int] = []
        k_max = 0
        for i in sorted(members, key=lambda j: num_concepts[j]):
            k_new = max(k_max, num_concepts[i])
            too_big = (len(batch) + 1) * k_new * height * width > max_elements
            if batch and (len(batch) == batch_size or too_big):
                yield batch
                batch, k_new = [], num_concepts[i]
            batch.append(i)
            k_max = k_new
        if batch:
            yield batch


def pad_concepts(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Stacks per-image concept vectors [K_b, D] (or masks [K_b, H, W]) into [B, K_max, ...].

    Shorter lists are padded by repeating their first entry (a real concept, so the
    padded slots compute ordinary values that the caller drops).
    """
    k_max = max(len(v) for v in vectors)
    if min(len(v) for v in vectors) < 1:
        raise ValueError("every image needs at least one concept")
    return np.stack([np.concatenate([v, np.repeat(v[:1], k_max - len(v), axis=0)])
                     for v in vectors]).astype(np.float32)
