"""Mask overlap ratio O(i, j) (paper eq. 3) and spatial-discrimination weights gamma (eq. 4).

O(i, j) = sum_n |a_n(i) & a_n(j)| / sum_n |a_n(i)|, both sums over the images n that hold
*both* concepts i and j (an image without j says nothing about j: its annotation may be
incomplete). O is not symmetric: O(face, person) ~ 1 while O(person, face) is small.

gamma_ij weighs a positive pixel of concept i as a (soft) negative for concept j. Two rules
(`GAMMA_RULES`, `gamma_from_overlap(..., rule=...)`):

* "paper", eq. 4 as printed: gamma_ij = 1 - O(i, j) if O(i, j) < 0.5 else 0.
* "symmetric" (the default; a departure from the paper): gamma_ij = 0 when the two concepts
  overlap in *either* direction (O(i, j) >= 0.5 or O(j, i) >= 0.5), else 1 - O(i, j).

Why: eq. 4 only asks whether j's masks cover i's. For a part and its whole, e.g. i = dog and
j = tail, O(dog, tail) is small (the tail is a sliver of the dog), so the printed rule gives
gamma(dog, tail) ~ 1 and every dog box pushes the tail map to 0 over the whole box, the tail
included, although O(tail, dog) ~ 1. The paper's own motivating example (§4.2: "the mask of
face is always covered by the mask of person", hence sigmoid rather than softmax) says that
parts and wholes must not be negatives of each other; the symmetric rule keeps that true in
both directions. Pairs that really are disjoint (sky / dog) are unaffected.

Pairs with no entry: when i and j never occur in the same image (or i has zero area in all
of those images), O(i, j) is undefined and stored as NaN, and gamma_ij = 0, i.e. no
constraint: nothing is known about how they overlap. The diagonal is O(i, i) = 1 and
gamma_ii = 0.

One kind of annotation per pair: a box against a mask understates containment (a
triangular sail's box against its boat's mask gives O ~ 0.4 both ways although the sail is
inside the boat), so masks and boxes are never compared with each other. One accumulator
runs over masks only and one over boxes only, and `combine_overlaps` takes each entry from
one of them (boxes first, as the paper computes O on its OIVG boxes; masks where boxes say
nothing). `OverlapMatrix.source` records where each entry came from (`SOURCE_*`).

Masks are binary arrays of one shape per image (any shape; images may differ). Boxes are
rasterised first (see `overlap_sources`, which builds these per-image masks from a data
root's COCO masks and boxes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.errors import DataError

GAMMA_THRESHOLD = 0.5
GAMMA_RULES = ("symmetric", "paper")

# Where an entry of `OverlapMatrix.overlap` came from (`OverlapMatrix.source`).
SOURCE_UNKNOWN = -1  # an overlap.npz written before the source was recorded
SOURCE_NONE = 0  # no entry (O is NaN)
SOURCE_MASKS = 1  # masks only (COCO)
SOURCE_BOXES = 2  # boxes only (Open Images / Visual Genome)
SOURCE_CODES = {"masks": SOURCE_MASKS, "boxes": SOURCE_BOXES}


def gamma_from_overlap(overlap: np.ndarray, threshold: float = GAMMA_THRESHOLD,
                       gamma_rule: str = "symmetric") -> np.ndarray:
    """gamma from O (see the module docstring); NaN (no entry) -> 0.

    Args:
        overlap: [C, C] O(i, j), NaN where undefined.
        threshold: 0.5 in the paper.
        gamma_rule: "symmetric" (default): gamma_ij = 0 if O(i, j) >= threshold or
            O(j, i) >= threshold, else 1 - O(i, j); "paper" (eq. 4 as printed):
            gamma_ij = 1 - O(i, j) if O(i, j) < threshold, else 0.

    Returns:
        float32 [C, C].

    Raises:
        ValueError: An unknown rule, or a non-square matrix for the symmetric rule.
    """
    if gamma_rule not in GAMMA_RULES:
        raise ValueError(f"gamma_rule must be one of {GAMMA_RULES}, got {gamma_rule!r}")
    overlap = np.asarray(overlap, np.float32)
    with np.errstate(invalid="ignore"):
        constrained = overlap < threshold  # False for NaN
        if gamma_rule == "symmetric":
            if overlap.ndim != 2 or overlap.shape[0] != overlap.shape[1]:
                raise ValueError(f"the symmetric rule needs a square O, got {overlap.shape}")
            constrained &= ~(overlap.T >= threshold)  # NaN: no evidence of overlap
    return np.where(constrained, 1.0 - overlap, 0.0).astype(np.float32)


def resize_mask(mask: np.ndarray, grid: int) -> np.ndarray:
    """Nearest-neighbour (cell-centre) resampling of a binary [h, w] mask to [grid, grid]."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(grid) + 0.5) * h / grid).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(grid) + 0.5) * w / grid).astype(np.int64), w - 1)
    return mask[np.ix_(rows, cols)] > 0


