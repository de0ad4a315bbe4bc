"""The data-root layout (DESIGN.md §3): one place that knows where every file lives."""

from __future__ import annotations

import dataclasses
import os

from conceptmask_tf.base import files

SPLITS = ("strong", "weak_box", "weak_image", "zero_shot")


@dataclasses.dataclass(frozen=True)
class DataRoot:
    """Paths of a data root. Files may be missing on user data; `require` says so clearly."""

    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def images_dir(self) -> str:
        return self.path("images")

    @property
    def tags(self) -> str:
        return self.path("tags.jsonl")

    @property
    def coco_instances(self) -> str:
        return self.path("coco", "instances_train.json")

    @property
    def oi_boxes(self) -> str:
        return self.path("boxes", "oi_boxes_train.csv")

    @property
    def oi_class_descriptions(self) -> str:
        return self.path("boxes", "oi_class_descriptions.csv")

    @property
    def oi_image_labels(self) -> str:
        """Optional: Open Images image-level labels (a public stand-in for Stock-18K tags)."""
        return self.path("labels", "oi_image_labels_train.csv")

    @property
    def vg_objects(self) -> str:
        return self.path("boxes", "vg_objects.json")

    @property
    def vg_image_data(self) -> str:
        return self.path("boxes", "vg_image_data.json")

    @property
    def splits(self) -> str:
        return self.path("splits.json")

    def eval_file(self, split: str) -> str:
        """Test ground truth of a split (COCO format with neg_category_ids)."""
        _check_split(split)
        return self.path("eval", f"{split}.json")

    def val_file(self, split: str) -> str:
        """Validation ground truth of a split (same format; used to calibrate thresholds)."""
        _check_split(split)
        return self.path("val", f"{split}.json")

    def require(self, path: str, needed_for: str) -> str:
        """Returns `path` or raises FileNotFoundError saying which step needs it."""
        if not files.exists(path):
            raise FileNotFoundError(
                f"{needed_for} needs {os.path.relpath(path, self.root)} under data root "
                f"{self.root!r}, but {path} does not exist (see DESIGN.md §3 for the layout)")
        return path


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
