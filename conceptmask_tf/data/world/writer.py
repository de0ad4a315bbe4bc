"""Writes a concept world's data root (DESIGN.md §3) into a staging folder, then moves it.

`WorldFiles` turns rendered scenes into the records of every file (which image gets which
annotations is decided here) and writes them; `staging_dir` makes the output appear at once.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image

from conceptmask_tf.base import files
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.world import formats
from conceptmask_tf.data.world.config import WorldConfig
from conceptmask_tf.data.world.ontology import Ontology
from conceptmask_tf.data.world.regions import (
    InstanceBox,
    concept_areas,
    instance_boxes,
    instance_masks,
    object_filter,
)
from conceptmask_tf.data.world.scene import RenderedScene

STAGING_MARKER = ".conceptworld-staging"
WORLD_FORMAT_VERSION = 2
EVAL_NOTE = ("eval/ and val/ files hold one annotation per visible instance (object, part "
             "instance, stuff region; for an attribute or phrase, each object having it), with "
             "its RLE mask and its box (COCO bbox, the box ground truth of Table 1). Every "
             "held-out image is listed in every split file. A concept whose visible area is "
             "below min_region_pixels is neither a positive nor in neg_category_ids for that "
             "image.")


@contextlib.contextmanager
def staging_dir(out_dir: str, overwrite: bool) -> Iterator[str]:
    """Yields `<out_dir>.tmp` to write into; on success it replaces `out_dir`.

    Raises:
        FileExistsError: if `out_dir` is a non-empty folder and `overwrite` is False, or it
            is not a concept world (no world.json) even with `overwrite`, or a stale
            `<out_dir>.tmp` is not a staging folder of ours.
    """
    out_dir = files.abspath(out_dir)
    if files.exists(out_dir):
        if not files.isdir(out_dir):
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        if files.listdir(out_dir):
            if not overwrite:
                raise FileExistsError(f"{out_dir} is not empty; overwrite it explicitly "
                                      "(--overwrite) to replace it")
            if not files.isfile(os.path.join(out_dir, "world.json")):
                raise FileExistsError(f"refusing to overwrite {out_dir}: it is not a concept "
                                      "world (no world.json)")
    tmp = out_dir + ".tmp"
    if files.exists(tmp):
        if not files.isfile(os.path.join(tmp, STAGING_MARKER)):
            raise FileExistsError(f"{tmp} exists and is not a concept-world staging folder")
        files.rmtree(tmp)
    files.makedirs(tmp, exist_ok=False)
    with files.open_file(os.path.join(tmp, STAGING_MARKER), "w") as f:
        f.write("partial concept world; safe to delete\n")
    try:
        yield tmp
    except BaseException:
        files.rmtree(tmp, ignore_errors=True)
        raise
    files.remove(os.path.join(tmp, STAGING_MARKER))
    files.replace_folder(tmp, out_dir)


class WorldFiles:
    """Collects the records of every data-root file and writes them.

    Args:
        root: Folder to write into (the staging folder).
        config: World config.
        ontology: World ontology.
    """

    def __init__(self, root: str, config: WorldConfig, ontology: Ontology) -> None:
        self.layout = DataRoot(root)
        self.config = config
        self.ontology = ontology
        self.min_pixels = config.region_min_pixels
        self.vocabulary = ontology.names()
        self.trained = tuple(c for c in ontology.concepts if c.level != "zero_shot")
        self.strong = {c.name: c for c in ontology.at_level("strong")}
        self.box_vocab = {source: {c.name: c for c in ontology.box_concepts(source)}
                          for source in ("oi", "vg")}
        # The all-box world: every weak_image concept is boxed too; an attribute or a
        # phrase by the boxes of the objects it names (`object_filter`).
        self.oracle_filters = []
        if config.oracle_boxes:
            weak_image = ontology.at_level("weak_image")
            self.box_vocab["oi"].update({c.name: c for c in weak_image})
            self.oracle_filters = [(c.name, object_filter(c)) for c in weak_image
                                   if c.type in ("attribute", "phrase")]
        self.tags: list[dict] = []
        self.coco_images: list[dict] = []
        self.coco_annotations: list[dict] = []
        self.oi_rows: list[list[str]] = []
        self.oi_labels: list[list[str]] = []
        self.vg_objects: list[dict] = []
        self.vg_images: list[dict] = []
        self.eval: dict[str, dict[str, dict]] = {
            part: {split: {"images": [], "annotations": []} for split in SPLITS}
            for part in ("val", "test")}
        self.counts: collections.Counter = collections.Counter()
        self.train_presence: collections.Counter = collections.Counter()
        self.eval_positives = {part: collections.Counter() for part in ("val", "test")}
        files.makedirs(self.layout.images_dir, exist_ok=False)

    # -- images ---------------------------------------------------------------------------

    def save_image(self, file_name: str, image: np.ndarray) -> None:
        path = os.path.join(self.layout.images_dir, file_name)
        picture = Image.fromarray(image)
        with files.open_file(path, "wb") as f:
            if self.config.image_format == "jpeg":
                picture.save(f, "JPEG", quality=self.config.jpeg_quality, subsampling=0)
            else:
                picture.save(f, "PNG")

    def file_name(self, prefix: str, index: int) -> str:
        return f"{prefix}_{index + 1:06d}.{self.config.image_extension}"

    # -- training images --------------------------------------------------------------------

    def add_training(self, index: int, image_id: int, scene: RenderedScene,
                     rng: np.random.Generator) -> None:
        """Writes a training image and its tags, and masks or boxes for the chosen subsets."""
        name = self.file_name("train", index)
        stem = os.path.splitext(name)[0]
        self.save_image(name, scene.image)
        areas = concept_areas(scene, self.ontology)
        present = [c for c, a in areas.items() if a >= self.min_pixels]
        self.train_presence.update(present)
        tags = formats.noisy_tags(present, scene.context, self.vocabulary, rng,
                                  self.config.tag_drop_rate, self.config.wrong_tag_rate)
        self.tags.append({"image": f"images/{name}", "tags": tags})
        self.counts["train"] += 1
        in_coco = rng.random() < self.config.coco_fraction
        source = None
        if rng.random() < self.config.box_fraction:
            source = "oi" if rng.random() < 0.5 else "vg"
        if in_coco:
            self._add_coco(image_id, name, scene)
        boxes = instance_boxes(scene) if source else []
        if source == "oi":
            self._add_oi(stem, scene, boxes, areas, rng)
        elif source == "vg":
            self._add_vg(image_id, name, boxes)

    def _add_coco(self, image_id: int, name: str, scene: RenderedScene) -> None:
        self.counts["coco_images"] += 1
        self.coco_images.append(formats.coco_image(image_id, name, scene.size))
        for i, obj in enumerate(scene.objects):
            if obj.concept not in self.strong:
                continue
            mask = scene.object_map == i
            if not mask.any():
                continue
            ann, as_polygon = formats.coco_annotation(
                len(self.coco_annotations) + 1, image_id, self.strong[obj.concept].id, mask,
                self.config.mask_format)
            self.coco_annotations.append(ann)
            self.counts["coco_polygon_annotations" if as_polygon else "coco_rle_annotations"] += 1

    def _add_oi(self, stem: str, scene: RenderedScene, boxes: list[InstanceBox],
                areas: dict[str, int],
                rng: np.random.Generator) -> None:
        self.counts["oi_images"] += 1
        vocab = self.box_vocab["oi"]
        for box in boxes:
            names = [box.concept]
            if box.kind == "object":
                obj = scene.objects[box.index]
                names += [name for name, names_it in self.oracle_filters if names_it(obj)]
            for name in names:
                if name in vocab:
                    self.oi_rows.append(formats.oi_box_row(stem, vocab[name].mid, box,
                                                           scene.size, scene.scene == "indoor"))
        # Image-level labels: verified present (1) and a sample of verified absent (0).
        for concept in self.trained:
            area = areas.get(concept.name, 0)
            if concept.type == "context":
                if concept.name in scene.context:
                    self.oi_labels.append([stem, "verification", concept.mid, "1"])
            elif area >= self.min_pixels:
                self.oi_labels.append([stem, "verification", concept.mid, "1"])
            elif area == 0 and rng.random() < self.config.negative_label_rate:
                self.oi_labels.append([stem, "verification", concept.mid, "0"])

    def _add_vg(self, image_id: int, name: str, boxes: list[InstanceBox]) -> None:
        self.counts["vg_images"] += 1
        vocab = self.box_vocab["vg"]
        objects = []
        for box in boxes:
            if box.concept in vocab:
                objects.append(formats.vg_object(image_id * 1000 + len(objects), box,
                                                 box.concept))
        self.vg_objects.append({"image_id": image_id, "objects": objects})
        self.vg_images.append({"image_id": image_id,
                               "url": f"https://concept-world.invalid/VG_100K/{name}",
                               "width": self.config.image_size,
                               "height": self.config.image_size,
                               "coco_id": None, "flickr_id": None})

    # -- held-out images --------------------------------------------------------------------

    def add_eval(self, part: str, index: int, image_id: int, scene: RenderedScene,
                 areas: dict[str, int]) -> None:
        """Writes a held-out image into every split file of `part` ("val" or "test")."""
        name = self.file_name(part, index)
        self.save_image(name, scene.image)
        self.counts[f"{part}_images"] += 1
        for split in SPLITS:
            record = self.eval[part][split]
            negatives = []
            for concept in self.ontology.at_level(split):
                area = areas.get(concept.name, 0)
                if area == 0:
                    negatives.append(concept.id)
                elif area >= self.min_pixels:
                    for mask in instance_masks(scene, concept):
                        record["annotations"].append({
                            "id": len(record["annotations"]) + 1, "image_id": image_id,
                            "category_id": concept.id, "segmentation": formats.rle_json(mask),
                            "area": float(mask.sum()), "bbox": formats.mask_bbox(mask),
                            "iscrowd": 0})
                    self.eval_positives[part][concept.name] += 1
            record["images"].append(formats.coco_image(
                image_id, name, scene.size, neg_category_ids=negatives,
                not_exhaustive_category_ids=[]))

    # -- output -----------------------------------------------------------------------------

    def write(self, extra: dict) -> None:
        """Writes every file except the images (already written)."""
        layout = self.layout
        for folder in ("coco", "boxes", "labels", "eval", "val"):
            files.makedirs(layout.path(folder))
        with files.open_file(layout.tags, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in self.tags)
        info = {"description": "concept world (conceptmask_tf)", "version": "1.0",
                "year": 2018, "contributor": "conceptmask_tf", "date_created": ""}
        _write_json(layout.coco_instances, {
            "info": info, "licenses": [], "images": self.coco_images,
            "annotations": self.coco_annotations,
            "categories": formats.coco_categories(self.strong.values())})
        _write_csv(layout.oi_boxes, [list(formats.OI_BOX_HEADER)] + self.oi_rows)
        # Like Open Images, describe every class (here: every trained concept), used or not.
        _write_csv(layout.oi_class_descriptions,
                   [[c.mid, c.name.capitalize()] for c in self.trained])
        _write_csv(layout.oi_image_labels, [list(formats.OI_LABEL_HEADER)] + self.oi_labels)
        _write_json(layout.vg_objects, self.vg_objects)
        _write_json(layout.vg_image_data, self.vg_images)
        _write_json(layout.splits, self.ontology.splits(), indent=2)
        for part, target in (("val", layout.val_file), ("test", layout.eval_file)):
            for split in SPLITS:
                record = self.eval[part][split]
                _write_json(target(split), {
                    "info": {**info, "description": f"concept world {part} ground truth, "
                                                    f"{split} concepts"},
                    "licenses": [], "images": record["images"],
                    "annotations": record["annotations"],
                    "categories": formats.coco_categories(self.ontology.at_level(split))})
        _write_json(layout.path("world.json"), {
            "format_version": WORLD_FORMAT_VERSION,
            "note": EVAL_NOTE,
            **extra,
            "counts": dict(sorted(self.counts.items())),
            "train_images_per_concept": {c.name: self.train_presence[c.name]
                                         for c in self.ontology.region_concepts},
            "eval_positives": {part: {c.name: self.eval_positives[part][c.name]
                                      for c in self.ontology.region_concepts}
                               for part in ("val", "test")},
            "concepts": self.ontology.to_json(),
        }, indent=2)


def _write_json(path: str, obj, indent: int | None = None) -> None:
    with files.open_file(path, "w") as f:
        if indent is None:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=indent)
            f.write("\n")


def _write_csv(path: str, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    with files.open_file(path, "w") as f:
        f.write(buffer.getvalue())
