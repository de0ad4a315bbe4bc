"""Records in the public formats real data comes in: COCO, Open Images CSV, Visual Genome JSON.

Pure functions from a scene's regions to JSON-ready dicts and CSV rows; `writer.py` puts them
in files.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from conceptmask_tf.data.world.polygons import mask_to_polygons
from conceptmask_tf.data.world.regions import InstanceBox

OI_BOX_HEADER = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin",
                 "YMax", "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
OI_LABEL_HEADER = ("ImageID", "Source", "LabelName", "Confidence")


def rle_json(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a [H, W] bool mask with `counts` as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": rle["counts"].decode("ascii")}


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO [x, y, width, height] of the pixels of a non-empty mask."""
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


def coco_image(image_id: int, file_name: str, size: int, **extra) -> dict:
    """A COCO `images` entry; `file_name` is the base name under images/."""
    return {"id": image_id, "file_name": file_name, "width": size, "height": size, **extra}


def coco_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray,
                    mask_format: str) -> tuple[dict, bool]:
    """A COCO `annotations` entry for a non-empty mask.

    Args:
        ann_id: Annotation id.
        image_id: Image id.
        category_id: Category id.
        mask: [H, W] bool.
        mask_format: "polygon" (exact polygons when possible) or "rle".

    Returns:
        (annotation, written_as_polygon).
    """
    segmentation = mask_to_polygons(mask) if mask_format == "polygon" else None
    as_polygon = segmentation is not None
    if segmentation is None:
        segmentation = rle_json(mask)
    ann = {"id": ann_id, "image_id": image_id, "category_id": category_id,
           "segmentation": segmentation, "area": float(mask.sum()), "bbox": mask_bbox(mask),
           "iscrowd": 0}
    return ann, as_polygon


def coco_categories(concepts) -> list[dict]:
    """COCO `categories` from Concept records (supercategory = concept type)."""
    return [{"id": c.id, "name": c.name, "supercategory": c.type} for c in concepts]


def oi_box_row(image_stem: str, mid: str, box: InstanceBox, size: int,
               inside: bool) -> list[str]:
    """One Open Images box CSV row with normalised coordinates."""
    def norm(v: int) -> str:
        return f"{v / size:.6f}"

    truncated = box.x0 == 0 or box.y0 == 0 or box.x1 == size - 1 or box.y1 == size - 1
    return [image_stem, "xclick", mid, "1", norm(box.x0), norm(box.x1 + 1), norm(box.y0),
            norm(box.y1 + 1), str(int(box.occluded)), str(int(truncated)), "0", "0",
            str(int(inside))]


def vg_object(object_id: int, box: InstanceBox, name: str) -> dict:
    """One Visual Genome object with a pixel box (x, y, w, h) inside the image."""
    return {"object_id": object_id, "x": box.x0, "y": box.y0, "w": box.x1 - box.x0 + 1,
            "h": box.y1 - box.y0 + 1, "names": [name], "synsets": []}


def noisy_tags(present: list[str], context: tuple[str, ...], vocabulary: tuple[str, ...],
               rng: np.random.Generator, drop_rate: float, wrong_rate: float) -> list[str]:
    """Image-level tags as people write them: some present concepts left out, some wrong.

    Args:
        present: Region concepts visible in the image.
        context: Context tags of the scene (already sampled, kept as they are).
        vocabulary: Every tag that may be added by mistake.
        rng: Random generator.
        drop_rate: Probability of leaving out each present region concept.
        wrong_rate: Probability of adding one concept that is not in the image.

    Returns:
        Tags in random order; not empty when something is present.
    """
    tags = [t for t in present if rng.random() >= drop_rate] + list(context)
    if not tags and present:
        tags = [present[rng.integers(len(present))]]
    if rng.random() < wrong_rate:
        absent = [t for t in vocabulary if t not in present and t not in context]
        if absent:
            tags.append(absent[rng.integers(len(absent))])
    return [tags[i] for i in rng.permutation(len(tags))]
