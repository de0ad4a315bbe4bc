"""A tiny data root, word vectors and fake models for the evaluation tests.

Images (random pixels, seed per image) and their ground-truth masks, rows/cols inclusive:
  img0.png 32x32: sky rows 0-11 (384 px); dog rows 20-27 x cols 4-13 (80 px).
  img1.png 32x32: dog rows 16-29 x cols 16-29 (196 px); cat rows 2-9 x cols 20-27 (64 px);
                  red car rows 2-9 x cols 2-17 (128 px); car: crowd-only (empty mask).
  img2.png 24x32: sky = cloud rows 0-9 (320 px).
Eval files (present concepts | verified absent):
  strong:     img0 dog | car;  img1 dog, car (crowd only: skipped) | -
  weak_box:   img0 sky | -;    img1 cat | sky;  img2 sky | cat
  weak_image: img0 - | red car; img1 red car | -;  img2 zebra (no word vector) | -
  zero_shot:  img1 - | cloud;  img2 cloud | -
Boxes ("bbox"): each mask's bounding box, except cat in img1, whose box is looser than its
mask (rows 0-11 x cols 18-29, 144 px around the 64 mask pixels), as annotators' boxes are.
Word vectors (D = 8): sky, dog, car, red, cat, cloud are vocabulary rows e_0..e_5; "red car"
is a phrase (idf-weighted red + car); "zebra" is unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.evaluation.eval_set import EvalSet

DIM = 8
VOCABULARY = ("sky", "dog", "car", "red", "cat", "cloud")
SUPERCATEGORY = {"dog": "object", "car": "object", "sky": "stuff", "cat": "object",
                 "red car": "phrase", "zebra": "object", "cloud": "stuff"}


def block(height: int, width: int, rows: tuple[int, int],
          cols: tuple[int, int] | None = None) -> np.ndarray:
    """bool [height, width], True in rows[0]..rows[1] x cols[0]..cols[1] (inclusive)."""
    mask = np.zeros((height, width), dtype=bool)
    cols = cols or (0, width - 1)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return mask


IMAGES = {
    "img0.png": (32, 32, {"sky": block(32, 32, (0, 11)), "dog": block(32, 32, (20, 27), (4, 13))}),
    "img1.png": (32, 32, {"dog": block(32, 32, (16, 29), (16, 29)),
                          "cat": block(32, 32, (2, 9), (20, 27)),
                          "red car": block(32, 32, (2, 9), (2, 17))}),
    "img2.png": (24, 32, {"sky": block(24, 32, (0, 9)), "cloud": block(24, 32, (0, 9))}),
}
# split -> image -> (present concepts, verified-absent concepts)
SPLIT_FILES = {
    "strong": {"img0.png": (["dog"], ["car"]), "img1.png": (["dog", "car"], [])},
    "weak_box": {"img0.png": (["sky"], []), "img1.png": (["cat"], ["sky"]),
                 "img2.png": (["sky"], ["cat"])},
    "weak_image": {"img0.png": ([], ["red car"]), "img1.png": (["red car"], []),
                   "img2.png": (["zebra"], [])},
    "zero_shot": {"img1.png": ([], ["cloud"]), "img2.png": (["cloud"], [])},
}
CROWD_ONLY = {("img1.png", "car")}
LOOSE_BOXES = {("img1.png", "cat"): [18, 0, 12, 12]}  # COCO [x, y, w, h]
SPLIT_CONCEPTS = {"strong": ["dog", "car"], "weak_box": ["sky", "cat"],
                  "weak_image": ["red car", "zebra"], "zero_shot": ["cloud"]}


def truth(image: str, concept: str) -> np.ndarray:
    """The ground-truth mask of a present concept (the fixture's, not read back)."""
    return IMAGES[image][2][concept]


def bbox(image: str, concept: str, mask: np.ndarray) -> list[float]:
    """The COCO [x, y, w, h] box written for a present concept."""
    if (image, concept) in LOOSE_BOXES:
        return list(LOOSE_BOXES[image, concept])
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1),
            int(rows.max() - rows.min() + 1)]


