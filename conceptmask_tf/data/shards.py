"""Sharded TFRecord files of a stage's training examples, for data too large to list.

A shard folder holds one stage's examples exactly as its pipeline builds them from a data
root (`datasets.*_elements`: the rows after concept resolution, with the image file's
encoded bytes), split over `<stage>-00000-of-00016.tfrecord` files, and `shards.json`,
written last (a folder without it is incomplete):

    {"format": 1, "stage": "embedding", "files": [...], "counts": [...],
     "num_records": ..., "num_images": ...,
     "fields": {"target": {"dtype": "float32", "shape": [512]}, ...},
     "skips": {...}, "metadata": {...}}

Each record is a `tf.train.Example`: "path" (the image file as listed), "image/encoded"
(its bytes) and one feature per field (flattened; a ragged field's first dimension is
recovered from its length).

Images are checked where the writer reads them: each file is read and decoded once, as the
training pipeline decodes it (`images.image_bytes_problem`), and a bad one (missing,
truncated, corrupt, too large, another format) is skipped and counted under its reason, its
examples left out ("num_records" counts them, "counts" does not). So every image in the
shards decodes, and the training pipeline decodes them in the graph with no Python call per
image (`shard_examples`); the writer's skips travel in `shards.json` to the training run's
report and its --max_bad_fraction check.

Reading (`shard_examples`) splits the files between input pipelines (workers) by file,
shuffles the file order, interleaves the files and shuffles records in a bounded buffer;
in eval mode it keeps the written order. Only `shards.json` is read before the first step,
so start-up does not depend on the number of examples.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from conceptmask_tf.base import files, progress
from conceptmask_tf.data.images import MISSING, UNREADABLE, decode_image, image_bytes_problem
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError

INDEX_FILE = "shards.json"
PLAN_FILE = "shards.plan.json"
FORMAT = 1
_DTYPES = {"float32": tf.float32, "int32": tf.int32, "bytes": tf.string}
_IMAGE = "image/encoded"

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One per-example field: dtype ("float32", "int32" or "bytes") and shape, whose first
    dimension is -1 for a ragged field (a variable number of rows)."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def ragged(self) -> bool:
        return bool(self.shape) and self.shape[0] == -1


@dataclasses.dataclass(frozen=True)
class ShardSet:
    """A complete shard folder (`ShardSet.load`).

    Attributes:
        directory: The folder.
        stage: The stage whose examples it holds ("embedding", "refinement",
            "segmentation").
        files: Shard file names, in written order.
        counts: Examples per file.
        num_records: Examples the writer was given, those of bad images included (the
            training examples of a run on the data root, before its image checks).
        fields: The per-example fields besides the image.
        num_images: Distinct image files among the examples.
        skips: The skips counted while the examples were made ({"counts", "examples"}).
        metadata: What the writer was given (e.g. the concepts' fingerprint).
    """

    directory: str
    stage: str
    files: tuple[str, ...]
    counts: tuple[int, ...]
    num_records: int
    fields: Mapping[str, FieldSpec]
    num_images: int
    skips: Mapping[str, Any]
    metadata: Mapping[str, Any]

    @property
    def num_examples(self) -> int:
        return sum(self.counts)

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.directory, name) for name in self.files]

    @classmethod
    def load(cls, directory: str, stage: str | None = None) -> ShardSet:
        """Reads `shards.json` (and checks the files are there; nothing else is read).

        Raises:
            FileNotFoundError: No `shards.json` (not written, or not finished), or a shard
                file is missing.
            DataError: `shards.json` is malformed, or holds another stage's examples.
        """
        index_path = os.path.join(directory, INDEX_FILE)
        if not files.exists(index_path):
            more = (" (the writer did not finish: rerun conceptmask-shards to resume)"
                    if files.exists(os.path.join(directory, PLAN_FILE)) else "")
            raise FileNotFoundError(f"no shards in {directory}: {INDEX_FILE} is missing{more}")
        try:
            index = files.read_json(index_path)
            shard_set = cls(
                directory=directory, stage=str(index["stage"]), files=tuple(index["files"]),
                counts=tuple(int(n) for n in index["counts"]),
                num_records=int(index["num_records"]),
                fields={name: FieldSpec(spec["dtype"], tuple(spec["shape"]))
                        for name, spec in index["fields"].items()},
                num_images=int(index["num_images"]), skips=index.get("skips", {}),
                metadata=index.get("metadata", {}))
            if index.get("format") != FORMAT:
                raise ValueError(f"format {index.get('format')!r}, expected {FORMAT}")
            if len(shard_set.files) != len(shard_set.counts) or not shard_set.files:
                raise ValueError("'files' and 'counts' must be non-empty and of one length")
            if any(spec.dtype not in _DTYPES for spec in shard_set.fields.values()):
                raise ValueError(f"field dtypes must be among {sorted(_DTYPES)}")
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"malformed shard index: {e}", index_path) from e
        if stage is not None and shard_set.stage != stage:
            raise DataError(f"these shards hold {shard_set.stage} examples, not {stage} ones",
                            index_path)
        missing = [p for p in shard_set.paths if not files.exists(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} shard file(s) listed in {index_path} are "
                                    f"missing, e.g. {missing[0]}")
        return shard_set

    def skip_counter(self) -> SkipCounter:
        """The skips counted while the examples were made, as a counter to merge."""
        counter = SkipCounter(self.directory)
        for reason, n in self.skips.get("counts", {}).items():
            counter.counts[reason] += int(n)
            counter.examples[reason].extend(self.skips.get("examples", {}).get(reason, []))
        return counter


def field_specs(elements: Mapping[str, Any]) -> dict[str, FieldSpec]:
    """The `FieldSpec` of each element field but "path" (dense arrays [N, ...], ragged
    tensors [N, None, ...] or lists of bytes [N])."""
    specs = {}
    for name, value in elements.items():
        if name == "path":
            continue
        if isinstance(value, tf.RaggedTensor):
            if value.ragged_rank != 1:
                raise ValueError(f"field {name!r}: only one ragged dimension is supported")
            dtype, inner = value.dtype.name, tuple(value.flat_values.shape[1:])
            specs[name] = FieldSpec(_dtype_name(dtype, name), (-1, *inner))
        elif isinstance(value, (list, tuple)) and (not value or isinstance(value[0], bytes)):
            specs[name] = FieldSpec("bytes", ())
        else:
            array = np.asarray(value)
            specs[name] = FieldSpec(_dtype_name(array.dtype.name, name), array.shape[1:])
    return specs


def write_shards(directory: str, elements: Mapping[str, Any], *, stage: str,
                 num_shards: int, skips: SkipCounter | None = None,
                 metadata: Mapping[str, Any] | None = None, shuffle_seed: int | None = 0,
                 num_threads: int = 8, overwrite: bool = False,
                 show_progress: bool = True) -> ShardSet:
    """Writes a stage's examples, with their images' bytes, into sharded TFRecord files.

    Each image file is read and decoded once here (bad ones are skipped and counted in
    `skips` under their reason, once per file, their examples left out). Resumable: the
    plan (fields, examples and their order, shard count) goes to `shards.plan.json` first;
    each shard file appears under its final name only once complete, after a small
    `<file>.json` with its count and skips; a rerun with the same plan writes only the
    missing files. `shards.json` is written last. Shards are written by parallel threads
    (reading and decoding release the GIL; building a `tf.train.Example` does not).

    Args:
        directory: The output folder (any TensorFlow filesystem).
        elements: The stage's host rows (`datasets.*_elements`): "path" (the image files)
            and the fields, N rows each.
        stage: The stage the examples are for.
        num_shards: Files to write; give every worker several (the pipeline splits the
            files between workers).
        skips: The skips counted while making `elements`; the bad image files are added.
            All are kept in `shards.json`.
        metadata: JSON-serialisable facts kept in `shards.json` (e.g. the concepts'
            fingerprint).
        shuffle_seed: Permute the examples before splitting them (each shard a random
            sample, so a bounded shuffle buffer mixes well); None keeps their order.
        num_threads: Shards written at once.
        overwrite: Replace a folder holding another plan's shards.
        show_progress: A progress bar over the examples.

    Returns:
        The written `ShardSet`.

    Raises:
        ValueError: Bad arguments, or fields not aligned with "path".
        DataError: `directory` holds another plan's shards (and not `overwrite`), or no
            image could be used.
    """
    paths = [p.decode("utf-8") if isinstance(p, bytes) else str(p)
             for p in np.asarray(elements["path"]).tolist()]
    num = len(paths)
    if not isinstance(num_shards, int) or num_shards <= 0:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    if num == 0:
        raise ValueError("no examples to write")
    num_shards = min(num_shards, num)
    specs = field_specs(elements)
    rows = {name: _RowReader(elements[name], specs[name], num, name) for name in specs}
    order = (np.arange(num) if shuffle_seed is None
             else np.random.default_rng(shuffle_seed).permutation(num))
    bounds = [num * i // num_shards for i in range(num_shards + 1)]
    names = [f"{stage}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    plan = {"format": FORMAT, "stage": stage, "files": names,
            "fields": {n: {"dtype": s.dtype, "shape": list(s.shape)} for n, s in specs.items()},
            "order": _fingerprint(paths, order)}
    _start_plan(directory, plan, overwrite)
    with progress.bar(show_progress, num, f"writing {stage} shards", "example") as bar:
        def write(shard: int) -> dict[str, Any]:
            path = os.path.join(directory, names[shard])
            done_path = path + ".json"
            if files.exists(path) and files.exists(done_path):  # an earlier run's
                bar.update(bounds[shard + 1] - bounds[shard])
                return files.read_json(done_path)
            temp = files.sibling_path(path, "tmp")
            count, bad = 0, {}
            with tf.io.TFRecordWriter(temp) as writer:
                for i in order[bounds[shard]:bounds[shard + 1]]:
                    data, problem = _checked_image(paths[i])
                    if problem:
                        bad[paths[i]] = problem
                    else:
                        writer.write(_example(paths[i], data,
                                              {n: r.row(i) for n, r in rows.items()}))
                        count += 1
                    bar.update(1)
            done = {"count": count, "bad_images": bad}
            files.write_atomically(done_path, json.dumps(done))
            files.replace(temp, path)
            return done

        with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
            done = [future.result() for future in
                    [pool.submit(write, shard) for shard in range(num_shards)]]
    counter = skips if skips is not None else SkipCounter(directory)
    bad_images = {path: reason for d in done for path, reason in d["bad_images"].items()}
    for path, reason in sorted(bad_images.items()):  # once per file, as training counts
        counter.skip(reason, path=path)
    counts = [d["count"] for d in done]
    if not sum(counts):
        raise DataError(f"no usable image among the {stage} examples. {counter.report()}",
                        directory)
    index = {**{k: v for k, v in plan.items() if k != "order"}, "counts": counts,
             "num_records": num, "num_images": len(set(paths) - set(bad_images)),
             "skips": {"counts": dict(counter.counts),
                       "examples": {r: list(e) for r, e in counter.examples.items()}},
             "metadata": dict(metadata or {})}
    files.write_atomically(os.path.join(directory, INDEX_FILE),
                           json.dumps(index, indent=1, sort_keys=True))
    if bad_images:
        logger.warning("%d image file(s) could not be used and were left out (e.g. %s)",
                       len(bad_images), ", ".join(sorted(bad_images)[:3]))
    return ShardSet.load(directory, stage)


def shard_examples(shard_set: ShardSet, *, training: bool, seed: int | None,
                   shuffle_buffer: int | None, repeat: bool,
                   input_pipelines: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """The examples of a shard folder, as element dicts of the stage's fields plus "path"
    (the image file it was written from) and "image" (uint8 [H, W, 3], decoded in the
    graph: the writer checked that every image decodes).

    Args:
        shard_set: The shards.
        training: Shuffle the files (each pass) and the records (in `shuffle_buffer`),
            and interleave the files; otherwise the written order.
        seed: The shuffle seed; None for a nondeterministic order.
        shuffle_buffer: Records in the shuffle buffer; None for all of them.
        repeat: Repeat indefinitely.
        input_pipelines: (count, index): this pipeline reads every count-th file from
            the index-th (one pipeline per worker; the files go to workers, not records).

    Raises:
        ValueError: Fewer files than input pipelines, or a bad `input_pipelines`.
        DataError: This pipeline's files hold no example.
    """
    count, index = input_pipelines
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"input_pipelines must be (count >= 1, 0 <= index < count), got "
                         f"{input_pipelines}")
    if len(shard_set.files) < count:
        raise ValueError(f"{len(shard_set.files)} shard file(s) in {shard_set.directory} "
                         f"cannot be split over {count} workers: write at least {count} "
                         "(several per worker) with conceptmask-shards --num_shards")
    paths = shard_set.paths[index::count]
    examples = sum(shard_set.counts[index::count])
    if not examples:  # a repeated pipeline would wait forever
        raise DataError(f"the shard files of input pipeline {index} of {count} hold no "
                        "example (their images were all bad): write fewer, larger shards",
                        shard_set.directory)
    ds = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 16),
                           block_length=1, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.shuffle(shuffle_buffer or examples, seed=None if seed is None else seed + 2,
                        reshuffle_each_iteration=True)
    else:
        ds = ds.flat_map(tf.data.TFRecordDataset)
        if repeat:
            ds = ds.repeat()
    parse = _parser(shard_set.fields)
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _parser(fields: Mapping[str, FieldSpec]):
    features = {"path": tf.io.FixedLenFeature([], tf.string),
                _IMAGE: tf.io.FixedLenFeature([], tf.string)}
    for name, spec in fields.items():
        stored = tf.int64 if spec.dtype == "int32" else _DTYPES[spec.dtype]
        features[name] = (tf.io.VarLenFeature(stored) if spec.ragged or spec.dtype != "bytes"
                          else tf.io.FixedLenFeature([], tf.string))

    def parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, features)
        element = {"path": parsed["path"], "image": decode_image(parsed[_IMAGE])}
        for name, spec in fields.items():
            value = parsed[name]
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value)
            value = tf.cast(value, _DTYPES[spec.dtype])
            element[name] = (tf.reshape(value, spec.shape) if not spec.ragged
                             else tf.reshape(value, [-1, *spec.shape[1:]]))
        return element

    return parse


class _RowReader:
    """Row i of one element field, as a flat numpy array (or bytes)."""

    def __init__(self, value: Any, spec: FieldSpec, num: int, name: str) -> None:
        self.spec = spec
        if isinstance(value, tf.RaggedTensor):
            self.values = value.flat_values.numpy()
            self.splits = value.row_splits.numpy()
            rows = len(self.splits) - 1
        elif spec.dtype == "bytes":
            self.values = list(value)
            rows = len(self.values)
        else:
            self.values = np.asarray(value)
            rows = len(self.values)
        if rows != num:
            raise ValueError(f"field {name!r} has {rows} rows, 'path' has {num}")

    def row(self, i: int) -> Any:
        if self.spec.ragged:
            return self.values[self.splits[i]:self.splits[i + 1]]
        return self.values[i]


def _checked_image(path: str) -> tuple[bytes, str]:
    """The writer's read of an image file: (bytes, "") or (b"", the skip reason)."""
    try:
        with files.open_file(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return b"", MISSING
    except OSError:
        return b"", UNREADABLE
    _, reason = image_bytes_problem(data)
    return (b"", reason) if reason else (data, "")


def _example(path: str, data: bytes, row: Mapping[str, Any]) -> bytes:
    feature = {"path": _bytes_feature([path.encode("utf-8")]), _IMAGE: _bytes_feature([data])}
    for name, value in row.items():
        if isinstance(value, bytes):
            feature[name] = _bytes_feature([value])
            continue
        flat = np.asarray(value).reshape(-1)
        if flat.dtype.kind == "f":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=flat))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes_feature(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _dtype_name(dtype: str, field: str) -> str:
    if dtype.startswith("float"):
        return "float32"
    if dtype.startswith(("int", "uint")):
        return "int32"
    if dtype in ("string", "object", "bytes"):
        return "bytes"
    raise ValueError(f"field {field!r}: dtype {dtype} cannot be written to shards")


def _fingerprint(paths: list[str], order: np.ndarray) -> str:
    digest = hashlib.sha256()
    for i in order:
        digest.update(paths[i].encode("utf-8") + b"\0")
    return digest.hexdigest()


def _start_plan(directory: str, plan: Mapping[str, Any], overwrite: bool) -> None:
    """Writes the plan, or checks an earlier run's is the same (to resume it)."""
    plan_path = os.path.join(directory, PLAN_FILE)
    if files.exists(plan_path) and files.read_json(plan_path) == plan:
        if files.exists(os.path.join(directory, INDEX_FILE)):
            files.remove(os.path.join(directory, INDEX_FILE))  # rewritten at the end
        return
    if files.exists(directory) and files.listdir(directory):
        if not overwrite:
            raise DataError("the folder holds other files or the shards of another plan "
                            "(other examples, fields or shard count); pass overwrite "
                            "(--overwrite) or choose another folder", directory)
        files.rmtree(directory)
    files.makedirs(directory)
    files.write_atomically(plan_path, json.dumps(plan, sort_keys=True))
