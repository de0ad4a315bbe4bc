"""One way to run an exported Concept Mask model in any of its runtimes.

`load_runner(path)` picks the runtime from the path: the saved ConceptMask folder that
`conceptmask-assemble` writes (`<work_dir>/concept_mask`, Keras), a SavedModel directory
(TensorFlow; also `<export_dir>/conceptmask`, whose highest integer version is taken, as
TF Serving does), a `.tflite` file (the LiteRT interpreter, `ai_edge_litert` when installed, else
`tf.lite.Interpreter`) or an `.onnx` file (onnxruntime on the CPU). Every runner is called
the same way:

    runner(image uint8 [H, W, 3], word_vectors float32 [K, D])
        -> {"masks": uint8 [K, H, W], "mask_probs": float32 [K, H, W],
            "presence": float32 [K]}

and checks its inputs on the host first (rank, channels, dtype, D, K >= 1, finite
vectors, image size), so every runtime rejects bad input with the same clear message
instead of its own (TFLite, for one, would read a wrong D as a resize and fail deep
inside). A SavedModel exported with its vocabulary also turns concept names into word
vectors (`concept_vectors`); for the converted models, take the vectors from the concepts
dir (`ConceptEmbeddings`).

The model may be on any TensorFlow filesystem (local, gs://, ...): paths are checked and
files read through `conceptmask_tf.base.files`, and TensorFlow and Keras load SavedModels
and saved ConceptMask folders from there themselves. The TFLite interpreter and onnxruntime
open local files only: a `.tflite` or `.onnx` elsewhere is read into memory through
`base.files` and handed to them as bytes (`model_content`, `path_or_bytes`), which both
accept, so no local copy is made (an ONNX model with external data files must be local).

A runner can be shared between threads: TensorFlow and onnxruntime run concurrent calls
in parallel, and the TFLite runner takes them one at a time (a TFLite interpreter holds
one set of tensor buffers, resized per call, so it is not thread-safe itself).
"""

from __future__ import annotations

import abc
import functools
import os
import re
import threading
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from conceptmask_tf.base import files
from conceptmask_tf.errors import DataError, UnknownConceptError

SERVING_DEFAULT = "serving_default"
CONCEPT_VECTORS = "concept_vectors"
OUTPUT_NAMES = ("masks", "mask_probs", "presence")
# Largest accepted image height or width: the exported signature's default bound.
DEFAULT_MAX_IMAGE_SIDE = 4096
KINDS = ("keras", "saved_model", "tflite", "onnx")
LABELS = {"keras": "saved ConceptMask", "saved_model": "SavedModel", "tflite": "TFLite model",
          "onnx": "ONNX model"}
MASK_THRESHOLD = 0.5  # as the exported signatures binarise mask_probs
# Written by conceptmask-export beside the SavedModel (conceptmask_tf.serving.exporter).
EXTRA_DIR = "assets.extra"
METADATA_FILE = "conceptmask.json"


