"""Writers of small files in the real public formats (COCO, Open Images, Visual Genome).

Each writer puts hand-made annotations with known pixel counts and coordinates into a
folder and returns the paths; the tests state the expected values next to the data.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

# COCO fixture (width x height given per image).
# image 1: "img1.jpg", 10 wide x 8 high.
#   ann 101 person, polygon (1,1)-(5,1)-(5,5)-(1,5): pixels rows 1-4, cols 1-4 (16 px).
#   ann 102 person, uncompressed RLE: rows 4-5, cols 4-7 (8 px); overlaps ann 101 at (4,4).
#     -> merged person mask: 16 + 8 - 1 = 23 px.
#   ann 103 Traffic_Light, compressed RLE: rows 0-1, cols 8-9 (4 px).
#   ann 104 person crowd, uncompressed RLE: rows 0-7, cols 0-2 (24 px); the person union
#     covers rows 1-4, cols 1-2 of it (8 px) -> ignore region 16 px.
#   ann 105 dog crowd only: rows 6-7, cols 0-1 (4 px) -> empty rle, ignore 4 px.
# image 2: "sub/img2.png", 4 x 4, no annotation, neg_category_ids [4, 4] -> ("cat",).
# image 3: "img3.jpg", 6 x 6, no annotation, no neg ids (kept, no masks).
COCO_CATEGORIES = [
    {"id": 1, "name": "Person", "supercategory": "person"},
    {"id": 2, "name": "Traffic_Light", "supercategory": "outdoor"},
    {"id": 3, "name": "dog", "supercategory": "animal"},
    {"id": 4, "name": "cat", "supercategory": "animal"},
]


def block_mask(height: int, width: int, rows: tuple[int, int],
               cols: tuple[int, int]) -> np.ndarray:
    """uint8 [height, width] with ones in rows[0]..rows[1] x cols[0]..cols[1] (inclusive)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE written by hand: run lengths in column-major order, zeros first."""
    flat = mask.flatten(order="F").tolist()
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE as it appears in JSON files (counts a str)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def coco_dataset() -> dict[str, Any]:
    """The COCO fixture described at the top of this module, as a dict."""
    h, w = 8, 10
    annotations = [
        {"id": 101, "image_id": 1, "category_id": 1, "iscrowd": 0,
         "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]], "area": 16, "bbox": [1, 1, 4, 4]},
        {"id": 102, "image_id": 1, "category_id": 1, "iscrowd": 0,
         "segmentation": uncompressed_rle(block_mask(h, w, (4, 5), (4, 7))), "area": 8,
         "bbox": [4, 4, 4, 2]},
        {"id": 103, "image_id": 1, "category_id": 2, "iscrowd": 0,
         "segmentation": compressed_rle(block_mask(h, w, (0, 1), (8, 9))), "area": 4,
         "bbox": [8, 0, 2, 2]},
        {"id": 104, "image_id": 1, "category_id": 1, "iscrowd": 1,
         "segmentation": uncompressed_rle(block_mask(h, w, (0, 7), (0, 2))), "area": 24,
         "bbox": [0, 0, 3, 8]},
        {"id": 105, "image_id": 1, "category_id": 3, "iscrowd": 1,
         "segmentation": uncompressed_rle(block_mask(h, w, (6, 7), (0, 1))), "area": 4,
         "bbox": [0, 6, 2, 2]},
    ]
    images = [
        {"id": 1, "file_name": "img1.jpg", "width": w, "height": h},
        {"id": 2, "file_name": "sub/img2.png", "width": 4, "height": 4,
         "neg_category_ids": [4, 4]},
        {"id": 3, "file_name": "img3.jpg", "width": 6, "height": 6},
    ]
    return {"info": {"description": "fixture"}, "images": images,
            "annotations": annotations, "categories": [dict(c) for c in COCO_CATEGORIES]}


def write_json(path: str, data: Any) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path


def write_coco(directory: str, data: dict[str, Any] | None = None,
               name: str = "instances_train.json") -> str:
    """Writes the COCO fixture (or `data`) and returns the file path."""
    return write_json(os.path.join(directory, name), coco_dataset() if data is None else data)


# Open Images fixture. Class descriptions (no header, as Open Images ships them).
OI_CLASSES = [("/m/01", "Car"), ("/m/02", "Traffic_Light"), ("/m/03", "Person, adult")]
OI_HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
             "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
# (ImageID, LabelName, Confidence, XMin, XMax, YMin, YMax); expected outcome in the comment.
OI_ROWS = [
    ("img_a", "/m/01", 1, 0.1, 0.5, 0.2, 0.6),    # row 1: car (0.1, 0.2, 0.5, 0.6)
    ("img_a", "/m/02", 1, -0.1, 0.3, 0.5, 1.2),   # row 2: clipped -> (0.0, 0.5, 0.3, 1.0)
    ("img_b", "/m/03", 1, 0.0, 1.0, 0.0, 1.0),    # row 3: "person adult", whole image
    ("img_b", "/m/99", 1, 0.1, 0.2, 0.1, 0.2),    # row 4: unknown LabelName -> skip
    ("img_c", "/m/01", 1, 0.5, 0.5, 0.1, 0.2),    # row 5: zero width -> skip
    ("img_c", "/m/01", 1, 1.1, 1.3, 0.1, 0.2),    # row 6: entirely outside -> skip
    ("img_a", "/m/01", 1, 0.6, 0.9, 0.7, 0.8),    # row 7: second car of img_a
    ("img_d", "/m/02", 0, 0.1, 0.2, 0.1, 0.2),    # row 8: Confidence 0 -> skip
    ("img_e", "/m/01", 1, 0.3, 0.4, 0.3, 0.4),    # row 9: kept, but img_e has no file
    ("img_c", "/m/01", 1, 0.4, 0.2, 0.1, 0.2),    # row 10: inverted -> skip
]
# Image files for image_dir tests: img_a has .jpg and .png (.jpg wins), img_b is .PNG.
OI_IMAGE_FILES = ["img_a.jpg", "img_a.png", "img_b.PNG", "img_c.jpg", "img_d.jpeg", "notes.txt"]


def write_oi_class_descriptions(directory: str, rows=OI_CLASSES, header: bool = False,
                                name: str = "oi_class_descriptions.csv") -> str:
    path = os.path.join(directory, name)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(["LabelName", "DisplayName"])
        writer.writerows(rows)
    return path


def write_oi_boxes(directory: str, rows=OI_ROWS, columns=OI_HEADER,
                   name: str = "oi_boxes_train.csv") -> str:
    """Writes an Open Images box CSV with `columns` (a subset of OI_HEADER, any order)."""
    path = os.path.join(directory, name)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for image_id, label, confidence, xmin, xmax, ymin, ymax in rows:
            values = {"ImageID": image_id, "Source": "xclick", "LabelName": label,
                      "Confidence": confidence, "XMin": xmin, "XMax": xmax, "YMin": ymin,
                      "YMax": ymax, "IsOccluded": 0, "IsTruncated": 0, "IsGroupOf": 0,
                      "IsDepiction": 0, "IsInside": 0}
            writer.writerow([values[c] for c in columns])
    return path


def touch_files(directory: str, names: list[str]) -> str:
    """Creates empty files (readers only check that image files exist)."""
    os.makedirs(directory, exist_ok=True)
    for name in names:
        with open(os.path.join(directory, name), "wb"):
            pass
    return directory


# Visual Genome fixture.
# image 1: 200 wide x 100 high (file "1.jpg" from its url).
#   object 10 "The Trees" at x=20, y=10, w=100, h=50 -> "trees" -> folded to "tree"
#     (object 11 is a "tree") -> (0.1, 0.1, 0.6, 0.6).
#   object 11 ["tree", "a Plant"] at x=150, y=50, w=100, h=100 -> clipped to
#     (0.75, 0.5, 1.0, 1.0), one box per name: "tree" and "plant".
#   object 12 "car" with w=0 -> degenerate, skipped.
#   object 13 "!!!" -> name with no word characters, skipped.
#   object 14 "car" at x=300 -> entirely outside, skipped.
#   object 15 ["glasses", "grass"] at x=0, y=0, w=200, h=100 -> kept as is (no
#     "glasse" in the vocabulary; "grass" ends in "ss"): (0, 0, 1, 1).
# image 2: 50 x 50, file "2.png" from "file".
#   object 20 "men" at x=5, y=10, w=20, h=15 -> (0.1, 0.2, 0.5, 0.5), "man" with the alias map.
# image 3: objects but no image data -> skipped.
VG_IMAGE_DATA = [
    {"image_id": 1, "width": 200, "height": 100, "coco_id": None, "flickr_id": None,
     "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg"},
    {"image_id": 2, "width": 50, "height": 50, "file": "images/2.png"},
]
VG_OBJECTS = [
    {"image_id": 1, "objects": [
        {"object_id": 10, "x": 20, "y": 10, "w": 100, "h": 50, "names": ["The Trees"]},
        {"object_id": 11, "x": 150, "y": 50, "w": 100, "h": 100, "names": ["tree", "a Plant"]},
        {"object_id": 12, "x": 10, "y": 10, "w": 0, "h": 10, "names": ["car"]},
        {"object_id": 13, "x": 10, "y": 10, "w": 10, "h": 10, "names": ["!!!"]},
        {"object_id": 14, "x": 300, "y": 10, "w": 10, "h": 10, "names": ["car"]},
        {"object_id": 15, "x": 0, "y": 0, "w": 200, "h": 100, "names": ["glasses", "grass"]},
    ]},
    {"image_id": 2, "objects": [
        {"object_id": 20, "x": 5, "y": 10, "w": 20, "h": 15, "names": ["men"]},
    ]},
    {"image_id": 3, "objects": [
        {"object_id": 30, "x": 1, "y": 1, "w": 1, "h": 1, "names": ["dog"]},
    ]},
]


def write_vg(directory: str, objects=None, image_data=None) -> tuple[str, str]:
    """Writes vg_objects.json and vg_image_data.json; returns their paths."""
    objects_path = write_json(os.path.join(directory, "vg_objects.json"),
                              VG_OBJECTS if objects is None else objects)
    image_data_path = write_json(os.path.join(directory, "vg_image_data.json"),
                                 VG_IMAGE_DATA if image_data is None else image_data)
    return objects_path, image_data_path


SPLITS = {"strong": ["person", "Traffic_Light"], "weak_box": ["car"],
          "weak_image": ["plant"], "zero_shot": ["red car"]}


def write_data_root(root: str, oi: bool = True, vg: bool = True, eval_splits=("strong",),
                    val_splits=()) -> str:
    """A data root with boxes (OI and/or VG), images, splits.json and ground-truth files."""
    boxes_dir = os.path.join(root, "boxes")
    os.makedirs(boxes_dir, exist_ok=True)
    touch_files(os.path.join(root, "images"), [*OI_IMAGE_FILES, "1.jpg", "2.png"])
    if oi:
        write_oi_boxes(boxes_dir)
        write_oi_class_descriptions(boxes_dir)
    if vg:
        write_vg(boxes_dir)
    write_json(os.path.join(root, "splits.json"), SPLITS)
    for split in eval_splits:
        write_coco(os.path.join(root, "eval"), name=f"{split}.json")
    for split in val_splits:
        data = coco_dataset()
        data["images"] = data["images"][1:]  # val: img2 and img3 only
        data["annotations"] = []
        write_coco(os.path.join(root, "val"), data, name=f"{split}.json")
    return root
