"""COCO instances reader: one merged mask per (image, concept), through pycocotools.

Works for `coco/instances_train.json` and for the ground-truth files `eval/<split>.json`
and `val/<split>.json` (same format, images may list LVIS-style "neg_category_ids").
"""

from __future__ import annotations

import dataclasses
import posixpath

import numpy as np
from pycocotools import mask as mask_utils

from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.data._gc import gc_paused
from conceptmask_tf.data.records import get_field, is_int, load_json, require_dict, require_list
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import ConceptMask, MaskedImage, Rle
from conceptmask_tf.errors import DataError

SKIP_UNKNOWN_IMAGE = register_skip_reason("annotation for an image_id not in 'images'",
                                          Severity.EXPECTED)
SKIP_UNKNOWN_CATEGORY = register_skip_reason("annotation with a category_id not in 'categories'",
                                             Severity.EXPECTED)
SKIP_EMPTY_SEGMENTATION = register_skip_reason("annotation with an empty segmentation",
                                               Severity.BAD_ANNOTATION)
SKIP_SHORT_POLYGON = register_skip_reason("polygon with fewer than 3 points",
                                          Severity.BAD_ANNOTATION)
SKIP_EMPTY_MASK = register_skip_reason("annotation whose mask has no pixel",
                                       Severity.BAD_ANNOTATION)
SKIP_UNKNOWN_NEG = register_skip_reason("neg_category_id not in 'categories'", Severity.EXPECTED)
SKIP_CONFLICTING_NEG = register_skip_reason("neg_category_id that is also annotated in the image",
                                            Severity.EXPECTED)
SKIP_BAD_BBOX = register_skip_reason(
    "annotation 'bbox' that is not [x, y, width > 0, height > 0] (box taken from its mask)",
    Severity.EXPECTED)

Box = tuple[float, float, float, float]


@dataclasses.dataclass
class _Image:
    image_id: int
    path: str
    width: int
    height: int
    neg_ids: list[int]
    positives: dict[int, list[Rle]] = dataclasses.field(default_factory=dict)
    boxes: dict[int, list[Box]] = dataclasses.field(default_factory=dict)
    crowds: dict[int, list[Rle]] = dataclasses.field(default_factory=dict)


def read_coco_instances(json_path: str, image_prefix: str = "images",
                        skips: SkipCounter | None = None) -> list[MaskedImage]:
    """Reads a COCO instances file into one merged mask per (image, category).

    All non-crowd instances of a category in an image are merged (union) into
    `ConceptMask.rle`; its crowd regions not covered by that union become
    `ConceptMask.ignore_rle` (None when there are none). A category annotated only
    as crowd in an image gets an empty `rle` and its crowd region as `ignore_rle`:
    the concept is there but no pixel is a sure positive. Segmentations may be
    polygons, uncompressed RLE (counts a list) or compressed RLE (counts a string);
    they are converted with `pycocotools.mask` exactly as `COCO.annToRLE` does.

    Decisions:
        * Every image in "images" is returned, in file order, even one with no
          annotations and no "neg_category_ids": COCO annotates its categories
          exhaustively, so such an image is a real all-negative example; dropping
          it would lose data silently. Filter with `image.masks or image.neg_concepts`.
        * Masks are ordered as the categories are listed in "categories".
        * Two categories whose names normalise to the same concept are a `DataError`
          (merging them would change the annotation silently).
        * Polygon parts with fewer than 3 points (zero area; pycocotools would
          even read a 4-number part as a box) and annotations whose mask has no
          pixel are counted skips.
        * A "neg_category_ids" entry that is not a category, or that is also
          annotated in the image, is a counted skip (the rest of the list is kept).
        * Two images with the same `file_name` are a `DataError`.
        * A compressed RLE string is checked (its runs must sum to height * width)
          before pycocotools sees it: a corrupt string would otherwise be decoded
          out of bounds.

    Args:
        json_path: The COCO JSON file.
        image_prefix: Prefix joined to each `file_name` to make the image path
            relative to the data root ("" keeps `file_name` as is).
        skips: Counts skipped records (a new counter is used if None).

    Returns:
        The images, each with its merged masks and its verified-absent concepts.

    Raises:
        DataError: The file is not valid JSON, misses "images", "annotations" or
            "categories", has a record with a missing key or a value of the wrong
            type, a duplicate image, annotation or category id, or an RLE whose size
            or counts do not fit its image. The message names the file and record.
        FileNotFoundError: `json_path` does not exist.
    """
    skips = skips if skips is not None else SkipCounter(json_path)
    data = require_dict(load_json(json_path), "the top level", json_path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"missing required top-level key {key!r} (COCO instances format)",
                            path=json_path)
    categories = _read_categories(data["categories"], json_path)
    rank = {category_id: k for k, category_id in enumerate(categories)}
    with gc_paused():
        images = _read_images(data["images"], json_path, image_prefix)
        _add_annotations(data["annotations"], json_path, images, categories, skips)
        return [_masked_image(image, categories, rank, json_path, skips)
                for image in images.values()]


