"""Readers for image-level tags: the data root's ``tags.jsonl`` and Open Images image-level labels.

Two forms of the same data:

* Records (`TaggedImage`): `iter_tag_manifest` / `read_tag_manifest` and
  `read_oi_image_labels`, for small data and the stage-1 input pipeline
  (`read_oi_verified_labels` also keeps the verified-absent labels, for stage 2).
* A columnar `TagCorpus` (CSR incidence: `indptr`, integer `tag_ids`, tag names), built at
  the paper's scale (6M images x 30 tags) in seconds: `read_tag_corpus` parses ``tags.jsonl``
  in large byte chunks with ``pyarrow.json`` and dictionary-encodes the tag strings, so
  normalisation runs once per distinct string, not once per tag.

Both forms apply the same rules, and tests check that they agree record for record:

* Tag names go through `normalize_concept`.
* A malformed JSON line, a line that is not an object, a missing ``image`` or ``tags`` key,
  a non-string image, non-list tags or a non-string tag raise `DataError` naming the file and
  line. Blank lines are ignored.
* A tag that normalises to "" is dropped and counted (reason `SKIP_EMPTY_NAME`); a tag
  repeated in an image (after normalisation) is dropped and counted (`SKIP_DUPLICATE`); an
  image left with no tags is dropped and counted (`SKIP_NO_TAGS`). Skips are counted in this
  order for each line.

Open Images labels (``ImageID,Source,LabelName,Confidence``): a row with Confidence 0 says the
label is verified absent and is not a tag. ``LabelName`` MIDs map to names through the class
descriptions CSV (``LabelName,DisplayName``, no header); a MID missing there is counted
(`SKIP_UNKNOWN_LABEL`). The image path is ``images/<ImageID><image_ext>``.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from conceptmask_tf.base import files
from conceptmask_tf.base import progress as progress_lib
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.data.open_images import read_class_descriptions
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.data.types import TaggedImage
from conceptmask_tf.errors import DataError

SKIP_EMPTY_NAME = register_skip_reason("tag normalises to an empty name", Severity.EXPECTED)
SKIP_DUPLICATE = register_skip_reason("tag repeated in an image", Severity.EXPECTED)
SKIP_NO_TAGS = register_skip_reason("image has no tags", Severity.EXPECTED)
SKIP_UNKNOWN_LABEL = register_skip_reason("label MID not in the class descriptions",
                                          Severity.EXPECTED)
SKIP_CONFLICTING_LABEL = register_skip_reason(
    "label both verified present and verified absent in an image", Severity.EXPECTED)

_SCHEMA = pa.schema([("image", pa.string()), ("tags", pa.list_(pa.string()))])
_CHUNK_BYTES = 64 << 20
_PARSE_BLOCK_BYTES = 8 << 20  # pyarrow parses a chunk in blocks of this size, in parallel
_BOM = b"\xef\xbb\xbf"
_MAX_EXAMPLES = 3  # skip examples reported per reason (as SkipCounter keeps)


@dataclasses.dataclass(frozen=True)
class TagCorpus:
    """Images x tags incidence in CSR form (the columnar form of a tag file).

    Attributes:
        names: Normalised tag names; a tag id indexes this tuple (first-seen order).
        indptr: int64 [N + 1]; the tags of image n are ``tag_ids[indptr[n]:indptr[n + 1]]``.
        tag_ids: int32 [nnz] distinct within each image, in file order.
        images: Object array [N] of image paths, or None when not requested.
    """

    names: tuple[str, ...]
    indptr: np.ndarray
    tag_ids: np.ndarray
    images: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> np.ndarray:
        """int64 [len(names)]: number of images holding each tag."""
        return np.bincount(self.tag_ids, minlength=len(self.names)).astype(np.int64)

    def tags_of(self, n: int) -> tuple[str, ...]:
        """Tag names of image `n`, in file order."""
        return tuple(self.names[i] for i in self.tag_ids[self.indptr[n]:self.indptr[n + 1]])

    def to_records(self) -> list[TaggedImage]:
        """The corpus as records (needs `images`)."""
        if self.images is None:
            raise ValueError("this TagCorpus was read without image paths (with_images=False)")
        return [TaggedImage(str(self.images[n]), self.tags_of(n)) for n in range(self.num_images)]

    @classmethod
    def from_records(cls, records: Iterable[TaggedImage]) -> TagCorpus:
        """Builds a corpus from records (tags are used as given: normalised, distinct)."""
        name_ids: dict[str, int] = {}
        images, lengths, ids = [], [], []
        for record in records:
            images.append(record.image)
            lengths.append(len(record.tags))
            ids.extend(name_ids.setdefault(t, len(name_ids)) for t in record.tags)
        indptr = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return cls(tuple(name_ids), indptr, np.asarray(ids, np.int32),
                   np.asarray(images, dtype=object))


# ----------------------------------------------------------------------------- records


def _parse_line(raw: bytes, path: str, lineno: int) -> tuple[str, list[str]] | None:
    """Validates one tags.jsonl line; returns (image, raw tags) or None for a blank line."""
    where = f"line {lineno}"
    if lineno == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path, where) from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path, where) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, where)
    for key in ("image", "tags"):
        if key not in obj:
            raise DataError(f"missing key {key!r}", path, where)
    image, tags = obj["image"], obj["tags"]
    if not isinstance(image, str) or not image:
        raise DataError(f"'image' must be a non-empty string, got {image!r}", path, where)
    if not isinstance(tags, list):
        raise DataError(f"'tags' must be a list of strings, got {type(tags).__name__}",
                        path, where)
    for tag in tags:
        if not isinstance(tag, str):
            raise DataError(f"'tags' must be a list of strings, got element {tag!r}", path,
                            where)
    return image, tags


def _clean_tags(raw_tags: Sequence[str], skips: SkipCounter, path: str,
                record: str) -> tuple[str, ...]:
    """Normalises and de-duplicates one image's tags, counting what is dropped."""
    names = [normalize_concept(t) for t in raw_tags]
    for name in names:
        if not name:
            skips.skip(SKIP_EMPTY_NAME, path, record)
    kept = tuple(dict.fromkeys(n for n in names if n))
    for _ in range(sum(1 for n in names if n) - len(kept)):
        skips.skip(SKIP_DUPLICATE, path, record)
    if not kept:
        skips.skip(SKIP_NO_TAGS, path, record)
    return kept