class Runner(abc.ABC):
    """An exported model in one runtime (see the module docstring).

    Attributes:
        path: The model file or SavedModel directory.
        kind: One of `KINDS`.
        dim: D, the word-vector dimension the model takes (None if the model does not
            declare it; then D is not checked on the host).
        max_image_side: Largest accepted image height or width.
    """

    kind = ""

    def __init__(self, path: str, dim: int | None, max_image_side: int) -> None:
        self.path = path
        self.dim = dim
        self.max_image_side = int(max_image_side)

    def __call__(self, image: np.ndarray, word_vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Segments K concepts in one image.

        Args:
            image: uint8 [H, W, 3] RGB.
            word_vectors: float [K, D] (float64 is cast to float32).

        Returns:
            {"masks": uint8 [K, H, W], "mask_probs": float32 [K, H, W],
             "presence": float32 [K]}.

        Raises:
            ValueError: Bad input; the message names the input and what is wrong.
        """
        image, word_vectors = check_inputs(image, word_vectors, self.dim, self.max_image_side)
        outputs = self._run(image, word_vectors)
        return {name: np.asarray(outputs[name]) for name in OUTPUT_NAMES}

    @property
    def has_concept_vectors(self) -> bool:
        """True when `concept_vectors` works (the model stores its vocabulary)."""
        return False

    def concept_vectors(self, concepts: Sequence[str]) -> np.ndarray:
        """float32 [K, D] word vectors of concept names, from the model's own vocabulary.

        Raises:
            ValueError: The model stores no vocabulary (converted models).
            UnknownConceptError: A concept (or a word of it) is not in the vocabulary.
        """
        raise ValueError(f"{self.path}: this {LABELS[self.kind]} stores no vocabulary; "
                         "give word vectors, or concept names with a concepts dir "
                         "(concepts.tsv and word_vectors.npy: <work_dir>/concepts, or the "
                         "export's conceptmask/<version>/assets.extra)")

    @abc.abstractmethod
    def _run(self, image: np.ndarray, word_vectors: np.ndarray) -> Mapping[str, np.ndarray]:
        """Runs the checked inputs; returns at least the `OUTPUT_NAMES`."""


def check_inputs(image: np.ndarray, word_vectors: np.ndarray, dim: int | None,
                 max_image_side: int = DEFAULT_MAX_IMAGE_SIDE
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Checks one image and its concepts' vectors against the serving contract.

    Args:
        image: uint8 [H, W, 3].
        word_vectors: float [K, D].
        dim: D the model takes; None skips that check.
        max_image_side: Largest accepted H or W.

    Returns:
        (image uint8 [H, W, 3], word_vectors float32 [K, D]), C-contiguous.

    Raises:
        ValueError: Naming the input and the problem (wrong dtype, rank, channels or D,
            K = 0, non-finite vectors, an empty or too large image).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB pixels, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [height, width, 3] uint8 RGB, got shape {image.shape}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image is empty: height and width must be >= 1, got shape "
                         f"{image.shape}")
    if max(image.shape[:2]) > max_image_side:
        raise ValueError(f"image is too large: height and width must be <= {max_image_side}, "
                         f"got shape {image.shape}")
    word_vectors = np.asarray(word_vectors)
    want = f"[K, {dim if dim is not None else 'D'}]"
    if not np.issubdtype(word_vectors.dtype, np.floating):
        raise ValueError(f"word_vectors must be float32 {want}, got dtype {word_vectors.dtype}")
    if word_vectors.ndim != 2:
        raise ValueError(f"word_vectors must be float32 {want}, got shape {word_vectors.shape}")
    if dim is not None and word_vectors.shape[1] != dim:
        raise ValueError(f"word_vectors must have D = {dim} columns (the word-vector "
                         f"dimension of the model), got shape {word_vectors.shape}")
    if word_vectors.shape[0] == 0:
        raise ValueError("word_vectors is empty: K must be >= 1 concept")
    word_vectors = word_vectors.astype(np.float32)
    if not np.all(np.isfinite(word_vectors)):
        rows = np.flatnonzero(~np.all(np.isfinite(word_vectors), axis=1))
        raise ValueError(f"word_vectors contain NaN or Inf (rows {rows.tolist()[:10]})")
    return np.ascontiguousarray(image), np.ascontiguousarray(word_vectors)


def load_runner(path: str, signature_key: str = SERVING_DEFAULT, num_threads: int | None = None,
                max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> Runner:
    """Opens an exported model in the runtime its path calls for.

    Args:
        path: A saved ConceptMask folder, a SavedModel dir (or a folder of integer
            versions of one), `.tflite` or `.onnx`, on any TensorFlow filesystem.
        signature_key: The signature to run (SavedModel and TFLite).
        num_threads: CPU threads of TFLite and onnxruntime (default: all cores for
            TFLite, onnxruntime's default); TensorFlow keeps its own setting.
        max_image_side: Largest accepted image height or width.

    Raises:
        FileNotFoundError: Nothing at `path`, or a directory without a SavedModel.
        ValueError: A file of another kind.
        DataError: The runtime cannot open the model, or it lacks the signature.
    """
    if not files.exists(path):
        raise FileNotFoundError(f"{path} does not exist: give a SavedModel directory, a "
                                ".tflite or an .onnx file (conceptmask-export writes them)")
    extension = os.path.splitext(path)[1].lower()
    is_dir = files.isdir(path)
    if is_dir and _is_saved_concept_mask(path):
        kind = "keras"
        factory = functools.partial(KerasRunner, path, max_image_side)
    elif is_dir:
        path, kind = resolve_saved_model(path), "saved_model"
        factory = functools.partial(SavedModelRunner, path, signature_key, max_image_side)
    elif extension == ".tflite":
        kind = "tflite"
        factory = functools.partial(TFLiteRunner, path, signature_key, num_threads,
                                    max_image_side)
    elif extension == ".onnx":
        kind = "onnx"
        factory = functools.partial(OnnxRunner, path, num_threads, max_image_side)
    else:
        raise ValueError(f"{path}: unknown model kind {extension!r}; give a SavedModel "
                         "directory, a .tflite or an .onnx file")
    try:
        return factory()
    except Exception as e:  # each runtime has its own errors for a corrupt file
        raise DataError(f"not a usable {LABELS[kind]}: {e}", path=path) from e


def resolve_saved_model(directory: str) -> str:
    """The SavedModel in `directory`, or in its highest integer-named subdirectory.

    Raises:
        FileNotFoundError: Neither holds a saved_model.pb.
    """
    if files.exists(os.path.join(directory, "saved_model.pb")):
        return directory
    versions = [int(name) for name in files.listdir(directory) if name.isdigit()
                and files.exists(os.path.join(directory, name, "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{directory} holds no saved_model.pb, nor integer version "
                                "folders with one (<export_dir>/conceptmask/<version>)")
    return os.path.join(directory, str(max(versions)))


class SavedModelRunner(Runner):
    """A SavedModel signature in TensorFlow (what TF Serving runs).

    When the export's `assets.extra/conceptmask.json` is there, its max_image_side bounds
    the one given (the signature would reject larger images anyway).

    Args:
        path: The SavedModel directory.
        signature_key: The image + word-vectors signature.
        max_image_side: Largest accepted image height or width.
    """

    kind = "saved_model"

    def __init__(self, path: str, signature_key: str = SERVING_DEFAULT,
                 max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        if signature_key not in signatures:
            raise ValueError(f"{path} has no signature {signature_key!r}; it has "
                             f"{sorted(signatures)}")
        self._function = signatures[signature_key]
        self._vectors_function = signatures.get(CONCEPT_VECTORS)
        exported_side = export_metadata(path).get("max_image_side")
        if isinstance(exported_side, int) and exported_side >= 1:
            max_image_side = min(max_image_side, exported_side)
        super().__init__(path, self._declared_dim(), max_image_side)

    def _declared_dim(self) -> int | None:
        """D from the signature's word_vectors spec, else from concept_vectors' output."""
        spec = self._function.structured_input_signature[1].get("word_vectors")
        if spec is not None and spec.shape.rank == 2 and spec.shape[1] is not None:
            return int(spec.shape[1])
        if self._vectors_function is not None:
            output = self._vectors_function.structured_outputs.get("word_vectors")
            if output is not None and output.shape.rank == 2 and output.shape[1] is not None:
                return int(output.shape[1])
        return None

    def _run(self, image: np.ndarray, word_vectors: np.ndarray) -> Mapping[str, np.ndarray]:
        tf = self._tf
        try:
            outputs = self._function(image=tf.constant(image),
                                     word_vectors=tf.constant(word_vectors))
        except tf.errors.InvalidArgumentError as e:  # an input check of the signature
            raise ValueError(f"{self.path}: {_assert_message(e)}") from None
        return {name: value.numpy() for name, value in outputs.items()}

    @property
    def has_concept_vectors(self) -> bool:
        return self._vectors_function is not None

    def concept_vectors(self, concepts: Sequence[str]) -> np.ndarray:
        if self._vectors_function is None:
            return super().concept_vectors(concepts)
        tf = self._tf
        rows = []
        for concept in concepts:  # one at a time, so an error names its concept
            try:
                output = self._vectors_function(concepts=tf.constant([concept]))
            except tf.errors.InvalidArgumentError as e:
                raise UnknownConceptError(concept, f"{_assert_message(e)} ({self.path})"
                                          ) from None
            rows.append(output["word_vectors"].numpy()[0])
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dim or 0),
                                                                       np.float32)


def export_metadata(saved_model_dir: str) -> dict:
    """`assets.extra/conceptmask.json` of an export (what conceptmask-export recorded), or {}."""
    path = os.path.join(saved_model_dir, EXTRA_DIR, METADATA_FILE)
    if not files.exists(path):
        return {}
    metadata = files.read_json(path)
    return metadata if isinstance(metadata, dict) else {}


def _assert_message(error: Exception) -> str:
    """The text of a failed tf.debugging.Assert, without TensorFlow's node trace."""
    text = getattr(error, "message", str(error))
    text = text.split("assertion failed:", 1)[-1]
    text = re.split(r"\s*\[\[|\n", text.strip(), maxsplit=1)[0]
    return re.sub(r"[\[\]]", "", text).strip()


class TFLiteRunner(Runner):
    """A TFLite model through its signature runner (inputs addressed by name; the
    runner resizes the inputs to each call's H, W and K). Calls from several threads
    run one at a time.

    Args:
        path: The .tflite file (not local: read into memory, see the module docstring).
        signature_key: The signature to run.
        num_threads: Interpreter threads (default: all cores).
        max_image_side: Largest accepted image height or width.
    """

    kind = "tflite"

    def __init__(self, path: str, signature_key: str = SERVING_DEFAULT,
                 num_threads: int | None = None,
                 max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> None:
        source = ({"model_path": path} if files.is_local(path)
                  else {"model_content": _read_bytes(path)})
        interpreter = _tflite_interpreter_class()(**source,
                                                  num_threads=num_threads or os.cpu_count())
        signatures = interpreter.get_signature_list()
        if signature_key not in signatures:
            raise ValueError(f"{path} has no signature {signature_key!r}; it has "
                             f"{sorted(signatures)}")
        self._runner = interpreter.get_signature_runner(signature_key)
        # Resize, allocate, set, invoke and read must not interleave between threads (the
        # interpreter releases the GIL in Invoke); its outputs are copies, so they may be
        # used after the lock is released.
        self._lock = threading.Lock()
        details = self._runner.get_input_details().get("word_vectors")
        shape = details["shape_signature"] if details is not None else []
        dim = int(shape[-1]) if len(shape) == 2 and shape[-1] > 0 else None
        super().__init__(path, dim, max_image_side)

    def _run(self, image: np.ndarray, word_vectors: np.ndarray) -> Mapping[str, np.ndarray]:
        with self._lock:
            return self._runner(image=image, word_vectors=word_vectors)


def _tflite_interpreter_class() -> type:
    """LiteRT's Interpreter when installed, else TensorFlow's (deprecated, same API)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        class Interpreter(tf.lite.Interpreter):  # without its deprecation warning
            def __init__(self, *args, **kwargs) -> None:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", ".*tf.lite.Interpreter is deprecated")
                    super().__init__(*args, **kwargs)
    return Interpreter


class OnnxRunner(Runner):
    """An ONNX model in onnxruntime (CPU execution provider).

    Args:
        path: The .onnx file (not local: read into memory, see the module docstring).
        num_threads: Intra-op threads (default: onnxruntime's).
        max_image_side: Largest accepted image height or width.
    """

    kind = "onnx"

    def __init__(self, path: str, num_threads: int | None = None,
                 max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        if num_threads:
            options.intra_op_num_threads = num_threads
        source = path if files.is_local(path) else _read_bytes(path)
        self._session = onnxruntime.InferenceSession(source, options,
                                                     providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in self._session.get_inputs()}
        missing = {"image", "word_vectors"} - set(inputs)
        if missing:
            raise ValueError(f"{path} lacks the inputs {sorted(missing)}; it has "
                             f"{sorted(inputs)}")
        shape = inputs["word_vectors"].shape
        dim = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self._output_names = [o.name for o in self._session.get_outputs()]
        super().__init__(path, dim, max_image_side)

    def _run(self, image: np.ndarray, word_vectors: np.ndarray) -> Mapping[str, np.ndarray]:
        values = self._session.run(self._output_names,
                                   {"image": image, "word_vectors": word_vectors})
        return dict(zip(self._output_names, values))


def _read_bytes(path: str) -> bytes:
    with files.open_file(path, "rb") as f:
        return f.read()


def _is_saved_concept_mask(path: str) -> bool:
    # The files `assembly.segmenter.ConceptMaskSegmenter.save_to_preset` writes.
    return all(files.isfile(os.path.join(path, name))
               for name in ("config.json", "model.weights.h5"))


class KerasRunner(Runner):
    """The saved ConceptMask folder itself (`ConceptMaskSegmenter`), run by Keras.

    It holds its vocabulary: concept names work like with an exported SavedModel.
    """

    kind = "keras"

    def __init__(self, path: str, max_image_side: int) -> None:
        from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter  # imports TF

        self._segmenter = ConceptMaskSegmenter.from_preset(path)
        super().__init__(path, self._segmenter.dim, max_image_side)

    def _run(self, image: np.ndarray, word_vectors: np.ndarray) -> Mapping[str, np.ndarray]:
        outputs = self._segmenter(image[None], word_vectors)
        probs = np.asarray(outputs["masks"])[0]  # [K, H, W]
        return {"masks": (probs >= MASK_THRESHOLD).astype(np.uint8), "mask_probs": probs,
                "presence": np.asarray(outputs["presence"])[0]}

    @property
    def has_concept_vectors(self) -> bool:
        return True

    def concept_vectors(self, concepts: Sequence[str]) -> np.ndarray:
        return self._segmenter.embeddings.vectors_for(list(concepts))
