"""The serving signatures: parity with the Keras model, concept strings, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.serving import signatures
from conceptmask_tf.serving.exporter import write_conversion_saved_model
from tests.serving.conftest import DIM, MAX_SIDE, random_image

# Strings whose normalisation is easy to get wrong (Unicode case mapping, separators).
TRICKY = ["Red_Car ", "T-shirt", "  --hot   dog''", "traffic\tlight\n", "Ünïcödé café",
          "KELVIN \u212a", "İstanbul", "a__b", "'-'", "x-ray's", "dog!!!cat", "ß", "",
          "hello\u2014world", "日本 dog", "\ufb01sh", "ΣΑΣ", "dog\u00a0cat", "-'dog'-",
          "3D printer", "ＡＢＣ", "e\u0301", "Red\x00Car", "\x00dog\x00"]


def _keras(model, image, vectors):
    outputs = model({"image": image[None].astype(np.float32), "word_vectors": vectors[None]},
                    training=False)
    return {k: np.asarray(outputs[k])[0] for k in ("mask_probs", "presence")}


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


@pytest.mark.parametrize("height, width", [(20, 28), (45, 17)])
@pytest.mark.parametrize("concepts", [["dog"], ["sky", "cloud", "red car", "t-shirt"]])
def test_serving_default_equals_the_keras_model_for_any_size_and_k(
        tiny_model, tiny_loaded, height, width, concepts):
    model, embeddings, _ = tiny_model
    image, vectors = random_image(height, width, seed=height), embeddings.vectors_for(concepts)
    served = _numpy(tiny_loaded.signatures["serving_default"](
        image=tf.constant(image), word_vectors=tf.constant(vectors)))
    expected = _keras(model, image, vectors)
    k = len(concepts)
    assert served["mask_probs"].shape == (k, height, width) and served["presence"].shape == (k,)
    np.testing.assert_allclose(served["mask_probs"], expected["mask_probs"], atol=1e-5)
    np.testing.assert_allclose(served["presence"], expected["presence"], atol=1e-5)
    assert served["masks"].dtype == np.uint8
    np.testing.assert_array_equal(served["masks"], served["mask_probs"] >= 0.5)


def test_one_trace_serves_every_size(tiny_model):
    model, embeddings, _ = tiny_model
    functions = signatures.ServingFunctions(model)
    serve = tf.function(functions.serving_default, autograph=False,
                        input_signature=functions.input_signature("serving_default"))
    for height, width, k in [(20, 28, 1), (33, 12, 3), (8, 8, 2)]:
        outputs = serve(tf.constant(random_image(height, width)),
                        tf.constant(embeddings.vectors[:k]))
        assert outputs["masks"].shape == (k, height, width)
    assert serve.experimental_get_tracing_count() == 1


def test_in_graph_normalisation_equals_normalize_concept():
    normalised = signatures.normalize_concepts(tf.constant(TRICKY)).numpy()
    assert [n.decode() for n in normalised] == [normalize_concept(s) for s in TRICKY]


def test_concept_vectors_equal_concept_embeddings(tiny_model, tiny_loaded):
    _, embeddings, _ = tiny_model
    concepts = ["Sky", "hot_dog", "traffic light", "red car", "Light  RED!", "T-Shirt",
                "cloud cat dog", "dog dog"]
    served = tiny_loaded.signatures["concept_vectors"](concepts=tf.constant(concepts))
    np.testing.assert_allclose(served["word_vectors"].numpy(), embeddings.vectors_for(concepts),
                               rtol=1e-6, atol=1e-6)


def test_phrases_compose_idf_weighted_and_vocabulary_phrases_keep_their_vector(
        tiny_model, tiny_loaded):
    _, embeddings, _ = tiny_model
    index, idf = embeddings.vocabulary.index_of, embeddings.vocabulary.idf
    served = tiny_loaded.signatures["concept_vectors"](
        concepts=tf.constant(["light red", "hot dog"]))["word_vectors"].numpy()
    by_hand = (idf[index["light"]] * embeddings.vectors[index["light"]]
               + idf[index["red"]] * embeddings.vectors[index["red"]])
    np.testing.assert_allclose(served[0], by_hand, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(served[1], embeddings.vectors[index["hot dog"]])


def test_segment_concepts_equals_serving_default_with_the_python_vectors(
        tiny_model, tiny_loaded):
    _, embeddings, _ = tiny_model
    image = tf.constant(random_image(26, 31, seed=4))
    concepts = ["dog", "Red_Car", "hot dog", "light red sky"]
    by_name = _numpy(tiny_loaded.signatures["segment_concepts"](
        image=image, concepts=tf.constant(concepts)))
    by_vector = _numpy(tiny_loaded.signatures["serving_default"](
        image=image, word_vectors=tf.constant(embeddings.vectors_for(concepts))))
    for key in signatures.OUTPUT_NAMES:
        np.testing.assert_allclose(by_name[key], by_vector[key], atol=1e-6, err_msg=key)


@pytest.mark.parametrize("concepts, message", [
    (["dog", "red zebra"], r"unknown concept word.*\[zebra \(in: red zebra\)\]"),
    (["hot"], r"unknown concept word.*\[hot \(in: hot\)\]"),
    (["dog hot", "Zebra_Car"], r"\[hot \(in: dog hot\) zebra \(in: zebra car\)\]"),
    (["?!", "dog"], r"empty after normalisation.*\[\?!\]"),
])
def test_unknown_or_empty_concepts_fail_with_the_word(tiny_loaded, concepts, message):
    for name, inputs in [("concept_vectors", {}),
                         ("segment_concepts", {"image": tf.constant(random_image(9, 9))})]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            tiny_loaded.signatures[name](concepts=tf.constant(concepts), **inputs)


def _vectors(k=2, d=DIM):
    return np.random.default_rng(0).normal(size=(k, d)).astype(np.float32)


BAD_VECTORS = [
    (_vectors()[None], r"word_vectors must have rank 2, \[K, 8\] float32; got shape\] \[1 2 8\]"),
    (_vectors(d=5), r"word_vectors must have D = 8 columns.*got shape\] \[2 5\]"),
    (_vectors(k=0), r"word_vectors is empty: K must be >= 1 concept; got shape\] \[0 8\]"),
    (np.where(np.eye(2, DIM) > 0, np.nan, _vectors()).astype(np.float32),
     r"word_vectors contain NaN or Inf"),
    (np.where(np.eye(2, DIM) > 0, -np.inf, _vectors()).astype(np.float32),
     r"word_vectors contain NaN or Inf"),
]
BAD_IMAGES = [
    (random_image(10, 12)[None],
     r"image must have rank 3, \[height, width, 3\] uint8 RGB; got shape\] \[1 10 12 3\]"),
    (random_image(10, 12)[..., 0], r"image must have rank 3.*got shape\] \[10 12\]"),
    (np.zeros((10, 12, 4), np.uint8),
     r"image must have 3 channels \(RGB\); got shape\] \[10 12 4\]"),
    (np.zeros((0, 12, 3), np.uint8),
     r"image is empty: height and width must be >= 1; got shape\] \[0 12 3\]"),
    (np.zeros((12, 0, 3), np.uint8), r"image is empty.*\[12 0 3\]"),
    (np.zeros((MAX_SIDE + 1, 5, 3), np.uint8),
     (rf"image is too large: height and width must be <= {MAX_SIDE} \(max_image_side of the "
      rf"export\); got shape\] \[{MAX_SIDE + 1} 5 3\]")),
]


@pytest.mark.parametrize("vectors, message", BAD_VECTORS)
def test_bad_word_vectors_fail_with_a_clear_message(tiny_loaded, vectors, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tiny_loaded.signatures["serving_default"](image=tf.constant(random_image(10, 12)),
                                                  word_vectors=tf.constant(vectors))


@pytest.mark.parametrize("image, message", BAD_IMAGES)
def test_bad_images_fail_with_a_clear_message(tiny_loaded, tiny_model, image, message):
    vectors = tf.constant(tiny_model[1].vectors[:2])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tiny_loaded.signatures["serving_default"](image=tf.constant(image),
                                                  word_vectors=vectors)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tiny_loaded.signatures["segment_concepts"](image=tf.constant(image),
                                                   concepts=tf.constant(["dog"]))


def test_largest_allowed_image_is_served(tiny_loaded, tiny_model):
    served = tiny_loaded.signatures["serving_default"](
        image=tf.constant(random_image(MAX_SIDE, 3)),
        word_vectors=tf.constant(tiny_model[1].vectors[:1]))
    assert served["masks"].shape == (1, MAX_SIDE, 3)


@pytest.mark.parametrize("concepts, message", [
    (np.asarray([], dtype=object), r"concepts is empty: K must be >= 1 concept"),
    (np.asarray([["dog"]], dtype=object),
     r"concepts must have rank 1, \[K\] strings; got shape\] \[1 1\]"),
])
def test_bad_concept_lists_fail_with_a_clear_message(tiny_loaded, concepts, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tiny_loaded.signatures["segment_concepts"](image=tf.constant(random_image(9, 9)),
                                                   concepts=tf.constant(concepts, tf.string))


@pytest.mark.parametrize("inputs", [
    {"image": np.zeros((9, 9, 3), np.float32), "word_vectors": _vectors()},
    {"image": np.zeros((9, 9, 3), np.uint8), "word_vectors": _vectors().astype(np.float64)},
    {"image": np.zeros((9, 9, 3), np.uint8), "word_vectors": _vectors().astype(np.int32)},
])
def test_wrong_dtypes_are_rejected_by_the_signature(tiny_loaded, inputs):
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError),
                       match="expected to be a (uint8|float) tensor"):
        tiny_loaded.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()})


def _graph_ops(concrete) -> set[str]:
    graph = concrete.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.mark.slow
def test_check_free_conversion_model_has_the_same_shapes_no_asserts_and_same_outputs(
        tiny_model, tiny_loaded, tmp_path):
    model, embeddings, _ = tiny_model
    loaded = tf.saved_model.load(write_conversion_saved_model(model, str(tmp_path / "sm")))
    assert list(loaded.signatures) == ["serving_default"]
    unchecked = loaded.signatures["serving_default"]
    for function in (unchecked, tiny_loaded.signatures["serving_default"]):  # declared alike
        specs = function.structured_input_signature[1]
        assert specs["image"].shape.as_list() == [None, None, 3]
        assert specs["word_vectors"].shape.as_list() == [None, DIM]
    # None of the checks' ops (asserts, the opaque shape, the cond) for the converters.
    assert not {"Assert", "SerializeTensor", "ParseTensor", "If", "StatelessIf"} & _graph_ops(
        unchecked)
    assert "Assert" in _graph_ops(tiny_loaded.signatures["serving_default"])
    image = tf.constant(random_image(19, 23))
    vectors = tf.constant(embeddings.vectors_for(["dog", "red car"]))
    expected = _numpy(tiny_loaded.signatures["serving_default"](image=image,
                                                                word_vectors=vectors))
    got = _numpy(unchecked(image=image, word_vectors=vectors))
    for key in signatures.OUTPUT_NAMES:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)
