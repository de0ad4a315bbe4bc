"""Open Images readers: class descriptions (MID -> concept) and the box CSV.

The box CSV is parsed with `pyarrow.csv` (multi-threaded, typed columns) and checked
with vectorised numpy; Python only touches the rows that are kept or bad. A file
that pyarrow cannot parse is re-read with the `csv` module to name the bad row.
"""

from __future__ import annotations

import csv
import math
import os
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.data._gc import gc_paused
from conceptmask_tf.data.box_geometry import clip_boxes
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
OPTIONAL_NUMBER_COLUMNS = ("Confidence",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

SKIP_UNKNOWN_LABEL = register_skip_reason("box with a LabelName not in the class descriptions",
                                          Severity.EXPECTED)
SKIP_ZERO_CONFIDENCE = register_skip_reason("box row with Confidence 0 (not a positive box)",
                                            Severity.EXPECTED)
SKIP_MISSING_IMAGE = register_skip_reason("image file not found under image_dir",
                                          Severity.BAD_ANNOTATION)


def read_class_descriptions(path: str) -> dict[str, str]:
    """Reads Open Images class descriptions: `LabelName,DisplayName` rows.

    Open Images ships this file without a header; a first row that is exactly the
    header `LabelName,DisplayName` (any case) is tolerated and skipped. Several MIDs
    may map to the same concept (their boxes then count as one concept).

    Args:
        path: The CSV file.

    Returns:
        MID (e.g. "/m/0k4j") -> normalised concept (e.g. "car"), in file order.

    Raises:
        DataError: A row without exactly two fields, an empty MID, a display name with
            no word characters, or one MID given two different names; the message names
            the file and the line.
    """
    descriptions: dict[str, str] = {}
    try:
        with files.open_file(path, newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if not row:
                    continue
                where = f"line {line}"
                if len(row) != 2:
                    raise DataError(f"expected 2 fields (LabelName,DisplayName), found "
                                    f"{len(row)}", path=path, record=where)
                mid, name = row[0].strip(), row[1]
                if line == 1 and (mid.lower(), name.strip().lower()) == ("labelname",
                                                                          "displayname"):
                    continue
                concept = normalize_concept(name)
                if not mid or not concept:
                    raise DataError(f"empty LabelName or DisplayName with no word characters: "
                                    f"{row!r}", path=path, record=where)
                if descriptions.get(mid, concept) != concept:
                    raise DataError(f"LabelName {mid} has two names: {descriptions[mid]!r} "
                                    f"and {concept!r}", path=path, record=where)
                descriptions[mid] = concept
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse CSV: {e}", path=path) from e
    return descriptions


def read_oi_boxes(csv_path: str, class_descriptions: dict[str, str],
                  image_prefix: str = "images", image_dir: str | None = None,
                  skips: SkipCounter | None = None) -> list[BoxedImage]:
    """Reads an Open Images box CSV (V4-V7 form) into boxes grouped per image.

    Required columns: ImageID, LabelName, XMin, XMax, YMin, YMax (normalised
    coordinates). Other columns (Source, IsOccluded, IsGroupOf, ...) may be absent
    and are ignored, except Confidence: a row with Confidence 0 is not a positive
    box and is a counted skip.

    Rows are numbered from 1 after the header, blank lines not counted, and bad
    rows are named "row N (ImageID ...)". Partially outside boxes are clipped to the
    image; degenerate (zero area, inverted) and entirely outside boxes, unknown
    LabelNames and missing image files are counted skips.

    Args:
        csv_path: The box CSV.
        class_descriptions: MID -> concept, from `read_class_descriptions`.
        image_prefix: Data-root-relative folder of the images.
        image_dir: The folder on disk holding the images. If given, each ImageID is
            resolved to the file `<ImageID>.jpg`, `.jpeg` or `.png` there (first
            found in that order, extension in any case); an image with no such file is
            a counted skip. If None, `<ImageID>.jpg` is assumed.
        skips: Counts skipped records (a new counter is used if None).

    Returns:
        One `BoxedImage` per image with at least one kept box, in first-seen order,
        boxes in file order; width and height are None (the CSV does not give them).

    Raises:
        DataError: Unparseable CSV, a missing required column, a row with the wrong
            number of fields, an empty ImageID or LabelName, or a coordinate that is
            empty or not a finite number. The message names the file and row.
        FileNotFoundError: `csv_path` or `image_dir` does not exist.
    """
    skips = skips if skips is not None else SkipCounter(csv_path)
    header = _read_header(csv_path)
    missing = [c for c in BOX_COLUMNS if c not in header]
    if missing:
        raise DataError(f"missing required column(s) {', '.join(missing)}; header is "
                        f"{','.join(header)}", path=csv_path)
    number_columns = list(BOX_COLUMNS[2:]) + [c for c in OPTIONAL_NUMBER_COLUMNS if c in header]
    table = _read_table(csv_path, header, number_columns)
    image_ids = _string_column(table, "ImageID", csv_path)
    labels = _string_column(table, "LabelName", csv_path)
    image_index, image_names = _factorize(image_ids)  # [n], first-seen order
    label_index, label_names = _factorize(labels)
    numbers = {c: _number_column(table, c, csv_path, image_names, image_index)
               for c in number_columns}

    def where(row: int) -> str:
        return f"row {row + 1} (ImageID {image_names[image_index[row]]})"

    keep = np.ones(len(image_index), dtype=bool)  # [n]
    known = np.array([m in class_descriptions for m in label_names], dtype=bool)
    for row in np.flatnonzero(~known[label_index]):
        skips.skip(SKIP_UNKNOWN_LABEL, csv_path,
                   f"{where(row)}, LabelName {label_names[label_index[row]]}")
    keep &= known[label_index]
    if "Confidence" in numbers:
        zero = keep & (numbers["Confidence"] <= 0)
        for row in np.flatnonzero(zero):
            skips.skip(SKIP_ZERO_CONFIDENCE, csv_path, where(row))
        keep &= ~zero
    boxes, reasons = clip_boxes(numbers["XMin"], numbers["YMin"], numbers["XMax"],
                                numbers["YMax"])
    for row in np.flatnonzero(keep & (reasons != None)):
        skips.skip(reasons[row], csv_path, where(row))
    keep &= reasons == None

    wanted = np.bincount(image_index[keep], minlength=len(image_names)) > 0  # [num_images]
    paths = _image_paths(image_names, wanted, image_prefix, image_dir, csv_path, skips)
    has_path = np.array([p is not None for p in paths], dtype=bool)
    keep &= has_path[image_index]
    return _group(np.flatnonzero(keep), image_index, paths, label_index,
                  [class_descriptions.get(m, "") for m in label_names], boxes)


def _read_header(path: str) -> list[str]:
    try:
        with files.open_file(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse the CSV header: {e}", path=path, record="line 1") from e
    if not header:
        raise DataError("empty file: expected a header row", path=path, record="line 1")
    return [name.strip() for name in header]


def _read_table(path: str, header: list[str], number_columns: list[str]) -> pa.Table:
    types = {c: pa.string() for c in BOX_COLUMNS[:2]}
    types.update({c: pa.float64() for c in number_columns})
    try:
        with files.open_file(path, "rb") as f:
            return pacsv.read_csv(
                f,
                read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
                convert_options=pacsv.ConvertOptions(column_types=types,
                                                     include_columns=list(types)))
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        _find_bad_row(path, header, number_columns)
        raise DataError(f"cannot parse CSV: {e}", path=path) from e


def _find_bad_row(path: str, header: list[str], number_columns: list[str]) -> None:
    """Re-reads a CSV that pyarrow rejected, raising a DataError that names the bad row."""
    positions = {c: header.index(c) for c in number_columns}
    with files.open_file(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = csv.reader(f)
        next(rows, None)
        row_number = 0
        for row in rows:
            if not row:
                continue
            row_number += 1
            if len(row) != len(header):
                raise DataError(f"expected {len(header)} fields, found {len(row)}", path=path,
                                record=f"row {row_number}")
            for column, i in positions.items():
                try:
                    float(row[i])
                except ValueError:
                    raise DataError(f"{column} {row[i]!r} is not a number", path=path,
                                    record=f"row {row_number} (ImageID {row[0]})") from None


def _string_column(table: pa.Table, column: str, path: str) -> pa.Array:
    values = table[column].combine_chunks()
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0), True)
    bad = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
    if len(bad):
        raise DataError(f"empty {column}", path=path, record=f"row {bad[0] + 1}")
    return values


def _number_column(table: pa.Table, column: str, path: str, image_names: list[str],
                   image_index: np.ndarray) -> np.ndarray:
    values = table[column].to_numpy()  # float64 [n]; empty cells and "nan" are NaN
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = bad[0]
        raise DataError(f"{column} is empty or not a finite number", path=path,
                        record=f"row {row + 1} (ImageID {image_names[image_index[row]]})")
    return values


def _factorize(values: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Returns (index [n] int, distinct values in first-seen order)."""
    encoded = pc.dictionary_encode(values)
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_pylist()


def _image_paths(image_names: list[str], wanted: np.ndarray, image_prefix: str,
                 image_dir: str | None, csv_path: str,
                 skips: SkipCounter) -> list[str | None]:
    """Data-root-relative path per wanted ImageID (None where not wanted or missing)."""
    if image_dir is None:
        file_of = {name: name + ".jpg" for name in image_names}
    else:
        file_of = _files_by_stem(image_dir)
    paths: list[str | None] = []
    for name, is_wanted in zip(image_names, wanted.tolist(), strict=True):
        file_name = file_of.get(name) if is_wanted else None
        if file_name is None:
            if is_wanted:
                skips.skip(SKIP_MISSING_IMAGE, csv_path, f"ImageID {name}")
            paths.append(None)
        else:
            paths.append(posixpath.join(image_prefix, file_name) if image_prefix else file_name)
    return paths


def _files_by_stem(image_dir: str) -> dict[str, str]:
    """File stem -> file name for the image files in a folder (one listing, no stat per id)."""
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    for name in files.listdir(image_dir):
        stem, ext = os.path.splitext(name)
        order = rank.get(ext.lower())
        if order is not None and order < best.get(stem, (math.inf, ""))[0]:
            best[stem] = (order, name)
    return {stem: name for stem, (_, name) in best.items()}


def _group(rows: np.ndarray, image_index: np.ndarray, paths: list[str | None],
           label_index: np.ndarray, concepts: list[str], boxes: np.ndarray) -> list[BoxedImage]:
    """Groups the kept rows per image (first-seen image order, file order inside)."""
    rows = rows[np.argsort(image_index[rows], kind="stable")]
    per_image = np.bincount(image_index[rows], minlength=len(paths))  # [num_images]
    concept_of_row = np.asarray(concepts, dtype=object)[label_index[rows]].tolist()
    xmin, ymin, xmax, ymax = boxes[rows].T.tolist()
    images = []
    with gc_paused():
        all_boxes = list(map(ConceptBox, concept_of_row, xmin, ymin, xmax, ymax))
        start = 0
        for image, count in enumerate(per_image.tolist()):
            if count:
                images.append(BoxedImage(image=paths[image],
                                         boxes=tuple(all_boxes[start:start + count])))
                start += count
    return images
