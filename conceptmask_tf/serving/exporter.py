"""Writes the serving SavedModel in the TF Serving layout, atomically, with models.config.

Layout (DESIGN.md §4, §6)::

    <export_dir>/
      models.config                 TF Serving model_config_list (one entry per name)
      <name>/<version>/             SavedModel (integer versions; TF Serving serves the highest)
        saved_model.pb, variables/
        assets.extra/conceptmask.json   what was exported (signatures, calibration, sizes)
        assets.extra/concepts.tsv, word_vectors.npy   the stored vocabulary, for clients
      <name>.tflite, <name>_dynamic_range.tflite, <name>.onnx   (conversions, optional)

A version is written into a temporary folder inside `<export_dir>` and renamed into place,
so TF Serving (which polls `<name>/`) never sees a half-written one. The default version
is one more than the highest existing one (1 for the first); an existing version is never
overwritten.
"""

from __future__ import annotations

import datetime
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf
from tqdm import tqdm

import conceptmask_tf
from conceptmask_tf.assembly.segmenter import load_segmenter
from conceptmask_tf.base import files
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.errors import DataError
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.serving import signatures

logger = logging.getLogger(__name__)

DEFAULT_NAME = "conceptmask"
MODELS_CONFIG = "models.config"
EXTRA_DIR = "assets.extra"
METADATA_FILE = "conceptmask.json"
DEFAULT_SERVING_ROOT = "/models"  # where the docker command of export/README.md mounts E
_VERSION = re.compile(r"^[0-9]+$")


def existing_versions(base_dir: str) -> list[int]:
    """Sorted integer version folders under `<export_dir>/<name>` (others are ignored)."""
    if not files.isdir(base_dir):
        return []
    return sorted(int(n) for n in files.listdir(base_dir)
                  if _VERSION.match(n) and files.isdir(os.path.join(base_dir, n)))


def next_version(base_dir: str) -> int:
    """One more than the highest existing version; 1 when there is none."""
    versions = existing_versions(base_dir)
    return versions[-1] + 1 if versions else 1


