"""The declared signature shapes, the in-graph checks behind them, and concept-name parity.

Every signature of the SavedModel declares image uint8 [None, None, 3], word_vectors
float32 [None, D] and concepts string [None]. Neither TF Serving nor a loaded signature
enforces a declared shape, so the in-graph checks must still name a wrong rank or channel
count: `serving_feed` runs a signature the way TF Serving's Predict does (a TF1 session of
the SavedModel, the request's tensors fed to it unchecked), where Grappler sees the
declared shapes.

The numpy concept path (`normalize_concept`, `ConceptEmbeddings.vector`) is the reference
of the graph's (`signatures.normalize_concepts`, `ConceptTable.vectors_for`).

Builds its own tiny model (stage networks of conftest's `write_models`, assembled without
calibration): the assertions here do not depend on the calibration.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from conceptmask_tf.assembly.segmenter import ConceptMaskSegmenter
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.errors import UnknownConceptError
from conceptmask_tf.serving import signatures
from conceptmask_tf.serving.exporter import signature_table, write_conversion_saved_model
from tests.serving.conftest import DIM, MAX_SIDE, concept_embeddings, write_models

IMAGE = ("image", tf.uint8, [None, None, 3])
VECTORS = ("word_vectors", tf.float32, [None, DIM])
CONCEPTS = ("concepts", tf.string, [None])
DECLARED = {"serving_default": [IMAGE, VECTORS], "segment_concepts": [IMAGE, CONCEPTS],
            "concept_vectors": [CONCEPTS]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, embeddings, checked SavedModel path, check-free conversion SavedModel path)."""
    work = tmp_path_factory.mktemp("declared_shapes")
    write_models(str(work / "models"))
    concept_embeddings().save(str(work / "concepts"))
    segmenter = ConceptMaskSegmenter.assemble(str(work / "models"), str(work / "concepts"))
    model, embeddings = segmenter.model, segmenter.embeddings
    checked = str(work / "checked")
    signatures.build_archive(model, embeddings, max_image_side=MAX_SIDE).write_out(
        checked, verbose=False)
    return model, embeddings, checked, write_conversion_saved_model(model, str(work / "free"))


@pytest.fixture(scope="module")
def loaded(tiny):
    return tf.saved_model.load(tiny[2])


def _specs(signature) -> dict[str, tuple[str, tf.DType, list]]:
    args, kwargs = signature.structured_input_signature
    assert args == ()
    return {name: (spec.name, spec.dtype, spec.shape.as_list()) for name, spec in kwargs.items()}


def _signature_defs(path: str) -> dict:
    from tensorflow.python.tools import saved_model_utils  # what saved_model_cli reads

    return saved_model_utils.get_meta_graph_def(path, "serve").signature_def


def test_every_signature_declares_exactly_the_contract_shapes_and_dtypes(tiny, loaded):
    assert sorted(loaded.signatures) == sorted(DECLARED)
    defs = _signature_defs(tiny[2])
    for name, inputs in DECLARED.items():
        assert _specs(loaded.signatures[name]) == {n: (n, d, s) for n, d, s in inputs}, name
        # The SignatureDef (saved_model_cli show --all): known rank, -1 for None.
        listed = {n: (info.dtype, tf.TensorShape(info.tensor_shape).as_list())
                  for n, info in defs[name].inputs.items()}
        assert listed == {n: (d.as_datatype_enum, s) for n, d, s in inputs}, name
        assert not any(info.tensor_shape.unknown_rank for info in defs[name].inputs.values())


def test_conversion_saved_model_declares_the_same_serving_default(tiny):
    free = tf.saved_model.load(tiny[3])
    assert list(free.signatures) == ["serving_default"]
    assert _specs(free.signatures["serving_default"]) == {
        n: (n, d, s) for n, d, s in DECLARED["serving_default"]}


@pytest.mark.parametrize("checks", [True, False])
def test_signature_table_records_the_declared_shapes(loaded, checks):
    table = signature_table(DIM, checks)
    assert sorted(table) == sorted(DECLARED)
    for name, entry in table.items():
        declared = {n: [d.name, s] for n, (_, d, s) in _specs(loaded.signatures[name]).items()}
        assert entry["inputs"] == declared, name
        assert entry["checked_in_graph"] is checks
        assert "declared_with_unknown_shape" not in entry


