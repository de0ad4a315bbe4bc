"""Per-image concept masks on a fixed grid, from a data root's COCO masks and/or boxes.

This is the only module of `concepts` that uses the annotation readers of `data` (COCO,
Open Images, Visual Genome); `overlap.py` itself works on plain arrays.

Everything is put on one grid x grid raster (default 64 x 64) so that masks and boxes of the
same image can be combined and memory stays bounded; gamma weights attention maps of about
that resolution anyway. A mask or box too small to cover a cell centre keeps the cell at its
centre, so small concepts (parts) are not lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from conceptmask_tf.concepts import progress as progress_lib
from conceptmask_tf.concepts.overlap import OverlapAccumulator, OverlapMatrix, resize_mask
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


def image_grids(masked: Iterable[MaskedImage], boxed: Iterable[BoxedImage],
                grid: int) -> Iterator[dict[str, np.ndarray]]:
    """Per-image {concept: grid mask}; an image in both sources gets both, and a concept
    with a mask and boxes in the same image keeps its mask."""
    boxes_by_image = {image.image: image for image in boxed}
    for image in masked:
        grids = mask_grids(image, grid)
        box_image = boxes_by_image.pop(image.image, None)
        if box_image is not None:
            for concept, mask in box_grids(box_image, grid).items():
                grids.setdefault(concept, mask)
        yield grids
    for image in boxes_by_image.values():
        yield box_grids(image, grid)


def overlap_from_data_root(data_root: DataRoot, source: str, grid: int = 64,
                           vocab_index: Mapping[str, int] | None = None,
                           skips: SkipCounter | None = None,
                           progress: bool = False) -> OverlapMatrix:
    """O and gamma from the training masks and/or boxes of a data root.

    Args:
        data_root: The data root (coco/instances_train.json, boxes/...).
        source: "masks", "boxes", "both" (what exists of the two; at least one must) or
            "none" (an empty result).
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
    accumulator = OverlapAccumulator()
    if source == "none":
        return accumulator.result(vocab_index)
    masked: list[MaskedImage] = []
    boxed: list[BoxedImage] = []
    use_masks = source == "masks" or (source == "both" and os.path.exists(data_root.coco_instances))
    use_boxes = source == "boxes" or (source == "both" and (
        os.path.exists(data_root.oi_boxes) or os.path.exists(data_root.vg_objects)))
    if source == "both" and not (use_masks or use_boxes):
        data_root.require(data_root.coco_instances, "the overlap matrix (masks or boxes)")
    if use_masks:
        from conceptmask_tf.data import coco  # pylint: disable=import-outside-toplevel
        path = data_root.require(data_root.coco_instances, "the overlap matrix from masks")
        masked = coco.read_coco_instances(path, skips=skips)
    if use_boxes:
        from conceptmask_tf.data import boxes  # pylint: disable=import-outside-toplevel
        boxed = boxes.load_box_images(data_root, skips=skips)
    mask_paths = {image.image for image in masked}
    total = len(masked) + sum(image.image not in mask_paths for image in boxed)
    with progress_lib.bar(progress, total, "overlap (images)") as bar:
        for grids in image_grids(masked, boxed, grid):
            accumulator.add_image(grids)
            bar.update(1)
    return accumulator.result(vocab_index)
