"""The serving signatures of the exported SavedModel, with all preprocessing in the graph.

Signatures (DESIGN.md §6):

- `serving_default`: image uint8 [H, W, 3] (any H, W) and word_vectors float32 [K, D] ->
  masks uint8 [K, H, W] (mask_probs >= 0.5), mask_probs float32 [K, H, W], presence
  float32 [K].
- `segment_concepts`: image and concepts string [K] -> the same outputs. Each concept is
  normalised in the graph like `base.names.normalize_concept`, then looked up in the
  vocabulary stored in the SavedModel: a vocabulary concept gets its stored vector, any
  other name the idf-weighted sum of its words' vectors (`ConceptEmbeddings.vector`).
- `concept_vectors`: concepts string [K] -> word_vectors float32 [K, D], the vectors
  `segment_concepts` uses (to feed `serving_default` or a converted model).

Every signature declares its inputs: image uint8 [None, None, 3], word_vectors float32
[None, D] and concepts string [None] (what `saved_model_cli show --all` shows, and what
TF Serving clients and converters read). A wrong dtype is rejected by the signature itself.
A declared shape is not enforced, though: neither TF Serving (it feeds a request's tensors
to the graph as they are) nor a loaded signature called from Python checks a request's
shape against it. So with `checks=True` tf.debugging asserts with clear messages fail the
call (InvalidArgumentError) on a wrong rank, an image without 3 channels, an empty image,
an image side above `max_image_side`, word vectors of the wrong D, non-finite word vectors
and K = 0. The checks read the request's shape as fed (`runtime_shape`: Grappler would
fold them from the declared shapes otherwise), and the network only gets an input that
passed them (`_checked`), so no bad input reaches it whatever order the ops run in.
`checks=False` builds check-free functions with the same declared shapes, for converters
(TFLite, ONNX). Unknown concept words are an error either way.

Everything runs without autograph: nothing branches in Python on tensor values.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.models import ConceptMask

SERVING_DEFAULT = "serving_default"
SEGMENT_CONCEPTS = "segment_concepts"
CONCEPT_VECTORS = "concept_vectors"
DEFAULT_MAX_IMAGE_SIDE = 4096
MASK_THRESHOLD = 0.5
OUTPUT_NAMES = ("masks", "mask_probs", "presence")
_SUMMARIZE = 64  # values an assert message shows


def normalize_concepts(names: tf.Tensor) -> tf.Tensor:
    """string [...] -> string [...]: `normalize_concept` of each name, in the graph.

    Lower-cases (Unicode), maps "_" and every character outside [0-9a-z' -] to a space,
    collapses spaces and strips " '-" from both ends. NUL becomes a space before
    lower-casing: `tf.strings.lower` with an encoding ends a string at its first NUL,
    `str.lower` does not (and NUL is mapped to a space anyway).
    """
    text = tf.strings.regex_replace(names, "\\x00", " ")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, "_", " ")
    text = tf.strings.regex_replace(text, "[^0-9a-z' -]+", " ")
    text = tf.strings.regex_replace(text, " +", " ")
    return tf.strings.regex_replace(text, "^[ '-]+|[ '-]+$", "")


class ConceptTable(tf.Module):
    """The vocabulary, its idf and its word vectors inside the SavedModel.

    Args:
        embeddings: The concept embeddings to store.
    """

    def __init__(self, embeddings: ConceptEmbeddings) -> None:
        super().__init__(name="concept_table")
        concepts = list(embeddings.vocabulary.concepts)
        self.first_concept = concepts[0]  # a name that is always served
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(concepts, tf.string), tf.range(len(concepts), dtype=tf.int64)),
            default_value=-1)
        self.vectors = tf.Variable(embeddings.vectors, trainable=False,
                                   name="word_vectors")  # [V, D]
        # ConceptEmbeddings.soft_topic_rows weighs in float32 too.
        self.idf = tf.Variable(embeddings.vocabulary.idf.astype(np.float32), trainable=False,
                               name="idf")  # [V]

    def vectors_for(self, concepts: tf.Tensor) -> tf.Tensor:
        """string [K] -> float32 [K, D], `ConceptEmbeddings.vectors_for` in the graph.

        Fails (InvalidArgumentError) on a name that is empty after normalisation and on a
        name outside the vocabulary with a word outside it (the message names the word).
        """
        names = normalize_concepts(concepts)  # [K]
        whole = self.table.lookup(names)  # int64 [K], -1 outside the vocabulary
        words = tf.strings.split(names, sep=" ")  # ragged [K, (n)]
        word_ids = tf.ragged.map_flat_values(self.table.lookup, words)
        ids = word_ids.flat_values  # [N]
        rows = word_ids.value_rowids()  # [N], the concept of each word
        unknown = tf.reduce_all(tf.stack([ids < 0, tf.gather(whole, rows) < 0,
                                          tf.gather(names, rows) != ""]), axis=0)  # [N]
        # No quotes: the assert message escapes them.
        described = tf.strings.join([words.flat_values, " (in: ", tf.gather(names, rows), ")"])
        # The message shows the raw names: invalid UTF-8 in it would make TensorFlow's
        # Python layer raise UnicodeDecodeError instead of the InvalidArgumentError.
        shown = tf.strings.unicode_transcode(concepts, "UTF-8", "UTF-8", errors="replace")
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(tf.strings.length(names) > 0),
                ["concept name is empty after normalisation (no letter or digit):",
                 tf.boolean_mask(shown, tf.equal(names, ""))], summarize=_SUMMARIZE),
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(unknown)),
                ["unknown concept word, not in the vocabulary stored in this SavedModel:",
                 tf.boolean_mask(described, unknown)], summarize=_SUMMARIZE),
        ]
        with tf.control_dependencies(checks):
            safe = tf.maximum(ids, 0)
            weighted = (tf.expand_dims(tf.gather(self.idf, safe), 1)
                        * tf.gather(self.vectors, safe))  # [N, D]
            phrases = tf.math.unsorted_segment_sum(weighted, rows, tf.size(names))  # [K, D]
            stored = tf.gather(self.vectors, tf.maximum(whole, 0))  # [K, D]
            return tf.where(tf.expand_dims(whole >= 0, 1), stored, phrases)


def runtime_shape(x: tf.Tensor) -> tf.Tensor:
    """int32 [rank]: the shape of x as fed, opaque to shape inference.

    tf.shape(x) has the static length of the declared rank and the declared dimensions:
    Grappler would fold the rank and channel checks from them, and a request fed past
    its declared shape (TF Serving does not check it, nor does a loaded signature) would
    reach the network. A serialize-parse round trip of the shape (a few bytes) leaves
    nothing to infer.
    """
    return tf.io.parse_tensor(tf.io.serialize_tensor(tf.shape(x)), tf.int32)


def _leading_dims(shape: tf.Tensor, n: int) -> tf.Tensor:
    """int32 [n]: the first n entries of a `runtime_shape`, zero-padded (safe for any rank)."""
    return tf.concat([shape, tf.zeros([n], tf.int32)], axis=0)[:n]


def _if_rank(rank_ok: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
    """`condition` where the rank is right, True otherwise.

    TensorFlow may evaluate asserts in any order (constant folding with the call's
    shapes): each later check passes on a wrong rank so that only the rank message shows.
    """
    return tf.logical_or(tf.logical_not(rank_ok), condition)


def _checked(x: tf.Tensor, checks: list[tuple[tf.Tensor, list]],
             fallback: Callable[[], tf.Tensor]) -> tf.Tensor:
    """Asserts each (condition, message and values); x if all hold, else `fallback()`.

    Control dependencies alone cannot keep a bad input from the network: Grappler drops
    or reorders what carries them (a reshape it finds redundant, for one), and the network
    may then fail first, with its own message, or take the memory of a too large image.
    A cond makes the network's input depend on the checks as data: on a failed check the
    network gets the small valid `fallback` and the assert fails the call with its message.
    """
    asserts = [tf.debugging.Assert(condition, data, summarize=_SUMMARIZE)
               for condition, data in checks]
    passed = tf.reduce_all(tf.stack([condition for condition, _ in checks]))
    with tf.control_dependencies(asserts):
        return tf.cond(passed, lambda: tf.identity(x), fallback)


def check_image(image: tf.Tensor, max_side: int) -> tf.Tensor:
    """Asserts image is a non-empty [H, W, 3] with H, W <= max_side; returns it checked."""
    fed = runtime_shape(image)
    rank_ok = tf.equal(tf.size(fed), 3)
    shape = _leading_dims(fed, 3)  # [H, W, C]
    return _checked(image, [
        (rank_ok, ["image must have rank 3, [height, width, 3] uint8 RGB; got shape", fed]),
        (_if_rank(rank_ok, tf.equal(shape[2], 3)),
         ["image must have 3 channels (RGB); got shape", shape]),
        (_if_rank(rank_ok, tf.reduce_all(shape[:2] > 0)),
         ["image is empty: height and width must be >= 1; got shape", shape]),
        (_if_rank(rank_ok, tf.reduce_all(shape[:2] <= max_side)),
         [(f"image is too large: height and width must be <= {max_side} "
           "(max_image_side of the export); got shape"), shape]),
    ], lambda: tf.zeros([1, 1, 3], tf.uint8))


def check_word_vectors(word_vectors: tf.Tensor, dim: int) -> tf.Tensor:
    """Asserts word_vectors is a finite [K, dim] with K >= 1; returns it checked."""
    fed = runtime_shape(word_vectors)
    rank_ok = tf.equal(tf.size(fed), 2)
    shape = _leading_dims(fed, 2)  # [K, D]
    return _checked(word_vectors, [
        (rank_ok, [f"word_vectors must have rank 2, [K, {dim}] float32; got shape", fed]),
        (_if_rank(rank_ok, tf.equal(shape[1], dim)),
         [(f"word_vectors must have D = {dim} columns (the word-vector dimension of the "
           "model); got shape"), shape]),
        (_if_rank(rank_ok, shape[0] > 0),
         ["word_vectors is empty: K must be >= 1 concept; got shape", shape]),
        # Flat: reduce_all would take its axes from the declared rank.
        (tf.reduce_all(tf.math.is_finite(tf.reshape(word_vectors, [-1]))),
         ["word_vectors contain NaN or Inf"]),
    ], lambda: tf.ones([1, dim], tf.float32))


def check_concepts(concepts: tf.Tensor, fallback: str) -> tf.Tensor:
    """Asserts concepts is a non-empty string [K]; returns it checked.

    Args:
        concepts: The request's concept names.
        fallback: A vocabulary concept (what the network gets on a failed check).
    """
    fed = runtime_shape(concepts)
    rank_ok = tf.equal(tf.size(fed), 1)
    count = _leading_dims(fed, 1)[0]  # K
    return _checked(concepts, [
        (rank_ok, ["concepts must have rank 1, [K] strings; got shape", fed]),
        (_if_rank(rank_ok, count > 0), ["concepts is empty: K must be >= 1 concept"]),
    ], lambda: tf.constant([fallback]))


class ServingFunctions:
    """The Python functions behind the signatures (traced by `ExportArchive`).

    Args:
        model: The ConceptMask to serve.
        table: The stored vocabulary, for the string signatures (None: none of them).
        checks: Add the input asserts (see the module docstring).
        max_image_side: Largest accepted image height or width (with checks).
    """

    def __init__(self, model: ConceptMask, table: ConceptTable | None = None,
                 checks: bool = True, max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> None:
        if max_image_side < 1:
            raise ValueError(f"max_image_side must be >= 1, got {max_image_side}")
        self.model = model
        self.table = table
        self.checks = checks
        self.max_image_side = int(max_image_side)
        self.dim = int(model.refinement.embedding.embedding_dim)

    def input_signature(self, name: str) -> list[tf.TensorSpec]:
        """The TensorSpecs of signature `name`: the declared shapes, with or without checks."""
        image = tf.TensorSpec([None, None, 3], tf.uint8, name="image")
        vectors = tf.TensorSpec([None, self.dim], tf.float32, name="word_vectors")
        concepts = tf.TensorSpec([None], tf.string, name="concepts")
        return {SERVING_DEFAULT: [image, vectors], SEGMENT_CONCEPTS: [image, concepts],
                CONCEPT_VECTORS: [concepts]}[name]

    def endpoints(self) -> dict[str, Callable[..., dict[str, tf.Tensor]]]:
        """Signature name -> function (the string ones only with a table)."""
        functions = {SERVING_DEFAULT: self.serving_default}
        if self.table is not None:
            functions[SEGMENT_CONCEPTS] = self.segment_concepts
            functions[CONCEPT_VECTORS] = self.concept_vectors
        return functions

    def serving_default(self, image: tf.Tensor, word_vectors: tf.Tensor
                        ) -> dict[str, tf.Tensor]:
        """uint8 [H, W, 3], float32 [K, D] -> {"masks", "mask_probs", "presence"}."""
        if self.checks:
            image = check_image(image, self.max_image_side)
            word_vectors = check_word_vectors(word_vectors, self.dim)
        return self._segment(image, word_vectors)

    def segment_concepts(self, image: tf.Tensor, concepts: tf.Tensor) -> dict[str, tf.Tensor]:
        """uint8 [H, W, 3], string [K] -> {"masks", "mask_probs", "presence"}."""
        if self.checks:
            image = check_image(image, self.max_image_side)
            concepts = check_concepts(concepts, self.table.first_concept)
        return self._segment(image, self.table.vectors_for(concepts))

    def concept_vectors(self, concepts: tf.Tensor) -> dict[str, tf.Tensor]:
        """string [K] -> {"word_vectors": float32 [K, D]}."""
        if self.checks:
            concepts = check_concepts(concepts, self.table.first_concept)
        return {"word_vectors": self.table.vectors_for(concepts)}

    def _segment(self, image: tf.Tensor, word_vectors: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.expand_dims(tf.cast(image, tf.float32), 0)  # [1, H, W, 3] in [0, 255]
        vectors = tf.expand_dims(word_vectors, 0)  # [1, K, D]
        outputs = self.model({"image": pixels, "word_vectors": vectors}, training=False)
        mask_probs = _drop_batch(outputs["mask_probs"])  # [K, H, W]
        return {"masks": tf.cast(mask_probs >= MASK_THRESHOLD, tf.uint8),
                "mask_probs": mask_probs, "presence": _drop_batch(outputs["presence"])}  # [K]


def _drop_batch(x: tf.Tensor) -> tf.Tensor:
    """[1, ...] -> [...] (a reshape: TFLite rejects this graph's Squeeze)."""
    return tf.reshape(x, tf.shape(x)[1:])


def build_archive(model: ConceptMask, embeddings: ConceptEmbeddings | None = None, *,
                  checks: bool = True, max_image_side: int = DEFAULT_MAX_IMAGE_SIDE
                  ) -> keras.export.ExportArchive:
    """An `ExportArchive` of the serving signatures, ready for `write_out`.

    Args:
        model: The (calibrated) ConceptMask.
        embeddings: Word vectors to store for `segment_concepts` and `concept_vectors`;
            None exports `serving_default` only.
        checks: In-graph input checks (see the module docstring); False for a graph to
            convert to TFLite or ONNX.
        max_image_side: Largest accepted image height or width (with checks).

    Returns:
        The archive; `archive.write_out(path)` writes the SavedModel.
    """
    table = ConceptTable(embeddings) if embeddings is not None else None
    functions = ServingFunctions(model, table, checks, max_image_side)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if table is not None:
        archive.track(table)
    for name, function in functions.endpoints().items():
        archive.add_endpoint(name, function, input_signature=functions.input_signature(name))
    return archive
