"""Visual Genome reader: objects.json + image_data.json -> concept boxes per image."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable, Mapping

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.data._gc import gc_paused
from conceptmask_tf.data.box_geometry import clip_boxes
from conceptmask_tf.data.records import get_field, load_json, require_dict, require_list
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

ARTICLES = ("a", "an", "the")
_NUMBER_TYPES = frozenset({int, float})  # bool is not a number here

SKIP_UNKNOWN_IMAGE = register_skip_reason("objects for an image_id not in the image data",
                                          Severity.EXPECTED)
SKIP_EMPTY_NAME = register_skip_reason("object name with no word characters", Severity.EXPECTED)
SKIP_MISSING_IMAGE = register_skip_reason("image file not found under image_dir",
                                          Severity.BAD_ANNOTATION)


@dataclasses.dataclass(frozen=True)
class _ImageInfo:
    path: str
    width: int
    height: int


def normalize_vg_name(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """Normalises one Visual Genome object name.

    `normalize_concept`, then a leading article ("a", "an", "the") is dropped, then the
    alias map is applied to the whole name. Plurals are folded later, against the
    file's vocabulary (`plural_folds`).

    Args:
        name: A raw name, e.g. "The Trees ".
        aliases: Optional concept -> concept map whose keys and values are already
            normalised (`normalize_aliases` makes one), e.g. {"men": "man"}.

    Returns:
        The concept ("" if the name has no word characters).
    """
    concept = normalize_concept(name)
    first, _, rest = concept.partition(" ")
    if first in ARTICLES and rest:
        concept = rest
    if aliases:
        concept = aliases.get(concept, concept)
    return concept


def normalize_aliases(aliases: Mapping[str, str]) -> dict[str, str]:
    """Normalises the keys and values of an alias map (an empty key or value is an error)."""
    normalized = {}
    for source, target in aliases.items():
        key, value = normalize_concept(source), normalize_concept(target)
        if not key or not value:
            raise ValueError(f"alias {source!r} -> {target!r} has an empty side after "
                             f"normalisation")
        normalized[key] = value
    return normalized


def plural_folds(vocabulary: Iterable[str]) -> dict[str, str]:
    """Maps a name ending in "s" (not "ss") to the name without it, when that is in the vocabulary.

    Deliberately conservative: only a final "s" is dropped, and only when the singular
    is itself a name in the vocabulary ("trees" -> "tree" if "tree" occurs; "glasses",
    "bus" and "grass" stay as they are unless "glasse", "bu" ... occur).

    Args:
        vocabulary: The normalised names being collected.

    Returns:
        plural -> singular for the names that fold.
    """
    names = set(vocabulary)
    return {name: name[:-1] for name in names
            if name.endswith("s") and not name.endswith("ss") and name[:-1] in names}


def read_vg_objects(objects_path: str, image_data_path: str, image_prefix: str = "images",
                    skips: SkipCounter | None = None, aliases: Mapping[str, str] | None = None,
                    image_dir: str | None = None, fold_plurals: bool = True) -> list[BoxedImage]:
    """Reads Visual Genome objects into normalised concept boxes per image.

    Each object gives one box per distinct name (after normalisation). Names are
    normalised by `normalize_vg_name` (with `aliases`), then plurals are folded to a
    singular that also occurs in this file (`plural_folds`). Pixel boxes (x, y, w, h)
    become normalised (xmin, ymin, xmax, ymax) with the image size from the image
    data; boxes partly outside the image are clipped, degenerate or entirely outside
    boxes are counted skips.

    Identical boxes (same concept and coordinates) in one image are kept once: Visual
    Genome repeats objects, and two names of one object may fold to one concept.

    Tolerated variants of the real files: "id" for "image_id" in both files, and
    "name" (a string) for "names" (a list) in objects. Object ids must be distinct
    within an image (not checked across images).

    Args:
        objects_path: objects.json: [{"image_id", "objects": [{"object_id", "x", "y",
            "w", "h", "names": [...]}]}].
        image_data_path: image_data.json: [{"image_id", "width", "height", "url" or
            "file"}]; the image file is the basename of "file" (else "url").
        image_prefix: Data-root-relative folder of the images.
        skips: Counts skipped records (a new counter is used if None).
        aliases: Optional name -> concept map, applied after normalisation and article
            removal, before plural folding (keys and values are normalised here).
        image_dir: If given, an image whose file is not in this folder is a counted skip.
        fold_plurals: Fold "trees" into "tree" when both occur (see `plural_folds`);
            turn off for data whose names are already canonical.

    Returns:
        One `BoxedImage` (with width and height) per image with at least one kept box,
        in objects.json order. Images whose objects were all skipped are left out.

    Raises:
        DataError: Unparseable JSON, a missing key, a value of the wrong type, a
            duplicate image id, or a duplicate object id within an image; the message
            names the file and the image_id / object_id.
        FileNotFoundError: A file does not exist.
    """
    skips = skips if skips is not None else SkipCounter(objects_path)
    aliases = normalize_aliases(aliases) if aliases else None
    infos = _read_image_data(image_data_path, image_prefix)
    existing = set(files.listdir(image_dir)) if image_dir is not None else None
    entries = require_list(load_json(objects_path), "the top level", objects_path)
    with gc_paused():
        rows = _collect_rows(entries, objects_path, infos, existing, aliases, skips)
        folds = plural_folds(set(rows.concepts)) if fold_plurals else {}
        return _build_images(rows, folds, infos, objects_path, skips)


@dataclasses.dataclass
class _Rows:
    """One row per (object, distinct name), in file order."""

    image_ids: list[int] = dataclasses.field(default_factory=list)
    object_ids: list[int] = dataclasses.field(default_factory=list)
    concepts: list[str] = dataclasses.field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)


def _object_where(image_id: int, object_id: int) -> str:
    return f"image_id {image_id}, object_id {object_id}"


def _collect_rows(entries: list, path: str, infos: dict[int, _ImageInfo],
                  existing: set[str] | None, aliases: dict[str, str] | None,
                  skips: SkipCounter) -> _Rows:
    """Checks every entry and object; returns the named boxes in normalised coordinates."""
    rows = _Rows()
    seen_images: set[int] = set()
    concept_of_name: dict[str, str] = {}  # names repeat a lot: normalise each once
    for index, entry in enumerate(entries):
        where = f"[{index}]"
        require_dict(entry, "an image entry", path, where)
        image_id = _image_id(entry, path, where)
        where = f"image_id {image_id}"
        if image_id in seen_images:
            raise DataError("duplicate image_id", path=path, record=where)
        seen_images.add(image_id)
        objects = get_field(entry, "objects", "list", path, where)
        info = infos.get(image_id)
        if info is None:
            skips.skip(SKIP_UNKNOWN_IMAGE, path, where)
            continue
        if existing is not None and posixpath.basename(info.path) not in existing:
            skips.skip(SKIP_MISSING_IMAGE, path, f"{where}, {info.path}")
            continue
        seen_objects: set[int] = set()
        for k, obj in enumerate(objects):
            require_dict(obj, "an object", path, f"{where}, objects[{k}]")
            object_id = get_field(obj, "object_id", "int", path, f"{where}, objects[{k}]")
            obj_where = _object_where(image_id, object_id)
            if object_id in seen_objects:
                raise DataError("duplicate object_id in the image", path=path, record=obj_where)
            seen_objects.add(object_id)
            x, y, w, h = pixels = (obj.get("x"), obj.get("y"), obj.get("w"), obj.get("h"))
            if not _NUMBER_TYPES.issuperset(map(type, pixels)):  # fast check, then explain
                for key in ("x", "y", "w", "h"):
                    get_field(obj, key, "number", path, obj_where)
            box = (x / info.width, y / info.height, (x + w) / info.width,
                   (y + h) / info.height)
            concepts = []
            for name in _object_names(obj, path, obj_where):
                concept = concept_of_name.get(name)
                if concept is None:
                    concept = concept_of_name[name] = normalize_vg_name(name, aliases)
                if concept:
                    concepts.append(concept)
                else:
                    skips.skip(SKIP_EMPTY_NAME, path, f"{obj_where}, name {name!r}")
            for concept in dict.fromkeys(concepts):
                rows.image_ids.append(image_id)
                rows.object_ids.append(object_id)
                rows.concepts.append(concept)
                rows.boxes.append(box)
    return rows


def _build_images(rows: _Rows, folds: dict[str, str], infos: dict[int, _ImageInfo], path: str,
                  skips: SkipCounter) -> list[BoxedImage]:
    """Folds plurals, clips the boxes (skipping bad ones) and groups them per image."""
    coords = np.asarray(rows.boxes, dtype=np.float64).reshape(-1, 4)  # [n, 4]
    not_finite = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if len(not_finite):  # JSON NaN / Infinity, which Python's json module accepts
        row = not_finite[0]
        raise DataError("x, y, w, h must be finite numbers", path=path,
                        record=_object_where(rows.image_ids[row], rows.object_ids[row]))
    clipped, reasons = clip_boxes(coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3])
    last_skipped = None
    for row in np.flatnonzero(reasons != None).tolist():
        key = (rows.image_ids[row], rows.object_ids[row])
        if key != last_skipped:  # an object's rows are adjacent: count it once
            skips.skip(reasons[row], path, _object_where(*key))
            last_skipped = key
    clipped_rows = clipped.tolist()
    boxes_of: dict[int, dict[ConceptBox, None]] = {}  # ordered set per image
    for row in np.flatnonzero(reasons == None).tolist():
        concept = rows.concepts[row]
        box = ConceptBox(folds.get(concept, concept), *clipped_rows[row])
        boxes_of.setdefault(rows.image_ids[row], {})[box] = None
    return [BoxedImage(image=infos[i].path, boxes=tuple(boxes), width=infos[i].width,
                       height=infos[i].height) for i, boxes in boxes_of.items()]


def _image_id(entry: dict, path: str, where: str) -> int:
    key = "image_id" if "image_id" in entry or "id" not in entry else "id"
    return get_field(entry, key, "int", path, where)


def _read_image_data(path: str, image_prefix: str) -> dict[int, _ImageInfo]:
    infos: dict[int, _ImageInfo] = {}
    for index, entry in enumerate(require_list(load_json(path), "the top level", path)):
        where = f"[{index}]"
        require_dict(entry, "an image entry", path, where)
        image_id = _image_id(entry, path, where)
        where = f"image_id {image_id}"
        if image_id in infos:
            raise DataError("duplicate image_id", path=path, record=where)
        width = get_field(entry, "width", "positive int", path, where)
        height = get_field(entry, "height", "positive int", path, where)
        key = "file" if "file" in entry else "url"
        location = get_field(entry, key, "str", path, where)
        file_name = posixpath.basename(location.replace("\\", "/"))
        if not file_name:
            raise DataError(f"{key!r} {location!r} names no file", path=path, record=where)
        image_path = posixpath.join(image_prefix, file_name) if image_prefix else file_name
        infos[image_id] = _ImageInfo(image_path, width, height)
    return infos


def _object_names(obj: dict, path: str, where: str) -> list[str]:
    """The object's raw names: its "names" list, or its "name" string."""
    if "names" in obj or "name" not in obj:
        names = get_field(obj, "names", "list", path, where)
    else:
        names = [get_field(obj, "name", "str", path, where)]
    for name in names:
        if not isinstance(name, str):
            raise DataError(f"object names must be strings, got {name!r:.40}", path=path,
                            record=where)
    return names
