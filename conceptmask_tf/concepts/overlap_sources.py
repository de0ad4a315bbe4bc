"""Per-image concept masks on a fixed grid, from a data root's COCO masks and/or boxes.

This is the only module of `concepts` that uses the annotation readers of `data` (COCO,
Open Images, Visual Genome); `overlap.py` itself works on plain arrays.

Everything is put on one grid x grid raster (default 64 x 64) so memory stays bounded;
gamma weights attention maps of about that resolution anyway. A mask or box too small to
cover a cell centre keeps the cell at its centre, so small concepts (parts) are not lost.

Masks and boxes are never compared with each other, even in one image: a box against a
mask understates containment (a triangular sail's box against its boat's mask gives
O ~ 0.4 both ways although the sail is inside the boat). With both sources, one
accumulator runs over the COCO masks and one over the boxes, and
`overlap.combine_overlaps` takes each pair's O from one of them (see `overlap_from_images`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.base import progress as progress_lib
from conceptmask_tf.concepts.overlap import (
    OverlapAccumulator,
    OverlapMatrix,
    combine_overlaps,
    resize_mask,
)
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox, MaskedImage

SOURCES = ("none", "masks", "boxes", "both")


def box_grids(image: BoxedImage, grid: int) -> dict[str, np.ndarray]:
    """{concept: bool [grid, grid]} union of each concept's boxes (pixel-centre rule of
    `data.boxes.rasterize_boxes`; a box covering no centre keeps the cell at its centre)."""
    from conceptmask_tf.data import boxes as boxes_lib  # pylint: disable=import-outside-toplevel
    per_concept: dict[str, list[ConceptBox]] = {}
    for box in image.boxes:
        per_concept.setdefault(box.concept, []).append(box)
    grids = {}
    for concept, concept_boxes in per_concept.items():
        mask = boxes_lib.rasterize_boxes(concept_boxes, grid, grid)
        for box in concept_boxes:
            x, y = (box.xmin + box.xmax) / 2, (box.ymin + box.ymax) / 2
            mask[min(int(y * grid), grid - 1), min(int(x * grid), grid - 1)] = True
        grids[concept] = mask
    return grids


def mask_grids(image: MaskedImage, grid: int) -> dict[str, np.ndarray]:
    """{concept: bool [grid, grid]} of a COCO image's masks (concepts with an empty mask are
    left out: a crowd-only concept has no sure pixel)."""
    from conceptmask_tf.data import coco  # pylint: disable=import-outside-toplevel
    grids = {}
    for concept_mask in image.masks:
        full = coco.decode_mask(concept_mask.rle)  # [h, w] uint8
        if not full.any():
            continue
        small = resize_mask(full, grid)
        if not small.any():  # smaller than a cell: keep the cell at its centroid
            rows, cols = np.nonzero(full)
            height, width = full.shape
            small[int(rows.mean() * grid / height), int(cols.mean() * grid / width)] = True
        grids[concept_mask.concept] = small
    return grids


def overlap_from_images(masked: Sequence[MaskedImage] | None,
                        boxed: Sequence[BoxedImage] | None, grid: int,
                        vocab_index: Mapping[str, int] | None = None,
                        progress: bool = False) -> OverlapMatrix:
    """O and gamma from COCO mask images and/or box images, one kind per pair.

    Masks feed a masks-only accumulator, boxes a boxes-only one (an image in both
    sources feeds both; its masks and boxes are never compared). With both sources the
    two results are merged by `overlap.combine_overlaps` (boxes where they define O,
    else masks); with one, its accumulator's result is returned as is.

    Args:
        masked: COCO images, or None for no mask source.
        boxed: Box images (Open Images / Visual Genome), or None for no box source.
        grid: Raster size.
        vocab_index: concept -> concepts.tsv row (see `OverlapAccumulator.result`).
        progress: Show a progress bar over the images.

    Returns:
        The overlap matrix (empty when both sources are None).
    """
    sources = [(kind, images, rasterize) for kind, images, rasterize in (
        ("masks", masked, mask_grids), ("boxes", boxed, box_grids)) if images is not None]
    if not sources:
        return OverlapAccumulator().result(vocab_index)
    results = {}
    total = sum(len(images) for _, images, _ in sources)
    with progress_lib.bar(progress, total, "overlap (images)") as bar:
        for kind, images, rasterize in sources:
            accumulator = OverlapAccumulator(kind)
            for image in images:
                accumulator.add_image(rasterize(image, grid))
                bar.update(1)
            results[kind] = accumulator.result(vocab_index)
    if len(results) == 1:
        return next(iter(results.values()))
    return combine_overlaps(results["masks"], results["boxes"], vocab_index)


def overlap_from_data_root(data_root: DataRoot, source: str, grid: int = 64,
                           vocab_index: Mapping[str, int] | None = None,
                           skips: SkipCounter | None = None,
                           progress: bool = False) -> OverlapMatrix:
    """O and gamma from the training masks and/or boxes of a data root.

    Args:
        data_root: The data root (coco/instances_train.json, boxes/...).
        source: "masks", "boxes", "both" (what exists of the two, at least one must; each
            pair's O from one kind, see `overlap_from_images`) or "none" (an empty result).
        grid: Raster size.
        vocab_index: concept -> concepts.tsv row (see `OverlapAccumulator.result`).
        skips: Counts records the readers skip.
        progress: Show a progress bar over the images.

    Raises:
        FileNotFoundError: A requested source is missing (the message names the file).
        DataError: From the readers, on malformed annotations.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown overlap source {source!r}; expected one of {SOURCES}")
    skips = skips if skips is not None else SkipCounter(data_root.root)
    if source == "none":
        return overlap_from_images(None, None, grid, vocab_index)
    masked: list[MaskedImage] | None = None
    boxed: list[BoxedImage] | None = None
    use_masks = source == "masks" or (source == "both" and files.exists(data_root.coco_instances))
    use_boxes = source == "boxes" or (source == "both" and (
        files.exists(data_root.oi_boxes) or files.exists(data_root.vg_objects)))
    if source == "both" and not (use_masks or use_boxes):
        data_root.require(data_root.coco_instances, "the overlap matrix (masks or boxes)")
    if use_masks:
        from conceptmask_tf.data import coco  # pylint: disable=import-outside-toplevel
        path = data_root.require(data_root.coco_instances, "the overlap matrix from masks")
        masked = coco.read_coco_instances(path, skips=skips)
    if use_boxes:
        from conceptmask_tf.data import boxes  # pylint: disable=import-outside-toplevel
        boxed = boxes.load_box_images(data_root, skips=skips)
    return overlap_from_images(masked, boxed, grid, vocab_index, progress)
