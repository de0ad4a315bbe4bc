"""Example pictures for report.md: image | refined attention | predicted mask | ground truth.

Groups follow the kinds of concept the paper shows (Fig. 5): a category's COCO
"supercategory" in the eval file ("object" -> "objects", "part" -> "parts", "stuff",
"attribute" -> "attributes", "phrase" -> "phrases"), plus "weak" (weak_image examples)
and "unseen" (zero_shot examples). A category without one of those supercategories (user
data) is grouped by its split only: "strong", "weak_box", "weak" or "unseen". Examples are picked deterministically: splits in
order, images in file order, a concept once per group, a pair once overall, masks of at
least 1% of the image preferred.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from conceptmask_tf import visualization
from conceptmask_tf.base import files, metrics
from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.evaluation.eval_set import EvalImage, EvalPair, EvalSet
from conceptmask_tf.evaluation.predictors import Predictor, run_batch
from conceptmask_tf.evaluation.report import Picture

PICTURES_DIR = "pictures"
SHEET_FILE = "sheet.png"  # all pictures of a report in one sheet
SHEET_GROUP = "all in one sheet"
SUPERCATEGORY_GROUPS = {"object": "objects", "part": "parts", "stuff": "stuff",
                        "attribute": "attributes", "phrase": "phrases"}
SPLIT_GROUPS = {"weak_image": "weak", "zero_shot": "unseen"}
GROUP_ORDER = (*SUPERCATEGORY_GROUPS.values(), *SPLITS[:2], *SPLIT_GROUPS.values())
_MIN_AREA_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class PictureChoice:
    """One example to draw."""

    group: str
    image: EvalImage
    pair: EvalPair


def pair_groups(eval_set: EvalSet, pair: EvalPair) -> list[str]:
    """The picture groups a present pair can illustrate."""
    split_group = SPLIT_GROUPS.get(pair.split, pair.split)
    supercategory = eval_set.supercategories.get((pair.split, pair.concept))
    if supercategory not in SUPERCATEGORY_GROUPS:
        return [split_group]
    groups = [SUPERCATEGORY_GROUPS[supercategory]]
    return groups + [split_group] if pair.split in SPLIT_GROUPS else groups


def choose_pictures(eval_set: EvalSet, per_group: int = 2) -> list[PictureChoice]:
    """Picks up to `per_group` examples per group (see the module docstring)."""
    candidates: dict[str, list[tuple[EvalImage, EvalPair]]] = {}
    for split in eval_set.splits:
        for image in eval_set.images:
            for pair in image.pairs:
                if pair.split == split and pair.present:
                    for group in pair_groups(eval_set, pair):
                        candidates.setdefault(group, []).append((image, pair))
    chosen: list[PictureChoice] = []
    used: set[tuple[str, str]] = set()
    groups = sorted(candidates, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER
                                               else len(GROUP_ORDER), g))
    for group in groups:
        ranked = sorted(candidates[group], key=lambda c: not _large_enough(*c))  # stable
        concepts: set[str] = set()
        for image, pair in ranked:
            if len(concepts) == per_group:
                break
            if pair.concept in concepts or (image.image, pair.concept) in used:
                continue
            concepts.add(pair.concept)
            used.add((image.image, pair.concept))
            chosen.append(PictureChoice(group, image, pair))
    return chosen


def _large_enough(image: EvalImage, pair: EvalPair) -> bool:
    area = float(mask_utils.area(pair.mask.rle))
    return area >= _MIN_AREA_FRACTION * image.height * image.width


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "concept"


def _upsample(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float [h, w] map to [height, width]."""
    image = Image.fromarray(np.asarray(values, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize((width, height), Image.BILINEAR))


def write_pictures(predict: Predictor, eval_set: EvalSet, choices: Sequence[PictureChoice],
                   out_dir: str) -> list[Picture]:
    """Draws each choice with the full model and saves it under `<out_dir>/pictures/`.

    Args:
        predict: The full `ConceptMask` (outputs "mask_probs" and "attention").
        eval_set: The ground truth.
        choices: From `choose_pictures`.
        out_dir: The report folder.

    Returns:
        The pictures, paths relative to `out_dir`, then (with any choice) one sheet of
        them all, one row per picture (group `SHEET_GROUP`, `SHEET_FILE`).
    """
    files.makedirs(os.path.join(out_dir, PICTURES_DIR))
    pictures = []
    all_rows, all_captions = [], []
    for i, choice in enumerate(choices):
        pixels = eval_set.pixels(choice.image)  # uint8 [H, W, 3]
        vector = eval_set.vectors[choice.pair.concept][None]  # [1, D]
        outputs = run_batch(predict, [pixels], [vector], ("mask_probs", "attention"))[0]
        probs = outputs["mask_probs"][0]  # [H, W]
        truth, ignore = choice.pair.truth()
        iou = metrics.binary_scores(probs, truth, ignore)[2]
        height, width = truth.shape
        attention = _upsample(outputs["attention"][0], height, width)
        concept, split = choice.pair.concept, choice.pair.split
        row = [pixels, visualization.heatmap(attention),
               visualization.overlay_masks(pixels, [probs]),  # soft; outline at 0.5
               visualization.overlay_masks(pixels, [truth])]
        captions = [f"{concept} ({split})", "refined attention", f"mask probs, IoU {iou:.2f}",
                    "ground truth"]
        all_rows.append(row)
        all_captions.append([f"{choice.group}: {captions[0]}", *captions[1:]])
        sheet = visualization.contact_sheet([row], [captions])
        relative = os.path.join(PICTURES_DIR, f"{i:02d}_{choice.group}_{_slug(concept)}.png")
        _save_png(sheet, os.path.join(out_dir, relative))
        caption = (f"{concept} ({split} split, {choice.image.image}): image | refined "
                   f"attention | mask probabilities, outlined at 0.5 (IoU {iou:.2f}) | "
                   f"ground truth")
        pictures.append(Picture(relative, caption, choice.group))
    if all_rows:
        relative = os.path.join(PICTURES_DIR, SHEET_FILE)
        _save_png(visualization.contact_sheet(all_rows, all_captions, tile_size=128),
                  os.path.join(out_dir, relative))
        pictures.append(Picture(relative, "every picture above in one sheet: kind and concept "
                                "| refined attention | mask probabilities | ground truth",
                                SHEET_GROUP))
    return pictures


def _save_png(picture: Image.Image, path: str) -> None:
    with files.open_file(path, "wb") as f:
        picture.save(f, "PNG")
