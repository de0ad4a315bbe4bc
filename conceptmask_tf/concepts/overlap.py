"""Mask overlap ratio O(i, j) (paper eq. 3) and spatial-discrimination weights gamma (eq. 4).

O(i, j) = sum_n |a_n(i) & a_n(j)| / sum_n |a_n(i)|, both sums over the images n that hold
*both* concepts i and j (an image without j says nothing about j: its annotation may be
incomplete). O is not symmetric: O(face, person) ~ 1 while O(person, face) is small.

gamma_ij = 1 - O(i, j) if O(i, j) < 0.5 else 0: a positive pixel of concept i is a
(soft) negative for concept j unless j's masks usually cover i's.

Pairs with no entry: when i and j never occur in the same image (or i has zero area in all
of those images), O(i, j) is undefined and stored as NaN, and gamma_ij = 0, i.e. no
constraint: nothing is known about how they overlap. The diagonal is O(i, i) = 1 and
gamma_ii = 0.

Masks are binary arrays of one shape per image (any shape; images may differ). Boxes are
rasterised first (see `overlap_sources`, which builds these per-image masks from a data
root's COCO masks and boxes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from conceptmask_tf.errors import DataError

GAMMA_THRESHOLD = 0.5


def gamma_from_overlap(overlap: np.ndarray, threshold: float = GAMMA_THRESHOLD) -> np.ndarray:
    """Eq. 4: gamma = 1 - O where O < threshold, else 0; NaN (no entry) -> 0.

    Args:
        overlap: [C, C] O(i, j), NaN where undefined.
        threshold: 0.5 in the paper.

    Returns:
        float32 [C, C].
    """
    with np.errstate(invalid="ignore"):
        constrained = overlap < threshold  # False for NaN
    return np.where(constrained, 1.0 - overlap, 0.0).astype(np.float32)


def resize_mask(mask: np.ndarray, grid: int) -> np.ndarray:
    """Nearest-neighbour (cell-centre) resampling of a binary [h, w] mask to [grid, grid]."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(grid) + 0.5) * h / grid).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(grid) + 0.5) * w / grid).astype(np.int64), w - 1)
    return mask[np.ix_(rows, cols)] > 0


@dataclasses.dataclass(frozen=True)
class OverlapMatrix:
    """O, gamma and co-occurrence over the concepts that have masks or boxes.

    Attributes:
        concepts: Concept names; row/column c of every matrix.
        overlap: float32 [C, C] O(i, j), NaN where there is no entry.
        cooccurrence: int64 [C, C] number of images holding both (diagonal: images holding i).
        gamma: float32 [C, C] eq. 4 weights (0 where there is no entry).
        vocab_index: int64 [C] row of each concept in concepts.tsv, -1 if absent.
    """

    concepts: tuple[str, ...]
    overlap: np.ndarray
    cooccurrence: np.ndarray
    gamma: np.ndarray
    vocab_index: np.ndarray

    def save(self, path: str) -> None:
        """Writes an ``overlap.npz`` (keys: concepts, overlap, cooccurrence, gamma, vocab_index)."""
        np.savez(path, concepts=np.asarray(self.concepts, dtype=str), overlap=self.overlap,
                 cooccurrence=self.cooccurrence, gamma=self.gamma,
                 vocab_index=self.vocab_index)

    @classmethod
    def load(cls, path: str) -> OverlapMatrix:
        """Reads an ``overlap.npz``.

        Raises:
            DataError: If a key is missing or the shapes disagree.
        """
        with np.load(path, allow_pickle=False) as data:
            try:
                fields = {k: data[k] for k in ("concepts", "overlap", "cooccurrence", "gamma",
                                                "vocab_index")}
            except KeyError as e:
                raise DataError(f"missing array {e}", path) from None
        c = len(fields["concepts"])
        if any(fields[k].shape != (c, c) for k in ("overlap", "cooccurrence", "gamma")) or \
                fields["vocab_index"].shape != (c,):
            raise DataError(f"arrays do not match the {c} concepts", path)
        return cls(tuple(str(x) for x in fields["concepts"]), fields["overlap"],
                   fields["cooccurrence"], fields["gamma"], fields["vocab_index"])