def iter_tag_manifest(path: str, skips: SkipCounter | None = None) -> Iterator[TaggedImage]:
    """Yields the images of a ``tags.jsonl`` file (see the module docstring for the rules).

    Args:
        path: The manifest, one ``{"image": ..., "tags": [...]}`` object per line.
        skips: Counts dropped tags and images (a fresh counter when None).

    Yields:
        TaggedImage with normalised, distinct tags, in file order.

    Raises:
        DataError: On a malformed line, naming the file and line number.
    """
    skips = skips if skips is not None else SkipCounter(path)
    with files.open_file(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            parsed = _parse_line(line, path, lineno)
            if parsed is None:
                continue
            tags = _clean_tags(parsed[1], skips, path, f"line {lineno}")
            if tags:
                yield TaggedImage(parsed[0], tags)


def read_tag_manifest(path: str, skips: SkipCounter | None = None) -> list[TaggedImage]:
    """All images of a ``tags.jsonl`` file; see `iter_tag_manifest`."""
    return list(iter_tag_manifest(path, skips))


def _oi_columns(header: Sequence[str], path: str) -> dict[str, int]:
    missing = [c for c in ("ImageID", "LabelName", "Confidence") if c not in header]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} in header {list(header)}",
                        path, "row 1")
    return {c: list(header).index(c) for c in ("ImageID", "LabelName", "Confidence")}


def _present(value: str, path: str, row_number: int) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        raise DataError(f"Confidence {value!r} is not a number", path,
                        f"row {row_number}") from None