def _concept_order(names: Iterable[str], vocab_index: Mapping[str, int]) -> list[str]:
    """Vocabulary concepts first (by row), then the others by name."""
    return sorted(names, key=lambda c: (c not in vocab_index, vocab_index.get(c, 0), c))


@dataclasses.dataclass(frozen=True)
class OverlapMatrix:
    """O, gamma and co-occurrence over the concepts that have masks or boxes.

    Attributes:
        concepts: Concept names; row/column c of every matrix.
        overlap: float32 [C, C] O(i, j), NaN where there is no entry.
        cooccurrence: int64 [C, C] number of images behind each entry: images holding
            both (diagonal: images holding i) in the entry's source (`source`).
        gamma: float32 [C, C] weights of the default rule ("symmetric", see the module
            docstring; 0 where there is no entry). Training recomputes gamma from
            `overlap` with its configured rule; this copy is kept for readers of
            overlap.npz.
        vocab_index: int64 [C] row of each concept in concepts.tsv, -1 if absent.
        source: int8 [C, C] where each entry came from: SOURCE_NONE (no entry),
            SOURCE_MASKS, SOURCE_BOXES, or SOURCE_UNKNOWN (read from an older
            overlap.npz without it). None at construction = unknown for every entry.
    """

    concepts: tuple[str, ...]
    overlap: np.ndarray
    cooccurrence: np.ndarray
    gamma: np.ndarray
    vocab_index: np.ndarray
    source: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.source is None:
            unknown = np.where(np.isnan(self.overlap), SOURCE_NONE, SOURCE_UNKNOWN)
            object.__setattr__(self, "source", unknown.astype(np.int8))

    def save(self, path: str) -> None:
        """Writes an ``overlap.npz`` (keys: concepts, overlap, cooccurrence, gamma,
        vocab_index, source)."""
        if not path.endswith(".npz"):
            path += ".npz"  # as np.savez names it
        files.save_npz(path, concepts=np.asarray(self.concepts, dtype=str),
                       overlap=self.overlap, cooccurrence=self.cooccurrence, gamma=self.gamma,
                       vocab_index=self.vocab_index, source=self.source)

    @classmethod
    def load(cls, path: str) -> OverlapMatrix:
        """Reads an ``overlap.npz`` (one without "source" gets SOURCE_UNKNOWN entries).

        Raises:
            DataError: If a key is missing or the shapes disagree.
        """
        data = files.load_npz(path, allow_pickle=False)
        try:
            fields = {k: data[k] for k in ("concepts", "overlap", "cooccurrence", "gamma",
                                            "vocab_index")}
        except KeyError as e:
            raise DataError(f"missing array {e}", path) from None
        source = data.get("source")
        c = len(fields["concepts"])
        if any(fields[k].shape != (c, c) for k in ("overlap", "cooccurrence", "gamma")) or \
                fields["vocab_index"].shape != (c,) or \
                (source is not None and source.shape != (c, c)):
            raise DataError(f"arrays do not match the {c} concepts", path)
        return cls(tuple(str(x) for x in fields["concepts"]), fields["overlap"],
                   fields["cooccurrence"], fields["gamma"], fields["vocab_index"],
                   None if source is None else source.astype(np.int8))


