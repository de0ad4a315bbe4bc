"""Typed records shared by the readers (which produce them) and the pipelines (which consume them).

Conventions used across the package:

* A *concept* is a normalised string: lower case, single spaces, e.g. ``"red car"``.
* An *image path* is relative to the data root (``"images/000123.jpg"``); readers
  resolve ids (Open Images ``ImageID``, Visual Genome ``image_id``, COCO
  ``file_name``) to such a path.
* Boxes are normalised to [0, 1] in (xmin, ymin, xmax, ymax) order, clipped to
  the image, with xmin < xmax and ymin < ymax.
* Masks are COCO run-length encodings (compressed, as `pycocotools.mask.encode`
  returns them: ``{"size": [h, w], "counts": bytes}``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

Rle = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TaggedImage:
    """An image with image-level tags (one tags.jsonl line or Open Images labels)."""

    image: str
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ConceptBox:
    """One box of one concept, normalised coordinates."""

    concept: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclasses.dataclass(frozen=True)
class BoxedImage:
    """An image with its concept boxes (Open Images CSV rows or Visual Genome objects)."""

    image: str
    boxes: tuple[ConceptBox, ...]
    width: int | None = None
    height: int | None = None

    @property
    def concepts(self) -> tuple[str, ...]:
        """Distinct concepts with at least one box, in first-seen order."""
        return tuple(dict.fromkeys(b.concept for b in self.boxes))


@dataclasses.dataclass(frozen=True)
class ConceptMask:
    """All instances of one concept in one image merged into one mask.

    Attributes:
        concept: The concept name.
        rle: Union of the non-crowd instances (compressed COCO RLE).
        ignore_rle: Union of crowd regions not covered by `rle`, or None. Pixels
            there are neither positive nor negative: losses and metrics ignore them.
        boxes: The COCO "bbox" [x, y, width, height] (pixels) of each non-crowd
            instance, in file order (from its mask when the annotation has none): the
            box ground truth of the paper's Table 1 protocol.
    """

    concept: str
    rle: Rle
    ignore_rle: Rle | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class MaskedImage:
    """An image with one merged mask per concept (COCO instances)."""

    image: str
    width: int
    height: int
    masks: tuple[ConceptMask, ...]
    image_id: int | None = None
    neg_concepts: tuple[str, ...] = ()  # concepts verified absent (LVIS "neg_category_ids")

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(m.concept for m in self.masks)
