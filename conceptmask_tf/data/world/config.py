"""Configuration of a concept world: sizes, noise levels and output formats."""

from __future__ import annotations

import dataclasses
from typing import Any

IMAGE_FORMATS = ("jpeg", "png")
MASK_FORMATS = ("polygon", "rle")


def _field(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with flag help (and optional "choices") in its metadata.

    conceptmask-world defines one flag per field from them (`training.cli.define_flags`).
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Everything that decides a concept world; same config -> byte-identical files.

    Attributes:
        seed: Drives every random choice: level assignment, phrases, scenes, noise.
        num_images: Training images (all in tags.jsonl; subsets get masks or boxes).
        image_size: Side of the square images, pixels.
        num_eval_images: Held-out images (val + test) before coverage top-ups; more are
            added until every concept has `min_eval_positives` positives in both parts.
        val_fraction: Share of the held-out images that go to val/ (the rest to eval/).
        min_eval_positives: Minimum positive images per concept in each eval and val file.
        image_format: "jpeg" or "png".
        jpeg_quality: JPEG quality (1-100).
        tag_drop_rate: Probability that a present region concept is left out of an image's tags.
        wrong_tag_rate: Probability that an image gets one wrong tag (a concept not there).
        coco_fraction: Share of training images with strong (mask) annotations in coco/.
        box_fraction: Share of training images with boxes; half of them in the Open Images
            CSV, half in the Visual Genome JSON.
        negative_label_rate: Share of absent concepts written as verified-absent
            (Confidence 0) in labels/oi_image_labels_train.csv for each Open Images image.
        mask_format: "polygon" (COCO polygons where they reproduce the mask exactly, RLE
            otherwise, e.g. masks with holes) or "rle" (compressed RLE everywhere).
        num_phrases: Multi-word concepts ("red car") drawn from the candidates.
        min_objects: Fewest objects placed in a scene.
        max_objects: Most objects placed in a scene.
        min_region_pixels: Area below which a region counts as not visible (no tag, no
            eval positive, not a verified negative either); 0 = automatic
            (max(4, 0.05% of the image)).
        oracle_boxes: Also write the boxes of every weak_image concept (objects, parts,
            stuff, and the objects an attribute or phrase names) to the Open Images CSV:
            an all-box world for the oracle ladder's upper bound on the weak concepts. Not
            a realistic dataset; images, tags, masks, labels and ground truth stay as
            without it (world.json records the flag).
    """

    seed: int = _field(0, "Seed of every random choice (levels, phrases, scenes, noise); "
                          "same flags -> byte-identical files.")
    num_images: int = _field(2000, "Training images.")
    image_size: int = _field(128, "Side of the square images, pixels.")
    num_eval_images: int = _field(400, "Held-out images (val + test) before coverage top-ups.")
    val_fraction: float = _field(0.25, "Share of held-out images written to val/ (the rest to "
                                       "eval/).")
    min_eval_positives: int = _field(5, "Minimum positive images per concept in every eval/ "
                                        "and val/ file.")
    image_format: str = _field("jpeg", "Image encoding.", choices=IMAGE_FORMATS)
    jpeg_quality: int = _field(95, "JPEG quality (1-100).")
    tag_drop_rate: float = _field(0.15, "Probability that a present concept is missing from "
                                        "an image's tags.")
    wrong_tag_rate: float = _field(0.1, "Probability that an image gets one wrong tag.")
    coco_fraction: float = _field(0.5, "Share of training images with masks in "
                                       "coco/instances_train.json.")
    box_fraction: float = _field(0.6, "Share of training images with boxes (half Open Images "
                                      "CSV, half Visual Genome JSON).")
    negative_label_rate: float = _field(0.5, "Share of absent concepts written as "
                                             "verified-absent image labels.")
    mask_format: str = _field("polygon", "COCO training masks: exact polygons where possible "
                                         "(RLE otherwise), or RLE.", choices=MASK_FORMATS)
    num_phrases: int = _field(10, "Multi-word concepts drawn from the candidates.")
    min_objects: int = _field(1, "Fewest objects per scene.")
    max_objects: int = _field(5, "Most objects per scene.")
    min_region_pixels: int = _field(0, "Smallest visible area of a present concept; 0 = "
                                       "max(4, 0.05% of the image).")
    oracle_boxes: bool = _field(False, "Also write every weak_image concept's boxes to the "
                                       "Open Images CSV (an all-box world for the oracle "
                                       "ladder; not realistic data).")

    def __post_init__(self) -> None:
        problems = []
        if self.num_images < 1:
            problems.append(f"num_images must be >= 1, got {self.num_images}")
        if not 32 <= self.image_size <= 1024:
            problems.append(f"image_size must be in [32, 1024], got {self.image_size}")
        if self.num_eval_images < 2:
            problems.append(f"num_eval_images must be >= 2, got {self.num_eval_images}")
        if not 0.0 < self.val_fraction < 1.0:
            problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.min_eval_positives < 1:
            problems.append(f"min_eval_positives must be >= 1, got {self.min_eval_positives}")
        if self.image_format not in IMAGE_FORMATS:
            problems.append(f"image_format must be one of {IMAGE_FORMATS}, got "
                            f"{self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        for name in ("tag_drop_rate", "wrong_tag_rate", "coco_fraction", "box_fraction",
                     "negative_label_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {value}")
        if self.mask_format not in MASK_FORMATS:
            problems.append(f"mask_format must be one of {MASK_FORMATS}, got "
                            f"{self.mask_format!r}")
        if self.num_phrases < 2:
            problems.append(f"num_phrases must be >= 2, got {self.num_phrases}")
        if not 1 <= self.min_objects <= self.max_objects <= 12:
            problems.append("need 1 <= min_objects <= max_objects <= 12, got "
                            f"{self.min_objects}, {self.max_objects}")
        if self.min_region_pixels < 0:
            problems.append(f"min_region_pixels must be >= 0, got {self.min_region_pixels}")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))

    @property
    def region_min_pixels(self) -> int:
        """The visibility threshold in pixels (resolves the automatic 0)."""
        if self.min_region_pixels:
            return self.min_region_pixels
        return max(4, round(0.0005 * self.image_size * self.image_size))

    @property
    def image_extension(self) -> str:
        return "jpg" if self.image_format == "jpeg" else "png"