def _oi_label_rows(labels_csv: str, descriptions_csv: str, skips: SkipCounter
                   ) -> Iterator[tuple[str, str | None, bool]]:
    """(ImageID, display name or None for an unknown MID (counted), present) per data row."""
    mid_names = read_class_descriptions(descriptions_csv)
    with files.open_file(labels_csv, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        cols = _oi_columns(next(reader, []), labels_csv)
        for row_number, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) <= max(cols.values()):
                raise DataError(f"expected at least {max(cols.values()) + 1} fields",
                                labels_csv, f"row {row_number}")
            present = _present(row[cols["Confidence"]], labels_csv, row_number)
            name = mid_names.get(row[cols["LabelName"]])
            if name is None and present:
                skips.skip(SKIP_UNKNOWN_LABEL, labels_csv, f"row {row_number}")
            yield row[cols["ImageID"]], name, present


def read_oi_image_labels(labels_csv: str, descriptions_csv: str,
                         skips: SkipCounter | None = None,
                         image_ext: str = ".jpg") -> list[TaggedImage]:
    """Images with their present labels from an Open Images image-level labels CSV.

    Rows of one image need not be adjacent; images come in first-seen order, tags in row order.

    Args:
        labels_csv: ``ImageID,Source,LabelName,Confidence`` CSV with a header.
        descriptions_csv: Class descriptions (MID -> display name), no header.
        skips: Counts unknown MIDs, repeated tags and images with no present label.
        image_ext: Extension of the image files under ``images/``.

    Raises:
        DataError: On a missing column, a short row or a non-numeric Confidence.
    """
    skips = skips if skips is not None else SkipCounter(labels_csv)
    per_image: dict[str, list[str]] = {}
    for image_id, name, present in _oi_label_rows(labels_csv, descriptions_csv, skips):
        tags = per_image.setdefault(image_id, [])
        if present and name is not None:
            tags.append(name)
    records = []
    for image_id, tags in per_image.items():
        kept = _clean_tags(tags, skips, labels_csv, f"ImageID {image_id}")
        if kept:
            records.append(TaggedImage(f"images/{image_id}{image_ext}", kept))
    return records


@dataclasses.dataclass(frozen=True)
class VerifiedLabels:
    """An image's verified image-level labels (normalised names, row order)."""

    present: tuple[str, ...]
    absent: tuple[str, ...]


def read_oi_verified_labels(labels_csv: str, descriptions_csv: str,
                            skips: SkipCounter | None = None) -> dict[str, VerifiedLabels]:
    """Verified-present and verified-absent labels per image of an Open Images labels CSV.

    Open Images' human-verified image-level labels say for some concepts that an image
    shows them (Confidence 1) and for others that it does not (Confidence 0). Unknown MIDs
    are counted (`SKIP_UNKNOWN_LABEL`) and dropped, repeated labels kept once, and a label
    both present and absent in one image is dropped from both and counted
    (`SKIP_CONFLICTING_LABEL`).

    Args:
        labels_csv: ``ImageID,Source,LabelName,Confidence`` CSV with a header.
        descriptions_csv: Class descriptions (MID -> display name), no header.
        skips: Counts the skips above.

    Returns:
        ImageID (the image file's stem) -> its labels, images in first-seen order.

    Raises:
        DataError: On a missing column, a short row or a non-numeric Confidence.
    """
    skips = skips if skips is not None else SkipCounter(labels_csv)
    per_image: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for image_id, name, present in _oi_label_rows(labels_csv, descriptions_csv, skips):
        if name is None and not present:  # _oi_label_rows counts the present ones
            skips.skip(SKIP_UNKNOWN_LABEL, labels_csv, f"ImageID {image_id}")
        name = normalize_concept(name) if name is not None else ""
        if name:
            per_image.setdefault(image_id, ({}, {}))[0 if present else 1][name] = None
    labels = {}
    for image_id, (present, absent) in per_image.items():
        for name in present.keys() & absent.keys():
            skips.skip(SKIP_CONFLICTING_LABEL, labels_csv, f"ImageID {image_id}: {name}")
        labels[image_id] = VerifiedLabels(
            tuple(n for n in present if n not in absent),
            tuple(n for n in absent if n not in present))
    return labels