def signature_table(dim: int, checks: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """Signature name -> {"inputs", "outputs"}: name -> [dtype, shape] (None: any size).

    The contract shapes, which the SavedModel's signatures declare as they are (every
    signature, with checks or without). "checked_in_graph": with checks the graph also
    asserts them (rank, channels, D, K >= 1, sizes, finite vectors), since neither TF
    Serving nor a loaded signature enforces a declared shape.
    """
    image = ["uint8", [None, None, 3]]
    vectors = ["float32", [None, dim]]
    concepts = ["string", [None]]
    outputs = {"masks": ["uint8", [None, None, None]],
               "mask_probs": ["float32", [None, None, None]], "presence": ["float32", [None]]}
    table = {signatures.SERVING_DEFAULT: {"inputs": {"image": image, "word_vectors": vectors},
                                          "outputs": outputs},
             signatures.SEGMENT_CONCEPTS: {"inputs": {"image": image, "concepts": concepts},
                                           "outputs": outputs},
             signatures.CONCEPT_VECTORS: {"inputs": {"concepts": concepts},
                                          "outputs": {"word_vectors": vectors}}}
    for entry in table.values():
        entry["checked_in_graph"] = checks
    return table


def _metadata(model: ConceptMask, embeddings: ConceptEmbeddings, name: str, version: int,
              checks: bool, max_image_side: int, info: Mapping[str, Any] | None
              ) -> dict[str, Any]:
    dim = int(model.refinement.embedding.embedding_dim)
    utc = datetime.timezone.utc  # noqa: UP017 (datetime.UTC needs Python 3.11)
    return {"name": name, "version": version,
            "created": datetime.datetime.now(utc).isoformat(),
            "conceptmask_tf": conceptmask_tf.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "image_size": model.image_size,
            "attention_scales": list(model.attention_scales),
            "weak_attention": model.weak_attention, "embedding_dim": dim,
            "vocabulary_size": len(embeddings.vocabulary),
            "supervised_concepts": model.num_supervised, "checks": checks,
            "max_image_side": max_image_side, "mask_threshold": signatures.MASK_THRESHOLD,
            "calibration": model.calibration(),
            "signatures": signature_table(dim, checks),
            "source": dict(info or {})}


def export_saved_model(model: ConceptMask, embeddings: ConceptEmbeddings, export_dir: str,
                       name: str = DEFAULT_NAME, version: int | None = None, *,
                       checks: bool = True,
                       max_image_side: int = signatures.DEFAULT_MAX_IMAGE_SIDE,
                       info: Mapping[str, Any] | None = None,
                       serving_root: str | None = DEFAULT_SERVING_ROOT) -> str:
    """Writes `<export_dir>/<name>/<version>/` atomically and updates models.config.

    Args:
        model: The (calibrated) ConceptMask, e.g. `ConceptMaskSegmenter.model`.
        embeddings: The word vectors, stored for the string signatures.
        export_dir: The export folder (created).
        name: Model name (TF Serving's MODEL_NAME).
        version: Integer version >= 1; None for `next_version`.
        checks: In-graph input checks (`signatures.build_archive`).
        max_image_side: Largest accepted image height or width.
        info: Extra facts recorded under "source" in assets.extra/conceptmask.json (e.g.
            `ConceptMaskSegmenter.info()`).
        serving_root: Where TF Serving sees `export_dir`: models.config gets base_path
            `<serving_root>/<name>` ("/models" for the docker command of
            export/README.md); None leaves models.config alone.

    Returns:
        The version folder.

    Raises:
        FileExistsError: The version exists (versions are never overwritten).
        ValueError: A version < 1, or a name that is not a plain folder name.
    """
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    base = os.path.join(export_dir, name)
    files.makedirs(base)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    final = os.path.join(base, str(version))
    _refuse_existing(final, base)
    archive = signatures.build_archive(model, embeddings, checks=checks,
                                       max_image_side=max_image_side)
    staging = files.sibling_path(os.path.join(export_dir, f"{name}-{version}"), "staging")
    files.makedirs(staging)
    try:
        written = os.path.join(staging, str(version))
        archive.write_out(written, verbose=False)
        extra = os.path.join(written, EXTRA_DIR)
        embeddings.save(extra)
        metadata = _metadata(model, embeddings, name, version, checks, max_image_side, info)
        files.write_json(os.path.join(extra, METADATA_FILE), metadata, indent=2)
        _refuse_existing(final, base)
        try:
            files.rename(written, final)
        except OSError as e:  # another export took the version meanwhile
            raise FileExistsError(f"{final} could not be created: {e}") from None
    finally:
        files.rmtree(staging, ignore_errors=True)
    if serving_root is not None:
        write_models_config(export_dir, name, posixpath.join(serving_root, name))
    return final


def _refuse_existing(final: str, base: str) -> None:
    if files.exists(final):
        raise FileExistsError(f"{final} already exists: a version is never overwritten; give "
                              f"another version or none (next: {next_version(base)})")


def read_models_config(path: str) -> Any:
    """Parses a models.config text proto into a `ModelServerConfig`.

    Raises:
        DataError: The file is not a ModelServerConfig text proto.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    text = files.read_text(path)
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise DataError(f"not a TF Serving ModelServerConfig text proto: {e}", path) from None
    return config


def write_models_config(export_dir: str, name: str, base_path: str) -> str:
    """Adds (or updates) model `name` in `<export_dir>/models.config`, keeping the others.

    Args:
        export_dir: The export folder.
        name: Model name.
        base_path: Folder of the model's versions as TF Serving sees it.

    Returns:
        The models.config path.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = os.path.join(export_dir, MODELS_CONFIG)
    if files.exists(path):
        config = read_models_config(path)
    else:
        config = model_server_config_pb2.ModelServerConfig()
    entries = config.model_config_list.config
    entry = next((e for e in entries if e.name == name), None)
    if entry is None:
        entry = entries.add()
    entry.name = name
    entry.base_path = base_path
    entry.model_platform = "tensorflow"
    files.write_atomically(path, text_format.MessageToString(config))
    return path


def write_conversion_saved_model(model: ConceptMask, path: str) -> str:
    """A SavedModel with a check-free `serving_default` only, to convert to TFLite / ONNX.

    Its inputs have the static shapes image [None, None, 3], word_vectors [None, D].
    """
    signatures.build_archive(model, checks=False).write_out(path, verbose=False)
    return path


def export_segmenter(source: str, export_dir: str, *, concepts_dir: str | None = None,
                      data_root: str | None = None,
                      name: str = DEFAULT_NAME, version: int | None = None,
                      max_image_side: int = signatures.DEFAULT_MAX_IMAGE_SIDE,
                      serving_root: str | None = DEFAULT_SERVING_ROOT, tflite: bool = False,
                      onnx: bool = False, progress: bool = False) -> dict[str, Any]:
    """`conceptmask-export`: the SavedModel of the saved ConceptMask, and optional conversions.

    Args:
        source: The saved ConceptMask (`<work_dir>/concept_mask`), or a models folder
            (`assembly.load_segmenter`: its `../concept_mask` when there is one, else
            assembled and calibrated on the data root's validation files).
        export_dir: The export folder.
        concepts_dir, data_root: See `assembly.ConceptMaskSegmenter.assemble` (a models
            folder only).
        name, version, max_image_side, serving_root: See `export_saved_model`.
        tflite: Also write `<name>.tflite` (float32) and `<name>_dynamic_range.tflite`.
        onnx: Also write `<name>.onnx` (opset 17).
        progress: A progress bar on stderr.

    Returns:
        {"saved_model", "version", "models_config" (or None), "tflite",
        "tflite_dynamic_range", "onnx" (paths or None), "info" (the segmenter's)}.
    """
    steps = 2 + 2 * tflite + onnx
    with tqdm(total=steps, desc="export", disable=not progress) as bar:
        segmenter = load_segmenter(source, concepts_dir, data_root)
        model, embeddings, info = segmenter.model, segmenter.embeddings, segmenter.info()
        bar.update()
        saved_model = export_saved_model(model, embeddings, export_dir, name, version,
                                         max_image_side=max_image_side, info=info,
                                         serving_root=serving_root)
        bar.update()
        result = {"saved_model": saved_model, "version": int(os.path.basename(saved_model)),
                  "models_config": (os.path.join(export_dir, MODELS_CONFIG)
                                    if serving_root is not None else None),
                  "tflite": None, "tflite_dynamic_range": None, "onnx": None, "info": info}
        if tflite or onnx:
            from conceptmask_tf.serving import convert  # helper module of the conversions

            # The converters read a local SavedModel (tf2onnx in a subprocess): the
            # conversion model is staged in a local temporary folder; their outputs are
            # written through base.files, so they go to any filesystem.
            local = files.is_local(export_dir)
            with tempfile.TemporaryDirectory(prefix=".convert-",
                                             dir=export_dir if local else None) as staging:
                source = write_conversion_saved_model(model, os.path.join(staging, "model"))
                if tflite:
                    result["tflite"] = convert.to_tflite(
                        source, os.path.join(export_dir, f"{name}.tflite"))
                    bar.update()
                    result["tflite_dynamic_range"] = convert.to_tflite(
                        source, os.path.join(export_dir, f"{name}_dynamic_range.tflite"),
                        quantize=True)
                    bar.update()
                if onnx:
                    result["onnx"] = convert.to_onnx(
                        source, os.path.join(export_dir, f"{name}.onnx"))
                    bar.update()
    return result
