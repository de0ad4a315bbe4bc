"""ConceptTagScores: hand-worked pooling, shapes and config round-trip."""

import keras
import numpy as np
import pytest

from conceptmask_tf.models import ConceptTagScores


def test_logits_pool_per_location_cosines_by_hand():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], np.float32)  # last: zero
    # 1 x 2 map: location 0 along concept 0, location 1 at 45 degrees.
    embedding_map = np.array([[[[3.0, 0.0], [1.0, 1.0]]]], np.float32)  # [1, 1, 2, 2]
    layer = ConceptTagScores(vectors, temperature=0.5, initial_scale=2.0, initial_bias=0.25)
    logits = keras.ops.convert_to_numpy(layer(embedding_map))
    c = 1 / np.sqrt(2)

    def pooled(cosines):
        weights = np.exp(np.array(cosines) / 0.5)
        return float(np.sum(weights / weights.sum() * cosines))

    expected = [2.0 * (pooled([1.0, c]) - 0.25), 2.0 * (pooled([0.0, c]) - 0.25),
                2.0 * (0.0 - 0.25)]
    np.testing.assert_allclose(logits, [expected], rtol=1e-5)


def test_small_temperature_approaches_the_maximum():
    vectors = np.eye(3, dtype=np.float32)
    rng = np.random.default_rng(0)
    embedding_map = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    layer = ConceptTagScores(vectors, temperature=1e-3, initial_scale=1.0, initial_bias=0.0)
    unit = embedding_map / np.linalg.norm(embedding_map, axis=-1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(embedding_map)),
                               unit.max(axis=(1, 2)), atol=1e-3)


def test_scale_and_bias_train_and_vectors_do_not():
    layer = ConceptTagScores(np.eye(2, dtype=np.float32))
    layer.build((None, 2, 2, 2))
    assert sorted(w.name for w in layer.trainable_weights) == ["bias", "scale"]
    assert [w.name for w in layer.non_trainable_weights] == ["unit_vectors"]


def test_config_round_trip_keeps_outputs():
    vectors = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    layer = ConceptTagScores(vectors, temperature=0.2)
    again = ConceptTagScores.from_config(layer.get_config())
    embedding_map = np.random.default_rng(1).normal(size=(1, 3, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(embedding_map)),
                               keras.ops.convert_to_numpy(layer(embedding_map)), rtol=1e-6)


def test_bad_settings():
    with pytest.raises(ValueError, match="temperature"):
        ConceptTagScores(np.eye(2), temperature=0.0)
    with pytest.raises(ValueError, match="word_vectors"):
        ConceptTagScores(np.ones(3))