def decode_mask(rle: Rle) -> np.ndarray:
    """Decodes a COCO RLE (compressed, bytes or str counts, or uncompressed list counts).

    The RLE must be valid (as `read_coco_instances` or `pycocotools.mask.encode`
    produce it); it is not re-checked here.

    Args:
        rle: {"size": [h, w], "counts": ...}.

    Returns:
        uint8 [h, w], C-contiguous (pycocotools itself returns Fortran order).
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DataError(f"not a COCO RLE (needs 'size' and 'counts'): {rle!r:.80}")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, height, width)
    elif isinstance(counts, str):
        rle = {"size": [height, width], "counts": counts.encode("ascii")}
    return np.ascontiguousarray(mask_utils.decode(rle))  # [h, w]


def encode_mask(mask: np.ndarray) -> Rle:
    """Encodes a binary mask [h, w] as a compressed COCO RLE (counts bytes)."""
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def _read_categories(records: object, path: str) -> dict[int, str]:
    """Returns category id -> normalised concept, in file order."""
    categories: dict[int, str] = {}
    id_of_concept: dict[str, int] = {}
    for index, record in enumerate(require_list(records, "'categories'", path)):
        where = f"categories[{index}]"
        require_dict(record, "a category", path, where)
        category_id = get_field(record, "id", "int", path, where)
        where = f"category id {category_id}"
        name = get_field(record, "name", "str", path, where)
        concept = normalize_concept(name)
        if not concept:
            raise DataError(f"category name {name!r} has no word characters", path=path,
                            record=where)
        if category_id in categories:
            raise DataError("duplicate category id", path=path, record=where)
        if concept in id_of_concept:
            raise DataError(f"categories {id_of_concept[concept]} and {category_id} both "
                            f"normalise to the concept {concept!r}", path=path, record=where)
        categories[category_id] = concept
        id_of_concept[concept] = category_id
    return categories


def _read_images(records: object, path: str, image_prefix: str) -> dict[int, _Image]:
    images: dict[int, _Image] = {}
    paths: set[str] = set()
    for index, record in enumerate(require_list(records, "'images'", path)):
        where = f"images[{index}]"
        require_dict(record, "an image", path, where)
        image_id = get_field(record, "id", "int", path, where)
        where = f"image id {image_id}"
        file_name = get_field(record, "file_name", "str", path, where)
        width = get_field(record, "width", "positive int", path, where)
        height = get_field(record, "height", "positive int", path, where)
        neg_ids = get_field(record, "neg_category_ids", "list", path, where, default=[])
        if not all(is_int(v) for v in neg_ids):
            raise DataError(f"'neg_category_ids' must be a list of ints, got {neg_ids!r:.60}",
                            path=path, record=where)
        if not file_name or file_name.startswith("/"):
            raise DataError(f"'file_name' must be a relative path, got {file_name!r}",
                            path=path, record=where)
        if image_id in images:
            raise DataError("duplicate image id", path=path, record=where)
        image_path = posixpath.join(image_prefix, file_name) if image_prefix else file_name
        if image_path in paths:
            raise DataError(f"file_name {file_name!r} is listed by two images", path=path,
                            record=where)
        paths.add(image_path)
        images[image_id] = _Image(image_id, image_path, width, height, list(neg_ids))
    return images


def _add_annotations(records: object, path: str, images: dict[int, _Image],
                     categories: dict[int, str], skips: SkipCounter) -> None:
    """Converts each annotation to an RLE and files it under its image and category."""
    seen_ids: set[int] = set()
    for index, record in enumerate(require_list(records, "'annotations'", path)):
        where = f"annotations[{index}]"
        require_dict(record, "an annotation", path, where)
        ann_id = get_field(record, "id", "int", path, where)
        where = f"annotation id {ann_id}"
        if ann_id in seen_ids:
            raise DataError("duplicate annotation id", path=path, record=where)
        seen_ids.add(ann_id)
        image_id = get_field(record, "image_id", "int", path, where)
        category_id = get_field(record, "category_id", "int", path, where)
        iscrowd = get_field(record, "iscrowd", "int", path, where, default=0)
        if iscrowd not in (0, 1):
            raise DataError(f"'iscrowd' must be 0 or 1, got {iscrowd}", path=path, record=where)
        if "segmentation" not in record:
            raise DataError("missing required key 'segmentation'", path=path, record=where)
        image = images.get(image_id)
        if image is None:
            skips.skip(SKIP_UNKNOWN_IMAGE, path, f"{where}, image_id {image_id}")
            continue
        if category_id not in categories:
            skips.skip(SKIP_UNKNOWN_CATEGORY, path, f"{where}, category_id {category_id}")
            continue
        rle = _segmentation_rle(record["segmentation"], image.height, image.width, path, where,
                                skips)
        if rle is None:
            continue
        if int(mask_utils.area(rle)) == 0:
            skips.skip(SKIP_EMPTY_MASK, path, where)
            continue
        target = image.crowds if iscrowd else image.positives
        target.setdefault(category_id, []).append(rle)
        if not iscrowd:
            image.boxes.setdefault(category_id, []).append(
                _annotation_box(record.get("bbox"), rle, path, where, skips))


def _annotation_box(bbox: object, rle: Rle, path: str, where: str, skips: SkipCounter) -> Box:
    """The annotation's COCO [x, y, w, h] box; from its mask when absent or malformed."""
    if bbox is not None:
        values = _polygon_coords(bbox)
        if values is not None and len(values) == 4 and values[2] > 0 and values[3] > 0:
            return tuple(float(v) for v in values)
        skips.skip(SKIP_BAD_BBOX, path, f"{where}, bbox {bbox!r:.60}")
    return tuple(float(v) for v in mask_utils.toBbox(rle))


