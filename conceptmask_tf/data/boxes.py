"""Box supervision (OIVG): merge Open Images and Visual Genome boxes, filter rare concepts.

The paper's OIVG-750 merges the labels of both datasets and drops the concepts
with very few examples; `merge_box_sources` does that with `min_examples`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.data import open_images, visual_genome
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

# A template (one reason per min_examples), so not registered: Severity.EXPECTED, the
# default.
FILTERED_CONCEPT = "concept with fewer than {n} images (filtered out, not an error)"
EMPTIED_IMAGE = register_skip_reason(
    "image left with no box by the min_examples filter (not an error)", Severity.EXPECTED)


def merge_box_sources(sources: Sequence[Sequence[BoxedImage]], min_examples: int = 1,
                      skips: SkipCounter | None = None
                      ) -> tuple[list[BoxedImage], dict[str, int]]:
    """Merges box images from several sources and drops concepts with too few images.

    Images with the same path are merged into one (boxes concatenated in source
    order; identical boxes kept once; the size taken from whichever source gives it).
    A concept's count is the number of merged images with at least one box of it;
    concepts with fewer than `min_examples` images lose all their boxes, and images
    left with no box are dropped.

    The filter is deliberate, not bad input, so it never raises, even with a strict
    counter; it is still reported through `skips` (one line for the filtered concepts,
    one for the emptied images, with examples) so that a binary's skip report shows it.

    Args:
        sources: Lists of images, e.g. [open_images_boxes, visual_genome_boxes].
        min_examples: Minimum number of images a concept needs to be kept (>= 1).
        skips: Receives the filter report (a new counter is used if None).

    Returns:
        (images, counts): the merged images with at least one kept box, in first-seen
        order; kept concept -> number of images, most frequent first (ties by name).

    Raises:
        DataError: Two sources give the same image different sizes.
        ValueError: `min_examples` < 1.
    """
    if min_examples < 1:
        raise ValueError(f"min_examples must be >= 1, got {min_examples}")
    skips = skips if skips is not None else SkipCounter("box sources")
    merged: dict[str, dict[ConceptBox, None]] = {}  # image -> ordered set of boxes
    sizes: dict[str, tuple[int, int]] = {}
    for source in sources:
        for image in source:
            merged.setdefault(image.image, {}).update(dict.fromkeys(image.boxes))
            if image.width is not None and image.height is not None:
                size = (image.width, image.height)
                if sizes.setdefault(image.image, size) != size:
                    raise DataError(f"two sources give this image different sizes (width, "
                                    f"height): {sizes[image.image]} and {size}",
                                    record=image.image)

    counts = collections.Counter(c for boxes in merged.values()
                                 for c in {b.concept for b in boxes})
    dropped = sorted((n, c) for c, n in counts.items() if n < min_examples)
    skips.note(FILTERED_CONCEPT.format(n=min_examples),
          [f"{c!r} ({n})" for n, c in dropped])
    dropped_concepts = {c for _, c in dropped}

    images, emptied = [], []
    for path, boxes in merged.items():
        kept = tuple(b for b in boxes if b.concept not in dropped_concepts)
        if not kept:
            emptied.append(path)
            continue
        width, height = sizes.get(path, (None, None))
        images.append(BoxedImage(image=path, boxes=kept, width=width, height=height))
    skips.note(EMPTIED_IMAGE, emptied)
    kept_counts = {c: n for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                   if c not in dropped_concepts}
    return images, kept_counts


def load_box_images(data_root: DataRoot, min_examples: int = 1,
                    skips: SkipCounter | None = None) -> list[BoxedImage]:
    """Reads the Open Images and Visual Genome boxes under a data root and merges them.

    Each source is read if its main file exists (boxes/oi_boxes_train.csv,
    boxes/vg_objects.json); its companion file (class descriptions, image data) and
    the images/ folder are then required. Image files are resolved under images/;
    boxes of missing image files are counted skips.

    Args:
        data_root: The data root (DESIGN.md §3).
        min_examples: See `merge_box_sources`.
        skips: Counts skipped records (a new counter is used if None).

    Returns:
        The merged images (see `merge_box_sources`).

    Raises:
        FileNotFoundError: Neither source exists, a companion file is missing, or the
            images folder is missing; the message names the file.
        DataError: A malformed file (see the readers).
    """
    skips = skips if skips is not None else SkipCounter(data_root.root)
    has_oi = files.exists(data_root.oi_boxes)
    has_vg = files.exists(data_root.vg_objects)
    if not has_oi and not has_vg:
        data_root.require(data_root.oi_boxes,
                          "box supervision (Open Images boxes, or Visual Genome "
                          "boxes/vg_objects.json with boxes/vg_image_data.json)")
    needed_for = "reading box annotations"
    image_dir = data_root.require(data_root.images_dir, needed_for)
    sources = []
    if has_oi:
        descriptions = open_images.read_class_descriptions(
            data_root.require(data_root.oi_class_descriptions, "reading Open Images boxes"))
        sources.append(open_images.read_oi_boxes(data_root.oi_boxes, descriptions,
                                                 image_dir=image_dir, skips=skips))
    if has_vg:
        sources.append(visual_genome.read_vg_objects(
            data_root.vg_objects,
            data_root.require(data_root.vg_image_data, "reading Visual Genome objects"),
            skips=skips, image_dir=image_dir))
    images, _ = merge_box_sources(sources, min_examples=min_examples, skips=skips)
    return images


def rasterize_boxes(boxes: Sequence[ConceptBox], height: int, width: int) -> np.ndarray:
    """Union mask of boxes: pixel (r, c) is inside a box when its centre is.

    The centre of pixel (r, c) is ((c + 0.5) / width, (r + 0.5) / height) in
    normalised coordinates; it is inside when xmin <= x < xmax and ymin <= y < ymax
    (half-open, so boxes that share an edge do not both claim a pixel and [0, 1]
    covers the whole image).

    Args:
        boxes: Boxes in normalised coordinates (any concepts; all are united).
        height: Mask height in pixels.
        width: Mask width in pixels.

    Returns:
        bool [height, width].
    """
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height} x {width}")
    mask = np.zeros((height, width), dtype=bool)
    centres_x = (np.arange(width) + 0.5) / width  # [w]
    centres_y = (np.arange(height) + 0.5) / height  # [h]
    for box in boxes:
        # First centre >= min to first centre >= max: the half-open rule above.
        c0, c1 = np.searchsorted(centres_x, [box.xmin, box.xmax], side="left")
        r0, r1 = np.searchsorted(centres_y, [box.ymin, box.ymax], side="left")
        mask[r0:r1, c0:c1] = True
    return mask
