"""`ConceptMaskSegmenter`: the one saved, calibrated Concept Mask model.

Assembly composes the stage networks of a models folder into a `ConceptMask` (the one
rule: `StageNetworks.concept_mask`), calibrates it on the data root's validation files
(`calibration.calibrate_model`: presence threshold and slope, the weak-concept theta,
all weights of the model) and saves it as one folder in the KerasHub preset style:

    <dir>/config.json                   the ConceptMask's Keras config
    <dir>/model.weights.h5              its weights (calibration included)
    <dir>/metadata.json                 versions, where it was assembled from
    <dir>/assets/concepts.tsv           the vocabulary   } the word vectors that turn
    <dir>/assets/word_vectors.npy       its vectors      } concept names into inputs
    <dir>/assets/supervised_concepts.txt  the weak-concept rule's supervised concepts
    <dir>/assets/calibration.json       what calibration chose and measured

The pipeline writes it to `<work_dir>/concept_mask`; evaluation, export, the segment
binary and the Python API load it (`load_segmenter` also assembles a models folder on the
fly).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import conceptmask_tf
from conceptmask_tf.assembly.calibration import calibrate_model
from conceptmask_tf.assembly.stage_networks import (
    StageNetworks,
    load_stage_networks,
    supervised_concepts,
)
from conceptmask_tf.base import files
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, require_concepts
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.errors import DataError
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.models.graph_function import graph_function

logger = logging.getLogger(__name__)

SEGMENTER_DIR = "concept_mask"  # <work_dir>/concept_mask
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
ASSETS_DIR = "assets"
SUPERVISED_FILE = "supervised_concepts.txt"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_SPLITS = ("strong", "weak_box", "weak_image")
FORMAT = "conceptmask_tf.ConceptMaskSegmenter"
FORMAT_VERSION = 1


def default_concepts_dir(models_dir: str) -> str:
    """`<models_dir>/../concepts`, where the pipeline writes the word vectors."""
    return files.normpath(os.path.join(models_dir, os.pardir, "concepts"))


def default_segmenter_dir(models_dir: str) -> str:
    """`<models_dir>/../concept_mask`, where the pipeline writes the saved model."""
    return files.normpath(os.path.join(models_dir, os.pardir, SEGMENTER_DIR))


def is_saved_segmenter(path: str) -> bool:
    """True when `path` is a folder written by `ConceptMaskSegmenter.save_to_preset`."""
    return all(files.isfile(os.path.join(path, name)) for name in (CONFIG_FILE, WEIGHTS_FILE))


class ConceptMaskSegmenter:
    """Segments images given concept names or word vectors: masks and presence.

    Inference only, like KerasHub's `SAM3PromptableConceptImageSegmenter`: the trained
    `ConceptMask` (`model`), the word vectors that turn names into its inputs and the
    settings it was assembled with.

    Example:
        ```python
        segmenter = ConceptMaskSegmenter.from_preset("work/concept_mask")
        outputs = segmenter.predict(images, concepts=["horse", "red umbrella"])
        outputs["masks"]     # float32 [B, K, H, W] mask probabilities
        outputs["presence"]  # float32 [B, K]
        ```

    Args:
        model: The calibrated `ConceptMask`.
        embeddings: The word vectors of the vocabulary (names and phrases -> vectors).
        supervised_concepts: The concepts of the weak-concept rule (paper §4.4).
        calibration: What calibration chose and measured (`calibrate_model`'s result,
            or {"skipped": reason}).
        source: Where it was assembled from (folders, image size, scales).
    """

    def __init__(self, model: ConceptMask, embeddings: ConceptEmbeddings,
                 supervised_concepts: Sequence[str] = (),
                 calibration: Mapping[str, Any] | None = None,
                 source: Mapping[str, Any] | None = None) -> None:
        dim = model.refinement.embedding.embedding_dim
        if embeddings.dim != dim:
            raise ValueError(f"word vectors of dimension {embeddings.dim} for a model of "
                             f"dimension {dim}: not the same concepts step")
        self.model = model
        self.embeddings = embeddings
        self.supervised_concepts = list(supervised_concepts)
        self.calibration = dict(calibration or {"skipped": "not calibrated"})
        self.source = dict(source or {})
        self._predict = graph_function(model, dim)

    @property
    def dim(self) -> int:
        """D, the word-vector dimension."""
        return self.embeddings.dim

    @property
    def image_size(self) -> int:
        """S, the side the segmentation network works at."""
        return self.model.image_size

    # -- Assembly ------------------------------------------------------------------------

    @classmethod
    def from_stage_networks(cls, networks: StageNetworks, embeddings: ConceptEmbeddings,
                            data_root: str | None = None,
                            source: Mapping[str, Any] | None = None
                            ) -> ConceptMaskSegmenter:
        """The uncalibrated segmenter of loaded stage networks (`calibrate` next)."""
        supervised, where = supervised_concepts(networks, data_root, embeddings)
        model = networks.concept_mask("refinement", "segmentation",
                                      embeddings.vectors_for(supervised))
        info = {"models_dir": networks.models_dir, "image_size": networks.image_size,
                "attention_scales": list(networks.scales),
                "weak_attention": networks.weak_attention, "supervised_source": where,
                **dict(source or {})}
        return cls(model, embeddings, supervised, None, info)

    @classmethod
    def assemble(cls, models_dir: str, concepts_dir: str | None = None,
                 data_root: str | None = None, *, calibration_images: int | None = 40,
                 image_size: int | None = None) -> ConceptMaskSegmenter:
        """Composes the stage networks of a models folder and calibrates on validation data.

        Args:
            models_dir: `<work_dir>/models` (embedding/, refinement/, segmentation/).
            concepts_dir: Word vectors; default `<models_dir>/../concepts`.
            data_root: The data root: its val/<split>.json files calibrate the model and
                its splits.json names the supervised concepts when the refinement model's
                config.json does not. None: no calibration.
            calibration_images: Validation images per split (None: all; 0: none).
            image_size: S; default from the segmentation model's config.json.

        Raises:
            FileNotFoundError: A required model dir or the word vectors are missing (the
                message names the path and what writes it).
            ValueError: Word vectors of another dimension than the models'.
        """
        concepts_dir = concepts_dir or default_concepts_dir(models_dir)
        require_concepts(concepts_dir)
        if not files.isdir(models_dir):
            raise FileNotFoundError(f"{models_dir} is not a directory: conceptmask-pipeline "
                                    "trains the stages into <work_dir>/models")
        networks = load_stage_networks(models_dir, image_size)
        embeddings = ConceptEmbeddings.load(concepts_dir)
        dim = networks.networks["refinement"].embedding.embedding_dim
        if embeddings.dim != dim:
            raise ValueError(f"word vectors in {concepts_dir} have dimension {embeddings.dim}, "
                             f"the models in {models_dir} {dim}: not the same concepts step")
        segmenter = cls.from_stage_networks(networks, embeddings, data_root,
                                            {"concepts_dir": concepts_dir,
                                             "data_root": data_root})
        if data_root is None:
            segmenter.calibration = {"skipped": "no data root given"}
            logger.warning("no data root: presence threshold, scale and theta keep their "
                           "initial values")
        else:
            segmenter.calibrate(data_root, concepts_dir, calibration_images)
        return segmenter

    def calibrate(self, data_root: str, concepts_dir: str,
                  max_images: int | None = 40) -> dict[str, Any]:
        """Calibrates presence and theta on the validation files there are, and keeps the
        result in `calibration`.

        Without validation files (or without a verified-absent pair) the model keeps its
        values and the result says why under "skipped".

        Args:
            data_root: The data root.
            concepts_dir: The word vectors (and the data root's splits.json decide which
                concepts are held out).
            max_images: Validation images per split (None: all; 0: skip calibration).
        """
        if max_images == 0:
            result: dict[str, Any] = {"skipped": "calibration_images = 0"}
        else:
            root = DataRoot(data_root)
            splits = [s for s in CALIBRATION_SPLITS if files.exists(root.val_file(s))]
            if not splits:
                result = {"skipped": "no validation file (" + ", ".join(
                    f"val/{s}.json" for s in CALIBRATION_SPLITS) + ") under the data root"}
            else:
                try:
                    result = calibrate_model(self.model, data_root, concepts_dir,
                                             splits=splits, max_images=max_images)
                except ValueError as e:
                    result = {"skipped": str(e)}
        if "skipped" in result:
            logger.warning("calibration skipped: %s; presence threshold and theta keep their "
                           "initial values", result["skipped"])
        self.calibration = result
        return result

    # -- Saving and loading --------------------------------------------------------------

    def save_to_preset(self, path: str) -> str:
        """Writes the folder layout of the module docstring, atomically.

        An existing folder at `path` is replaced only once the new one is complete. `path`
        may be on any filesystem TensorFlow knows (gs://, ...; `base.files`).

        Returns:
            `path`.
        """
        path = files.normpath(path)
        parent = os.path.dirname(files.abspath(path))
        files.makedirs(parent)
        staging = files.sibling_path(files.abspath(path), "staging")
        files.makedirs(staging)
        try:
            files.write_json(os.path.join(staging, CONFIG_FILE),
                             keras.saving.serialize_keras_object(self.model), indent=1)
            # Keras 3 writes and reads .weights.h5 on a "scheme://" path itself (through a
            # local temporary file and tf.io.gfile copy), so any filesystem works here.
            self.model.save_weights(os.path.join(staging, WEIGHTS_FILE))
            assets = os.path.join(staging, ASSETS_DIR)
            self.embeddings.save(assets)
            with files.open_file(os.path.join(assets, SUPERVISED_FILE), "w",
                                 encoding="utf-8") as f:
                f.writelines(f"{c}\n" for c in self.supervised_concepts)
            _write_json(os.path.join(assets, CALIBRATION_FILE), self.calibration)
            _write_json(os.path.join(staging, METADATA_FILE), {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "conceptmask_tf_version": conceptmask_tf.__version__,
                "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
                "saved": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"),
                "calibrated": "skipped" not in self.calibration,
                "values": self.model.calibration(), "source": self.source})
            files.replace_folder(staging, path)
        except BaseException:
            files.rmtree(staging, ignore_errors=True)
            raise
        return path

    @classmethod
    def from_preset(cls, path: str) -> ConceptMaskSegmenter:
        """Loads a folder written by `save_to_preset`.

        Raises:
            FileNotFoundError: `path` is not such a folder (the message says what writes one).
            DataError: A file of the folder is malformed.
        """
        if not is_saved_segmenter(path):
            raise FileNotFoundError(
                f"{path} is not a saved ConceptMask (no {CONFIG_FILE} and {WEIGHTS_FILE}): "
                "conceptmask-assemble or conceptmask-pipeline writes <work_dir>/"
                f"{SEGMENTER_DIR}")
        config = _read_json(os.path.join(path, CONFIG_FILE))
        try:
            model = keras.saving.deserialize_keras_object(config)
        except (TypeError, ValueError, KeyError) as e:
            raise DataError(f"not a ConceptMask config: {e}", os.path.join(path, CONFIG_FILE)
                            ) from None
        if not isinstance(model, ConceptMask):
            raise DataError(f"holds a {type(model).__name__}, not a ConceptMask",
                            os.path.join(path, CONFIG_FILE))
        model.load_weights(os.path.join(path, WEIGHTS_FILE))
        assets = os.path.join(path, ASSETS_DIR)
        embeddings = ConceptEmbeddings.load(assets)
        supervised_path = os.path.join(assets, SUPERVISED_FILE)
        supervised = []
        if files.exists(supervised_path):
            with files.open_file(supervised_path, encoding="utf-8") as f:
                supervised = [line.rstrip("\n") for line in f if line.strip()]
        if len(supervised) != model.num_supervised:
            raise DataError(f"names {len(supervised)} supervised concepts for a model with "
                            f"{model.num_supervised}", supervised_path)
        calibration_path = os.path.join(assets, CALIBRATION_FILE)
        calibration = (_read_json(calibration_path) if files.exists(calibration_path)
                       else None)
        metadata_path = os.path.join(path, METADATA_FILE)
        metadata = _read_json(metadata_path) if files.exists(metadata_path) else {}
        return cls(model, embeddings, supervised, calibration,
                   {**metadata.get("source", {}), "segmenter_dir": path})

    # -- Inference -----------------------------------------------------------------------

    def word_vectors(self, concepts: Sequence[str] | np.ndarray) -> np.ndarray:
        """float32 [K, D] of concept names (phrases of known words work) or of vectors.

        Raises:
            UnknownConceptError: A name that is not in the vocabulary and has a word that
                is not either.
            ValueError: No concept, or vectors that are not [K, D].
        """
        if isinstance(concepts, str):
            concepts = [concepts]
        if isinstance(concepts, np.ndarray) or (
                len(concepts) and not isinstance(concepts[0], str)):
            vectors = np.asarray(concepts, np.float32)
            if vectors.ndim != 2 or vectors.shape[1] != self.dim:
                raise ValueError(f"word vectors must be [K, {self.dim}], got {vectors.shape}")
        else:
            vectors = self.embeddings.vectors_for(list(concepts))
        if len(vectors) == 0:
            raise ValueError("no concept given")
        return vectors

    def __call__(self, images: Any, word_vectors: Any) -> dict[str, tf.Tensor]:
        """The model on a batch, as tensors: images float [B, H, W, 3] in [0, 255],
        word_vectors float32 [B, K, D] or [K, D]; usable inside `tf.data` maps and
        `tf.function`s."""
        images = tf.cast(images, tf.float32)
        vectors = tf.convert_to_tensor(word_vectors, tf.float32)
        if vectors.shape.rank == 2:
            vectors = tf.tile(vectors[None], [tf.shape(images)[0], 1, 1])
        outputs = self._predict({"image": images, "word_vectors": vectors})
        return {"masks": outputs["mask_probs"], "presence": outputs["presence"]}

    def predict(self, images: Any, concepts: Sequence[str] | np.ndarray,
                batch_size: int = 8) -> dict[str, Any]:
        """Mask probabilities and presence of every concept in every image.

        Args:
            images: A batch uint8 or float [B, H, W, 3] (values in [0, 255]), one image
                [H, W, 3], a list of images (of any sizes), or a `tf.data.Dataset` of
                images or batches.
            concepts: Concept names (or phrases of known words), or word vectors [K, D].
            batch_size: Most images per model call (list input).

        Returns:
            {"masks": float32 [B, K, H, W] in [0, 1], "presence": float32 [B, K]} as numpy;
            images of different sizes give lists of [K, H_b, W_b] masks instead.

        Raises:
            ValueError: Images that are not [H, W, 3], or bad concepts (`word_vectors`).
        """
        vectors = self.word_vectors(concepts)
        if isinstance(images, tf.data.Dataset):
            images = [np.asarray(x) for x in images.as_numpy_iterator()]
            images = [x for item in images for x in (item if item.ndim == 4 else [item])]
        elif not isinstance(images, (list, tuple)):
            array = np.asarray(images)
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4 or array.shape[-1] != 3:
                raise ValueError(f"images must be [B, H, W, 3] or [H, W, 3], got {array.shape}")
            images = list(array)
        for i, image in enumerate(images):
            if np.ndim(image) != 3 or np.shape(image)[-1] != 3:
                raise ValueError(f"image {i} must be [H, W, 3], got {np.shape(image)}")
        masks, presence = [], []
        for group in _same_size_batches(images, batch_size):
            outputs = self(np.stack([images[i] for i in group]).astype(np.float32), vectors)
            masks.extend(np.asarray(outputs["masks"]))
            presence.extend(np.asarray(outputs["presence"]))
        order = np.argsort([i for group in _same_size_batches(images, batch_size)
                            for i in group], kind="stable")
        masks = [masks[i] for i in order]
        presence = np.stack([presence[i] for i in order])
        if len({m.shape for m in masks}) == 1:
            return {"masks": np.stack(masks), "presence": presence}
        return {"masks": masks, "presence": presence}

    def info(self) -> dict[str, Any]:
        """Facts for export metadata and logs."""
        return {**self.source, "embedding_dim": self.dim,
                "vocabulary_size": len(self.embeddings.vocabulary),
                "supervised_concepts": list(self.supervised_concepts),
                "calibration": {"applied": "skipped" not in self.calibration,
                                **self.model.calibration(),
                                **({"reason": self.calibration["skipped"]}
                                   if "skipped" in self.calibration else {})}}


def describe_calibration(calibration: Mapping[str, Any]) -> str:
    """One line on the calibration of `ConceptMaskSegmenter.info()["calibration"]`."""
    if calibration["applied"]:
        return (f"threshold {calibration['threshold']:.4g}, scale "
                f"{calibration['scale']:.4g}, theta {calibration['theta']:.4g}")
    return f"none ({calibration['reason']}); initial values kept"


def load_segmenter(path: str, concepts_dir: str | None = None, data_root: str | None = None,
                   calibration_images: int | None = 40) -> ConceptMaskSegmenter:
    """A saved ConceptMask folder, or a models folder assembled (and calibrated) on the fly.

    Args:
        path: A `save_to_preset` folder (`<work_dir>/concept_mask`), or `<work_dir>/models`
            (then `ConceptMaskSegmenter.assemble` with the other arguments; when
            `<work_dir>/concept_mask` exists it is loaded instead).
        concepts_dir, data_root, calibration_images: See `ConceptMaskSegmenter.assemble`.

    Raises:
        FileNotFoundError: `path` is neither (the message says what writes each).
    """
    if is_saved_segmenter(path):
        return ConceptMaskSegmenter.from_preset(path)
    if files.isdir(os.path.join(path, "embedding")):
        saved = default_segmenter_dir(path)
        if is_saved_segmenter(saved):
            logger.info("loading the assembled model %s", saved)
            return ConceptMaskSegmenter.from_preset(saved)
        logger.info("%s has no assembled model: assembling %s", saved, path)
        return ConceptMaskSegmenter.assemble(path, concepts_dir, data_root,
                                             calibration_images=calibration_images)
    raise FileNotFoundError(f"{path} is neither a saved ConceptMask (conceptmask-assemble "
                            "writes <work_dir>/concept_mask) nor a models folder "
                            "(conceptmask-pipeline trains <work_dir>/models)")


def _same_size_batches(images: Sequence[Any], batch_size: int) -> Iterable[list[int]]:
    """Indices of images grouped by size (first-seen order), at most batch_size each."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(np.shape(image)), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), max(1, batch_size)):
            yield indices[start:start + batch_size]


def _read_json(path: str) -> Any:
    try:
        return files.read_json(path)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e}", path) from None


def _write_json(path: str, content: Any) -> None:
    files.write_json(path, content, indent=1, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