class OverlapAccumulator:
    """Accumulates eq. 3 image by image (memory: three C x C matrices).

    Example:
        acc = OverlapAccumulator()
        for masks in images:            # {concept: binary mask}, one shape per image
            acc.add_image(masks)
        result = acc.result(vocabulary.index_of)
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._intersection = np.zeros((0, 0), np.float64)  # sum_n |a_n(i) & a_n(j)|
        self._area = np.zeros((0, 0), np.float64)  # sum_n |a_n(i)| over n holding i and j
        self._images = np.zeros((0, 0), np.int64)
        self.num_images = 0

    def _rows(self, concepts: Sequence[str]) -> np.ndarray:
        for c in concepts:
            self._index.setdefault(c, len(self._index))
        size = len(self._intersection)
        if len(self._index) > size:
            new = max(len(self._index), 2 * size, 16)
            for name in ("_intersection", "_area", "_images"):
                old = getattr(self, name)
                grown = np.zeros((new, new), old.dtype)
                grown[:size, :size] = old
                setattr(self, name, grown)
        return np.asarray([self._index[c] for c in concepts], np.int64)

    def add_image(self, masks: Mapping[str, np.ndarray]) -> None:
        """Adds one image: {concept: binary mask}, all masks of the same shape.

        Raises:
            ValueError: If the masks of the image differ in shape.
        """
        if not masks:
            return
        concepts = list(masks)
        shapes = {np.shape(m) for m in masks.values()}
        if len(shapes) != 1:
            raise ValueError(f"masks of one image must share a shape, got {sorted(shapes)}")
        stacked = np.stack([np.asarray(masks[c]).reshape(-1) > 0 for c in concepts])
        # float32 sums of 0/1 are exact below 2^24 pixels.
        stacked = stacked.astype(np.float32 if stacked.shape[1] < 1 << 24 else np.float64)
        intersection = (stacked @ stacked.T).astype(np.float64)  # [k, k]
        area = np.diagonal(intersection)
        rows = self._rows(concepts)
        cell = np.ix_(rows, rows)
        self._intersection[cell] += intersection
        self._area[cell] += area[:, None]  # row i: |a_n(i)|, for every j of the image
        self._images[cell] += 1
        self.num_images += 1

    def result(self, vocab_index: Mapping[str, int] | None = None) -> OverlapMatrix:
        """O, gamma and counts so far.

        Args:
            vocab_index: concept -> row in concepts.tsv (e.g. `Vocabulary.index_of`); it also
                sets the order: vocabulary concepts first (by row), then the others by name.
        """
        vocab_index = vocab_index or {}
        names = sorted(self._index, key=lambda c: (c not in vocab_index, vocab_index.get(c, 0), c))
        rows = np.asarray([self._index[c] for c in names], np.int64)
        cell = np.ix_(rows, rows)
        area, intersection = self._area[cell], self._intersection[cell]
        with np.errstate(invalid="ignore", divide="ignore"):
            overlap = np.where(area > 0, intersection / area, np.nan).astype(np.float32)
        return OverlapMatrix(tuple(names), overlap, self._images[cell].copy(),
                             gamma_from_overlap(overlap),
                             np.asarray([vocab_index.get(c, -1) for c in names], np.int64))


def overlap_matrix(images: Iterable[Mapping[str, np.ndarray]],
                   vocab_index: Mapping[str, int] | None = None) -> OverlapMatrix:
    """Eq. 3 and 4 over an iterable of per-image {concept: binary mask} dicts."""
    accumulator = OverlapAccumulator()
    for masks in images:
        accumulator.add_image(masks)
    return accumulator.result(vocab_index)