def _segmentation_rle(segm: object, height: int, width: int, path: str, where: str,
                      skips: SkipCounter) -> Rle | None:
    """Converts one annotation's segmentation to a compressed RLE (None if skipped)."""
    if isinstance(segm, list):  # polygons: one object may have several parts
        if not segm:
            skips.skip(SKIP_EMPTY_SEGMENTATION, path, where)
            return None
        parts = []
        for k, polygon in enumerate(segm):
            coords = _polygon_coords(polygon)
            if coords is None:
                raise DataError(f"segmentation polygon {k} must be a list of finite numbers",
                                path=path, record=where)
            if len(coords) % 2:
                raise DataError(f"segmentation polygon {k} has an odd number of coordinates "
                                f"({len(coords)})", path=path, record=where)
            if len(coords) < 6:
                skips.skip(SKIP_SHORT_POLYGON, path, f"{where}, polygon {k}")
                continue
            parts.append(coords)
        if not parts:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    if isinstance(segm, dict):
        return _rle_segmentation(segm, height, width, path, where)
    raise DataError(f"'segmentation' must be a list of polygons or an RLE object, got "
                    f"{type(segm).__name__}", path=path, record=where)


def _polygon_coords(polygon: object) -> np.ndarray | None:
    """The polygon as float64 [2k], or None unless it is a flat list of finite numbers."""
    if not isinstance(polygon, list):
        return None
    try:
        coords = np.asarray(polygon)  # no dtype: strings, None or bools keep a telling dtype
    except ValueError:  # ragged nested lists
        return None
    if coords.ndim != 1 or (coords.size and coords.dtype.kind not in "iuf"):
        return None
    coords = coords.astype(np.float64)
    return coords if np.isfinite(coords).all() else None