class OverlapAccumulator:
    """Accumulates eq. 3 image by image (memory: three C x C matrices).

    Args:
        kind: "masks" or "boxes": what the per-image masks are, recorded in the result's
            `source`. Feed one kind only (see the module docstring; `combine_overlaps`
            merges a masks and a boxes result).

    Example:
        acc = OverlapAccumulator()
        for masks in images:            # {concept: binary mask}, one shape per image
            acc.add_image(masks)
        result = acc.result(vocabulary.index_of)
    """

    def __init__(self, kind: str = "masks") -> None:
        if kind not in SOURCE_CODES:
            raise ValueError(f"kind must be one of {tuple(SOURCE_CODES)}, got {kind!r}")
        self.kind = kind
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
        names = _concept_order(self._index, vocab_index)
        rows = np.asarray([self._index[c] for c in names], np.int64)
        cell = np.ix_(rows, rows)
        area, intersection = self._area[cell], self._intersection[cell]
        with np.errstate(invalid="ignore", divide="ignore"):
            overlap = np.where(area > 0, intersection / area, np.nan).astype(np.float32)
        source = np.where(area > 0, SOURCE_CODES[self.kind], SOURCE_NONE).astype(np.int8)
        return OverlapMatrix(tuple(names), overlap, self._images[cell].copy(),
                             gamma_from_overlap(overlap),
                             np.asarray([vocab_index.get(c, -1) for c in names], np.int64),
                             source)


def _embed(matrix: OverlapMatrix, names: Sequence[str]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(overlap NaN-padded, cooccurrence 0-padded, bool [C] present) of `matrix` on `names`."""
    size = len(names)
    overlap = np.full((size, size), np.nan, np.float32)
    counts = np.zeros((size, size), np.int64)
    position = {c: k for k, c in enumerate(matrix.concepts)}
    present = np.asarray([c in position for c in names], bool)
    ours = np.flatnonzero(present)
    theirs = np.asarray([position[names[k]] for k in ours], np.int64)
    overlap[np.ix_(ours, ours)] = matrix.overlap[np.ix_(theirs, theirs)]
    counts[np.ix_(ours, ours)] = matrix.cooccurrence[np.ix_(theirs, theirs)]
    return overlap, counts, present


def combine_overlaps(masks: OverlapMatrix, boxes: OverlapMatrix,
                     vocab_index: Mapping[str, int] | None = None) -> OverlapMatrix:
    """One O from a masks-only and a boxes-only matrix, each entry from one of them.

    For a pair (i, j): if i or j is box-supervised (a concept of `boxes`) and the boxes'
    O(i, j) is defined, it is used (the paper computes O on OIVG boxes); otherwise the
    masks' O(i, j) if defined; otherwise no entry (NaN). (A defined box entry needs both
    concepts in one box image, so in effect: boxes where they say something, else masks.)
    Masks and boxes are never compared with each other (see the module docstring).

    Args:
        masks: `OverlapAccumulator("masks")` result.
        boxes: `OverlapAccumulator("boxes")` result.
        vocab_index: concept -> concepts.tsv row, also the order (see
            `OverlapAccumulator.result`); None: the rows the two matrices record.

    Returns:
        The merged matrix; gamma by the default rule, cooccurrence and source of the
        entry's source (for a pair with no entry, the larger of the two counts).
    """
    if vocab_index is None:
        vocab_index = {c: int(r) for m in (masks, boxes)
                       for c, r in zip(m.concepts, m.vocab_index) if r >= 0}
    names = _concept_order(set(masks.concepts) | set(boxes.concepts), vocab_index)
    mask_o, mask_n, _ = _embed(masks, names)
    box_o, box_n, box_supervised = _embed(boxes, names)
    use_boxes = (box_supervised[:, None] | box_supervised[None, :]) & ~np.isnan(box_o)
    use_masks = ~use_boxes & ~np.isnan(mask_o)
    overlap = np.where(use_boxes, box_o, np.where(use_masks, mask_o, np.nan)).astype(np.float32)
    counts = np.where(use_boxes, box_n, np.where(use_masks, mask_n, np.maximum(box_n, mask_n)))
    source = np.select([use_boxes, use_masks], [SOURCE_BOXES, SOURCE_MASKS], SOURCE_NONE)
    return OverlapMatrix(tuple(names), overlap, counts.astype(np.int64),
                         gamma_from_overlap(overlap),
                         np.asarray([vocab_index.get(c, -1) for c in names], np.int64),
                         source.astype(np.int8))


def overlap_matrix(images: Iterable[Mapping[str, np.ndarray]],
                   vocab_index: Mapping[str, int] | None = None,
                   kind: str = "masks") -> OverlapMatrix:
    """Eq. 3 (and gamma, default rule) over an iterable of per-image {concept: binary mask}
    dicts of one kind of annotation ("masks" or "boxes")."""
    accumulator = OverlapAccumulator(kind)
    for masks in images:
        accumulator.add_image(masks)
    return accumulator.result(vocab_index)
