"""Stage 2 network: ids and vectors agree, padding, fine-tuning, round-trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.models import RefinementModel
from tests.models.tiny import DIM, assert_same_outputs, images, refinement_model, word_vectors

IDS = np.array([[3, 7, -1], [0, -1, -1]], np.int32)


def test_outputs_are_concept_major_at_the_backbone_stride():
    model = refinement_model()
    out = model({"image": images(2), "concept_ids": IDS}, training=False)
    for key in ("logits", "attention", "coarse"):
        assert out[key].shape == (2, 3, 4, 4), key  # 32 px / stride 8
    assert out["embedding"].shape == (2, DIM)
    np.testing.assert_allclose(out["attention"], tf.sigmoid(out["logits"]), atol=1e-6)
    assert model.output_stride == 8


def test_ids_input_equals_vectors_input_with_the_same_weights():
    by_id = refinement_model("ids")
    by_vector = RefinementModel.from_config({**by_id.get_config(), "concept_input": "vectors"})
    by_vector.set_weights(by_id.get_weights())
    vectors = word_vectors()[np.maximum(IDS, 0)] * (IDS >= 0)[..., None]  # [2, 3, D]
    x = images(2)
    assert_same_outputs(by_vector({"image": x, "concept_vectors": vectors}, training=False),
                        by_id({"image": x, "concept_ids": IDS}, training=False), atol=1e-6)


def test_coarse_output_is_the_cosine_of_the_finetuned_embedding_map():
    model = refinement_model()
    x = images(2)
    out = model({"image": x, "concept_ids": IDS}, training=False)
    embedding_map = np.asarray(model.embedding(x, training=False)["embedding_map"])  # [2,4,4,D]
    vector = word_vectors()[7]
    expected = (embedding_map @ vector / np.linalg.norm(embedding_map, axis=-1)
                / np.linalg.norm(vector))
    np.testing.assert_allclose(out["coarse"][0, 1], expected[0], atol=1e-5)


def test_padding_slots_do_not_change_real_concepts():
    model = refinement_model()
    x = images(2)
    padded = model({"image": x, "concept_ids": IDS}, training=False)["logits"]
    alone = model({"image": x, "concept_ids": IDS[:, :1]}, training=False)["logits"]
    np.testing.assert_allclose(alone[:, 0], padded[:, 0], atol=1e-6)


def test_refine_method_reproduces_the_model_graph():
    model = refinement_model()
    x = images(2)
    vectors = model.vocabulary.lookup(IDS)
    logits, coarse = model.refine(model.embedding(x, training=False)["embedding_map"], vectors)
    out = model({"image": x, "concept_ids": IDS}, training=False)
    np.testing.assert_allclose(np.transpose(logits, (0, 3, 1, 2)), out["logits"], atol=1e-6)
    np.testing.assert_allclose(np.transpose(coarse, (0, 3, 1, 2)), out["coarse"], atol=1e-6)


def test_embedding_is_finetuned_but_the_vocabulary_kernel_is_fixed():
    model = refinement_model()
    trainable = {id(w) for w in model.trainable_weights}
    assert id(model.vocabulary.word_vectors) not in trainable
    assert all(id(w) in trainable for w in model.embedding.backbone.trainable_weights)
    with tf.GradientTape() as tape:
        logits = model({"image": images(2), "concept_ids": IDS}, training=True)["logits"]
        loss = tf.reduce_sum(logits)
    kernel = model.embedding.backbone.get_layer("conv0").kernel
    gradient = tape.gradient(loss, kernel)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_unknown_concept_input_is_refused():
    with pytest.raises(ValueError, match="concept_input"):
        RefinementModel.from_config({**refinement_model().get_config(), "concept_input": "x"})


@pytest.mark.parametrize("location_term", [False, True])
def test_save_and_load_keep_predictions_and_word_vectors(tmp_path, location_term):
    model = refinement_model(location_term=location_term)
    path = str(tmp_path / "refinement.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, RefinementModel)
    assert loaded.location_term is location_term
    np.testing.assert_array_equal(loaded.vocabulary.word_vectors, word_vectors())
    inputs = {"image": images(2), "concept_ids": IDS}
    assert_same_outputs(loaded(inputs, training=False), model(inputs, training=False))


def test_predict_on_a_pipeline_shaped_dataset_matches_direct_calls():
    # Batches as `refinement_dataset` yields them: (features, targets); predict uses the
    # features and ignores the targets.
    model = refinement_model()
    x = images(4, seed=2)
    ids = np.array([[3, 7, -1], [0, -1, -1], [11, 2, 5], [1, -1, -1]], np.int32)
    targets = {"box_masks": np.zeros((4, 3, 4, 4), np.float32),
               "concept_valid": (ids >= 0).astype(np.float32)}
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"image": x, "concept_ids": ids}, targets)).batch(2)
    predicted = model.predict(dataset, verbose=0)
    assert_same_outputs(predicted, model({"image": x, "concept_ids": ids}, training=False),
                        atol=1e-5)