# ----------------------------------------------------------------------------- columnar


class _CorpusBuilder:
    """Accumulates rows of raw tag strings into a TagCorpus, chunk by chunk.

    Each chunk comes dictionary-encoded (distinct raw strings + one index per tag), so
    normalisation and the name lookup run once per distinct string of the chunk.
    """

    def __init__(self, path: str, skips: SkipCounter, with_images: bool) -> None:
        self._path = path
        self._skips = skips
        self._with_images = with_images
        self._raw_ids: dict[str, int] = {}  # raw string -> tag id, or -1 when it is empty
        self._name_ids: dict[str, int] = {}
        self._lengths: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._images: list[Any] = []

    def _tag_ids(self, raw_names: Sequence[str]) -> np.ndarray:
        out = np.empty(len(raw_names), np.int64)
        for i, raw in enumerate(raw_names):
            tag_id = self._raw_ids.get(raw)
            if tag_id is None:
                name = normalize_concept(raw)
                tag_id = self._name_ids.setdefault(name, len(self._name_ids)) if name else -1
                self._raw_ids[raw] = tag_id
            out[i] = tag_id
        return out

    def add(self, lengths: np.ndarray, raw_index: np.ndarray, raw_names: Sequence[str],
            records: Any, images: Any = None) -> None:
        """Adds the rows of one chunk.

        Args:
            lengths: int [n] number of raw tags per row.
            raw_index: int [sum(lengths)] index into `raw_names` of each tag, row-major.
            raw_names: The chunk's distinct raw tag strings.
            records: Record locator of each row (for skip examples), e.g. "line 12".
            images: Image paths of the rows (pyarrow or numpy array), when kept.
        """
        n = len(lengths)
        ids = self._tag_ids(raw_names)[raw_index]  # int64 [nnz]
        row = np.repeat(np.arange(n), lengths)  # [nnz]
        empty = ids < 0
        keep = ~empty
        repeat = _repeats(np.where(empty, -1, row * (len(self._name_ids) + 1) + ids))
        keep &= ~repeat
        kept_lengths = np.bincount(row[keep], minlength=n)
        no_tags = kept_lengths == 0
        self._count_skips(records, [(SKIP_EMPTY_NAME, row[empty]),
                                    (SKIP_DUPLICATE, row[repeat]),
                                    (SKIP_NO_TAGS, np.nonzero(no_tags)[0])])
        self._lengths.append(kept_lengths[~no_tags])
        self._ids.append(ids[keep].astype(np.int32))
        if self._with_images:
            self._images.append(np.asarray(images, dtype=object)[~no_tags])

    def _count_skips(self, records: Any,
                     rows_by_reason: list[tuple[str, np.ndarray]]) -> None:
        # Report the first examples in file order (so strict mode raises at the first bad
        # line, as the record reader does), then add the rest to the counts.
        first = sorted((int(r), order, reason) for order, (reason, rows) in
                       enumerate(rows_by_reason) for r in rows[:_MAX_EXAMPLES])
        for r, _, reason in first:
            self._skips.skip(reason, self._path, str(records[r]))
        for reason, rows in rows_by_reason:
            extra = len(rows) - min(len(rows), _MAX_EXAMPLES)
            if extra:
                self._skips.counts[reason] += extra

    def build(self) -> TagCorpus:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        indptr = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int32)
        images = None
        if self._with_images:
            images = (np.concatenate(self._images) if self._images
                      else np.zeros(0, dtype=object))
        return TagCorpus(tuple(self._name_ids), indptr, ids, images)


def _repeats(keys: np.ndarray) -> np.ndarray:
    """bool [n]: True where a key (>= 0) equals an earlier one; negative keys never repeat."""
    repeat = np.zeros(len(keys), bool)
    ordered = np.sort(keys)  # fast check first: repeats are rare
    if not np.any((ordered[1:] == ordered[:-1]) & (ordered[1:] >= 0)):
        return repeat
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeat[order[1:]] = (ordered[1:] == ordered[:-1]) & (ordered[1:] >= 0)
    return repeat


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """Whole lines of a file: bytes, number of the first line, number of line ends."""

    data: bytes
    first_line: int
    line_ends: int