def box_truth(image: str, concept: str) -> np.ndarray:
    """bool [H, W]: the pixels inside the box of a present concept."""
    height, width, masks = IMAGES[image]
    x, y, w, h = bbox(image, concept, masks[concept])
    return block(height, width, (y, y + h - 1), (x, x + w - 1))


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _coco(split: str) -> dict[str, Any]:
    names = [c for c in SPLIT_CONCEPTS[split]]
    ids = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for image_id, (file_name, (present, absent)) in enumerate(SPLIT_FILES[split].items(), 1):
        height, width, masks = IMAGES[file_name]
        images.append({"id": image_id, "file_name": file_name, "width": width,
                       "height": height, "neg_category_ids": [ids[c] for c in absent]})
        for concept in present:
            crowd = (file_name, concept) in CROWD_ONLY
            mask = block(height, width, (0, 3), (0, 3)) if crowd else masks.get(
                concept, block(height, width, (12, 15), (12, 15)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": ids[concept], "iscrowd": int(crowd),
                                "segmentation": _rle(mask), "area": int(mask.sum()),
                                "bbox": bbox(file_name, concept, mask)})
    categories = [{"id": ids[n], "name": n, "supercategory": SUPERCATEGORY[n]} for n in names]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_data_root(root: str, splits=tuple(SPLIT_FILES), val: bool = False) -> str:
    """Writes images/, splits.json and eval/<split>.json (val/ too if `val`) for `splits`."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for seed, (name, (height, width, _)) in enumerate(IMAGES.items()):
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, "images", name))
    with open(os.path.join(root, "splits.json"), "w") as f:
        json.dump(SPLIT_CONCEPTS, f)
    for kind in ("eval", "val") if val else ("eval",):
        os.makedirs(os.path.join(root, kind), exist_ok=True)
        for split in splits:
            with open(os.path.join(root, kind, f"{split}.json"), "w") as f:
                json.dump(_coco(split), f)
    return root


def embeddings() -> ConceptEmbeddings:
    vocabulary = Vocabulary(VOCABULARY, np.array([2, 2, 1, 1, 1, 1]), 4)
    return ConceptEmbeddings(vocabulary, np.eye(len(VOCABULARY), DIM, dtype=np.float32))


def write_concepts(directory: str) -> str:
    embeddings().save(directory)
    return directory


class FakeModel:
    """A predictor that answers from a rule on (image name, concept).

    It recognises images by their pixels and concepts by their word vectors.
    `rule(image, concept)` gives the mask probabilities [H, W] (None: all zeros); presence
    is 1.0 where the probabilities reach 0.5 somewhere. Records (B, K) of every call.
    """

    def __init__(self, eval_set: EvalSet,
                 rule: Callable[[str, str], np.ndarray | None]) -> None:
        self.images = {eval_set.pixels(i).astype(np.float32).tobytes():
                       os.path.basename(i.image) for i in eval_set.images}
        self.concepts = {v.astype(np.float32).tobytes(): c for c, v in eval_set.vectors.items()}
        self.rule = rule
        self.calls: list[tuple[int, int]] = []

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        images = np.asarray(inputs["image"], np.float32)  # [B, H, W, 3]
        vectors = np.asarray(inputs["word_vectors"], np.float32)  # [B, K, D]
        batch, height, width = images.shape[:3]
        self.calls.append(vectors.shape[:2])
        probs = np.zeros((batch, vectors.shape[1], height, width), np.float32)
        for b in range(batch):
            image = self.images[images[b].tobytes()]
            for k in range(vectors.shape[1]):
                mask = self.rule(image, self.concepts[vectors[b, k].tobytes()])
                if mask is not None:
                    probs[b, k] = mask
        presence = (probs.reshape(batch, vectors.shape[1], -1).max(-1) >= 0.5)
        return {"mask_probs": probs, "presence": presence.astype(np.float32)}


def oracle_rule(image: str, concept: str) -> np.ndarray | None:
    """The ground truth where the concept is present."""
    masks = IMAGES[image][2]
    if concept in masks and (image, concept) not in CROWD_ONLY:
        return masks[concept].astype(np.float32)
    return None