def serving_feed(path: str, signature: str) -> Callable[..., dict[str, np.ndarray]]:
    """Runs `signature` as TF Serving's Predict does: session.Run of the SavedModel's
    graph with the request's tensors fed as they are (no shape check against the
    SignatureDef; `Session.run` and `make_callable` would add one in Python)."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    definition = meta_graph.signature_def[signature]
    inputs, outputs = sorted(definition.inputs), sorted(definition.outputs)
    run = session._make_callable_from_options(config_pb2.CallableOptions(
        feed=[definition.inputs[n].name for n in inputs],
        fetch=[definition.outputs[n].name for n in outputs]))

    def call(**feeds) -> dict[str, np.ndarray]:
        assert sorted(feeds) == inputs
        return dict(zip(outputs, run(*[np.asarray(feeds[n]) for n in inputs])))

    return call


def _assert_message(error: Exception) -> str:
    found = re.search(r"assertion failed: (.*)", str(error))
    assert found, str(error)
    return found.group(1)


def _image(*shape) -> np.ndarray:
    return np.full(shape, 7, np.uint8)


def _vectors(*shape) -> np.ndarray:
    return np.full(shape, 0.5, np.float32)


# Requests against the declared shapes: the checks are what the network would otherwise
# meet (or silently reinterpret: a [1, H, W, 3] batch).
OFF_DECLARED = [
    ("serving_default", {"image": _image(1, 10, 12, 3), "word_vectors": _vectors(2, DIM)},
     r"image must have rank 3, \[height, width, 3\] uint8 RGB; got shape\] \[1 10 12 3\]"),
    ("serving_default", {"image": _image(10, 12), "word_vectors": _vectors(2, DIM)},
     r"image must have rank 3.*got shape\] \[10 12\]"),
    ("serving_default", {"image": _image(10, 12, 1, 3), "word_vectors": _vectors(2, DIM)},
     r"image must have rank 3.*got shape\] \[10 12 1 3\]"),
    ("serving_default", {"image": _image(10, 12, 4), "word_vectors": _vectors(2, DIM)},
     r"image must have 3 channels \(RGB\); got shape\] \[10 12 4\]"),
    ("serving_default", {"image": _image(10, 12, 1), "word_vectors": _vectors(2, DIM)},
     r"image must have 3 channels \(RGB\); got shape\] \[10 12 1\]"),
    ("serving_default", {"image": _image(10, 12, 3), "word_vectors": _vectors(1, 2, DIM)},
     rf"word_vectors must have rank 2, \[K, {DIM}\] float32; got shape\] \[1 2 {DIM}\]"),
    ("serving_default", {"image": _image(10, 12, 3), "word_vectors": _vectors(DIM)},
     rf"word_vectors must have rank 2.*got shape\] \[{DIM}\]"),
    ("serving_default", {"image": _image(10, 12, 3), "word_vectors": _vectors(2, DIM + 1)},
     rf"word_vectors must have D = {DIM} columns.*got shape\] \[2 {DIM + 1}\]"),
    ("concept_vectors", {"concepts": np.asarray([[b"dog"]], object)},
     r"concepts must have rank 1, \[K\] strings; got shape\] \[1 1\]"),
    ("concept_vectors", {"concepts": np.asarray(b"dog", object)},
     r"concepts must have rank 1, \[K\] strings; got shape\] \[\]"),
    ("segment_concepts", {"image": _image(10, 12, 3), "concepts": np.asarray([[b"dog"]], object)},
     r"concepts must have rank 1.*\[1 1\]"),
    ("segment_concepts", {"image": _image(1, 10, 12, 3), "concepts": np.asarray([b"dog"], object)},
     r"image must have rank 3.*\[1 10 12 3\]"),
]


@pytest.mark.parametrize("signature, inputs, message", OFF_DECLARED)
def test_loaded_signature_names_an_input_off_its_declared_shape(loaded, signature, inputs,
                                                                  message):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        loaded.signatures[signature](**{n: tf.constant(v) for n, v in inputs.items()})
    assert re.search(message, _assert_message(raised.value))


@pytest.fixture(scope="module")
def served(tiny):
    return {name: serving_feed(tiny[2], name) for name in DECLARED}


@pytest.mark.parametrize("signature, inputs, message", OFF_DECLARED)
def test_tf_serving_feed_names_an_input_off_its_declared_shape(served, signature, inputs,
                                                               message):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        served[signature](**inputs)
    assert re.search(message, _assert_message(raised.value))


def test_tf_serving_feed_serves_a_valid_request_like_the_loaded_signature(served, loaded):
    image = np.random.default_rng(0).integers(0, 256, (13, 17, 3), np.uint8)
    vectors = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32)
    got = served["serving_default"](image=image, word_vectors=vectors)
    expected = loaded.signatures["serving_default"](image=tf.constant(image),
                                                    word_vectors=tf.constant(vectors))
    for name in signatures.OUTPUT_NAMES:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-6, err_msg=name)
    assert got["masks"].shape == (3, 13, 17)


def test_tf_serving_feed_rejects_a_wrong_dtype_naming_the_input(served):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"(?s)Type mismatch.*serving_default_image"):
        served["serving_default"](image=np.zeros((9, 9, 3), np.float32),
                                  word_vectors=_vectors(2, DIM))


# --- Concept names: the numpy path is the reference of the graph's -------------------

# Each is served by both paths (the comment says what it normalises to). The vocabulary
# (conftest.VOCABULARY) holds "hot dog" and "traffic light" as phrases whose words
# "hot" and "traffic" are not in it.
KNOWN = [
    "dog", "DOG", "  Dog  ", "\tsky\n", "Sky\r\n", "-sky-", "'dog'", "--'cat'--",
    "Hot Dog", "HOT_DOG", "hot   dog", " hot\tdog ",  # the vocabulary phrase "hot dog"
    "Traffic_Light", "TRAFFIC light!",  # "traffic light"
    "T-Shirt", "t-shirt.",  # "t-shirt" (the hyphen stays)
    "red car", "Red_Car", "RED\u2014CAR", "red,car", "red/car",  # the phrase "red car"
    "red\u00a0car", "red\u3000car", "Red\x00Car",  # no-break and ideographic space, NUL
    "red \u00e9 car",  # an accented letter is a separator, like any non-[0-9a-z]
    "light red", "Light  RED!", "cloud cat dog", "dog dog", "sky sky sky",
    "S\u212aY",  # KELVIN SIGN lower-cases to "k": "sky"
    "dog\u0301", "\u00e9dog", "dog\u00e9",  # accents around a word: "dog"
]
UNKNOWN = [
    "zebra", "red zebra", "hot", "traffic", "T_Shirt", "t shirt", "hot-dog", "dog's",
    "caf\u00e9", "ca\u0308r", "\u0130stanbul", "L\u0130GHT", "\uff24\uff4f\uff47",
    "red---car", "", "   ", "?!", "'-'", "\u00e9", "\ufb01sh",
]


def test_the_name_lists_are_what_they_claim():
    embeddings = concept_embeddings()
    assert all(name in embeddings for name in KNOWN), [n for n in KNOWN if n not in embeddings]
    assert not any(name in embeddings for name in UNKNOWN)
    normalised = {normalize_concept(n) for n in KNOWN}
    assert {"hot dog", "traffic light", "t-shirt", "red car", "sky"} <= normalised


def test_graph_normalisation_equals_normalize_concept():
    names = KNOWN + UNKNOWN
    graph = signatures.normalize_concepts(tf.constant(names)).numpy()
    assert [n.decode("utf-8") for n in graph] == [normalize_concept(n) for n in names]


def _numpy_vectors(names: list[str]) -> np.ndarray:
    embeddings = concept_embeddings()
    return np.stack([embeddings.vector(n) for n in names])


def test_concept_table_vectors_equal_concept_embeddings():
    table = signatures.ConceptTable(concept_embeddings())
    got = table.vectors_for(tf.constant(KNOWN)).numpy()
    np.testing.assert_allclose(got, _numpy_vectors(KNOWN), rtol=1e-6, atol=1e-6)


def test_exported_concept_vectors_equal_concept_embeddings(loaded):
    got = loaded.signatures["concept_vectors"](concepts=tf.constant(KNOWN))["word_vectors"]
    np.testing.assert_allclose(got.numpy(), _numpy_vectors(KNOWN), rtol=1e-6, atol=1e-6)
    # Batched or one at a time: the same rows.
    for name, row in zip(KNOWN, got.numpy()):
        single = loaded.signatures["concept_vectors"](concepts=tf.constant([name]))
        np.testing.assert_allclose(single["word_vectors"].numpy()[0], row, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", UNKNOWN)
def test_a_name_the_numpy_path_rejects_the_graph_rejects(loaded, name):
    with pytest.raises(UnknownConceptError):
        concept_embeddings().vector(name)
    expected = r"unknown concept word|concept name is empty after normalisation"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        signatures.ConceptTable(concept_embeddings()).vectors_for(tf.constant(["dog", name]))
    for signature, inputs in [("concept_vectors", {}),
                              ("segment_concepts", {"image": tf.constant(_image(9, 9, 3))})]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            loaded.signatures[signature](concepts=tf.constant([name, "dog"]), **inputs)