def _iter_line_chunks(path: str, chunk_bytes: int) -> Iterator[_Chunk]:
    """Yields the file in chunks of whole lines (one copy of the bytes)."""
    first_line = 1
    carry = b""
    with files.open_file(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry += block
                continue
            data = block if cut == len(block) else block[:cut]
            if carry:
                data = carry + data
            carry = block[cut:]
            line_ends = data.count(b"\n")
            yield _Chunk(data, first_line, line_ends)
            first_line += line_ends
    if carry:
        yield _Chunk(carry, first_line, carry.count(b"\n"))


class _LineRecords:
    """Record locators "line N" of the rows of a chunk, made on demand."""

    def __init__(self, lines: np.ndarray) -> None:
        self._lines = lines

    def __getitem__(self, row: int) -> str:
        return f"line {self._lines[row]}"


def _add_python_chunk(builder: _CorpusBuilder, chunk: _Chunk, path: str) -> None:
    """Parses a chunk line by line (raises DataError on the first bad line)."""
    images, lengths, raw, lines = [], [], [], []
    for offset, line in enumerate(chunk.data.split(b"\n")):
        parsed = _parse_line(line, path, chunk.first_line + offset)
        if parsed is None:
            continue
        images.append(parsed[0])
        lengths.append(len(parsed[1]))
        raw.extend(parsed[1])
        lines.append(chunk.first_line + offset)
    raw_names = list(dict.fromkeys(raw))
    position = {s: i for i, s in enumerate(raw_names)}
    builder.add(np.asarray(lengths, np.int64),
                np.asarray([position[s] for s in raw], np.int64), raw_names,
                _LineRecords(np.asarray(lines)), images)


def _parse_arrow(chunk: _Chunk) -> pa.Table | None:
    """pyarrow's parse of a chunk (multi-threaded, releases the GIL), or None if it fails."""
    try:
        return pa_json.read_json(
            pa.BufferReader(chunk.data),
            read_options=pa_json.ReadOptions(use_threads=True, block_size=_PARSE_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=_SCHEMA,
                                               unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _add_arrow_table(builder: _CorpusBuilder, table: pa.Table, chunk: _Chunk) -> bool:
    """Adds a parsed chunk; False when it holds a bad value (the line parser then names it)."""
    images = table.column("image").combine_chunks()
    tags = table.column("tags").combine_chunks()
    values = tags.flatten()
    if images.null_count or tags.null_count or values.null_count or \
            pc.any(pc.equal(pc.utf8_length(images), 0)).as_py():
        return False  # a missing key, a null or an empty image
    encoded = values.dictionary_encode()
    try:  # pyarrow does not check UTF-8
        images.validate(full=True)
        raw_names = encoded.dictionary.to_pylist()
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return False
    n = table.num_rows
    if n == chunk.line_ends + (not chunk.data.endswith(b"\n")):
        lines = np.arange(chunk.first_line, chunk.first_line + n)
    else:  # blank lines, which pyarrow skips
        text = chunk.data.decode("utf-8", errors="replace").split("\n")
        lines = np.array([chunk.first_line + i for i, line in enumerate(text) if line.strip()])
    builder.add(tags.value_lengths().to_numpy().astype(np.int64),
                encoded.indices.to_numpy().astype(np.int64), raw_names, _LineRecords(lines),
                images)
    return True


def read_tag_corpus(path: str, skips: SkipCounter | None = None, with_images: bool = False,
                    progress: bool = False, chunk_bytes: int = _CHUNK_BYTES) -> TagCorpus:
    """Reads a ``tags.jsonl`` file into a TagCorpus, fast (the columnar path).

    Same rules and result as `read_tag_manifest` (see the module docstring). The file is
    parsed in chunks of `chunk_bytes` by ``pyarrow.json`` (multi-threaded; the next chunk is
    parsed while this one is encoded); a chunk that pyarrow rejects is parsed line by line,
    which names the bad line.

    Args:
        path: The ``tags.jsonl`` file.
        skips: Counts dropped tags and images (a fresh counter when None).
        with_images: Keep the image paths (an object array; costs memory at scale).
        progress: Show a progress bar over the bytes read.
        chunk_bytes: Bytes parsed at a time (memory is a few times this).

    Raises:
        DataError: On a malformed line, naming the file and line number.
    """
    skips = skips if skips is not None else SkipCounter(path)
    builder = _CorpusBuilder(path, skips, with_images)

    def add(chunk: _Chunk, parsed: concurrent.futures.Future) -> None:
        table = parsed.result()
        if table is None or not _add_arrow_table(builder, table, chunk):
            _add_python_chunk(builder, chunk, path)
        bar.update(len(chunk.data))

    with progress_lib.bar(progress, files.getsize(path), f"reading {os.path.basename(path)}",
                          "B") as bar, concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = None
        for chunk in _iter_line_chunks(path, chunk_bytes):
            parsed = pool.submit(_parse_arrow, chunk)
            if pending is not None:
                add(*pending)
            pending = chunk, parsed
        if pending is not None:
            add(*pending)
    return builder.build()


def read_oi_label_corpus(labels_csv: str, descriptions_csv: str,
                         skips: SkipCounter | None = None, with_images: bool = False,
                         image_ext: str = ".jpg") -> TagCorpus:
    """Reads Open Images image-level labels into a TagCorpus (columnar; see
    `read_oi_image_labels` for the rules, which this matches).

    Raises:
        DataError: On a missing column or a non-numeric Confidence.
    """
    skips = skips if skips is not None else SkipCounter(labels_csv)
    mid_names = read_class_descriptions(descriptions_csv)
    with files.open_file(labels_csv, encoding="utf-8-sig", newline="") as f:
        _oi_columns(next(csv.reader(f), []), labels_csv)
    try:
        with files.open_file(labels_csv, "rb") as f:
            table = pa_csv.read_csv(f, convert_options=pa_csv.ConvertOptions(
                include_columns=["ImageID", "LabelName", "Confidence"],
                column_types={"ImageID": pa.string(), "LabelName": pa.string(),
                              "Confidence": pa.float64()}))
    except pa.ArrowInvalid:
        table = None
    if table is None or table.column("Confidence").null_count:
        # Let the row reader name the bad row.
        return TagCorpus.from_records(read_oi_image_labels(labels_csv, descriptions_csv,
                                                           skips, image_ext))
    image_codes = table.column("ImageID").combine_chunks().dictionary_encode()
    image_ids = image_codes.dictionary.to_pylist()  # first-seen order
    image_index = image_codes.indices.to_numpy()  # [rows]
    labels = table.column("LabelName").combine_chunks().dictionary_encode()
    confidence = table.column("Confidence").to_numpy()
    mid_list = labels.dictionary.to_pylist()
    mid_known = np.array([m in mid_names for m in mid_list], bool)
    label_index = labels.indices.to_numpy()
    present = confidence > 0
    unknown = present & ~mid_known[label_index]
    rows = np.nonzero(unknown)[0]
    for r in rows[:_MAX_EXAMPLES]:
        skips.skip(SKIP_UNKNOWN_LABEL, labels_csv, f"row {r + 2}")
    if len(rows) > _MAX_EXAMPLES:
        skips.counts[SKIP_UNKNOWN_LABEL] += len(rows) - _MAX_EXAMPLES
    tag_rows = np.nonzero(present & ~unknown)[0]
    # Group by image, rows in file order within an image.
    order = tag_rows[np.argsort(image_index[tag_rows], kind="stable")]
    lengths = np.bincount(image_index[order], minlength=len(image_ids))
    raw_names = [mid_names.get(m, "") for m in mid_list]
    builder = _CorpusBuilder(labels_csv, skips, with_images)
    records = np.char.add("ImageID ", np.asarray(image_ids, dtype=str)) if image_ids else []
    images = [f"images/{i}{image_ext}" for i in image_ids] if with_images else None
    builder.add(lengths, label_index[order].astype(np.int64), raw_names, records, images)
    return builder.build()