def _rle_segmentation(segm: dict, height: int, width: int, path: str, where: str) -> Rle:
    size, counts = segm.get("size"), segm.get("counts")
    if size is None or counts is None:
        raise DataError("RLE segmentation needs 'size' and 'counts'", path=path, record=where)
    if size != [height, width]:
        raise DataError(f"RLE size {size!r:.40} does not match the image's [height, width] "
                        f"[{height}, {width}]", path=path, record=where)
    if isinstance(counts, list):  # uncompressed
        if not all(is_int(c) and c >= 0 for c in counts):
            raise DataError("uncompressed RLE counts must be non-negative ints", path=path,
                            record=where)
        if sum(counts) != height * width:
            raise DataError(f"uncompressed RLE counts sum to {sum(counts)}, expected height * "
                            f"width = {height * width}", path=path, record=where)
        return mask_utils.frPyObjects(segm, height, width)
    if isinstance(counts, str):  # compressed
        raw = counts.encode("ascii", errors="replace")
        problem = ("non-ASCII character" if not counts.isascii()
                   else _check_compressed_counts(raw, height * width))
        if problem:
            raise DataError(f"corrupt compressed RLE counts: {problem}", path=path, record=where)
        return {"size": [height, width], "counts": raw}
    raise DataError(f"RLE 'counts' must be a list or a string, got {type(counts).__name__}",
                    path=path, record=where)


def _check_compressed_counts(raw: bytes, num_pixels: int) -> str:
    """Decodes COCO's compressed counts string as pycocotools does; returns a problem or ""."""
    counts: list[int] = []
    pos = 0
    while pos < len(raw):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(raw):
                return "string ends inside a number"
            char = raw[pos] - 48
            if not 0 <= char < 64:
                return f"character {chr(raw[pos])!r} out of range"
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            pos += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift  # sign extension
        if len(counts) > 2:
            value += counts[-2]  # runs after the second are stored as differences
        if value < 0:
            return f"negative run length at run {len(counts)}"
        counts.append(value)
    if sum(counts) != num_pixels:
        return f"runs sum to {sum(counts)}, expected height * width = {num_pixels}"
    return ""


def _masked_image(image: _Image, categories: dict[int, str], rank: dict[int, int], path: str,
                  skips: SkipCounter) -> MaskedImage:
    """Merges an image's masks (ordered by `rank`, the category's position in the file)."""
    masks = []
    for category_id in sorted(image.positives.keys() | image.crowds.keys(), key=rank.get):
        rle, ignore = merge_instances(image.positives.get(category_id, []),
                                      image.crowds.get(category_id, []), image.height,
                                      image.width)
        masks.append(ConceptMask(concept=categories[category_id], rle=rle, ignore_rle=ignore,
                                 boxes=tuple(image.boxes.get(category_id, ()))))
    neg_concepts = []
    for category_id in dict.fromkeys(image.neg_ids):
        where = f"image id {image.image_id}, neg_category_id {category_id}"
        if category_id not in categories:
            skips.skip(SKIP_UNKNOWN_NEG, path, where)
        elif category_id in image.positives or category_id in image.crowds:
            skips.skip(SKIP_CONFLICTING_NEG, path, where)
        else:
            neg_concepts.append(categories[category_id])
    return MaskedImage(image=image.path, width=image.width, height=image.height,
                       masks=tuple(masks), image_id=image.image_id,
                       neg_concepts=tuple(neg_concepts))


def merge_instances(positives: list[Rle], crowds: list[Rle], height: int,
                    width: int) -> tuple[Rle, Rle | None]:
    """Union of the positives, and the crowd union minus it (None if that is empty).

    Args:
        positives: Non-crowd masks (compressed RLEs of one size).
        crowds: Crowd masks (pixels neither positive nor negative).
        height, width: The mask size (for an empty union).

    Returns:
        (union RLE, ignore RLE or None).
    """
    if positives:
        rle = mask_utils.merge(positives, intersect=False)
    else:
        rle = encode_mask(np.zeros((height, width), dtype=np.uint8))
    if not crowds:
        return rle, None
    crowd = mask_utils.merge(crowds, intersect=False)
    if positives:
        ignore = decode_mask(crowd) & (1 - decode_mask(rle))  # [h, w]
        if not ignore.any():
            return rle, None
        crowd = encode_mask(ignore)
    return rle, crowd
