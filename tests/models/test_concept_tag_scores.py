"""ConceptTagScores: hand-worked pooling, weights and config round-trip."""

import keras
import numpy as np
import pytest

from conceptmask_tf.models import ConceptTagScores


def _scores(layer, embedding_map):
    return keras.ops.convert_to_numpy(layer(embedding_map))


def test_logits_pool_per_location_cosines_by_hand():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], np.float32)  # last: zero
    # 1 x 2 map: location 0 along concept 0, location 1 at 45 degrees.
    embedding_map = np.array([[[[3.0, 0.0], [1.0, 1.0]]]], np.float32)  # [1, 1, 2, 2]
    layer = ConceptTagScores(3, 2, vectors, temperature=0.5, initial_scale=2.0,
                             initial_bias=0.25)
    c = 1 / np.sqrt(2)

    def pooled(cosines):
        weights = np.exp(np.array(cosines) / 0.5)
        return float(np.sum(weights / weights.sum() * cosines))

    expected = [2.0 * (pooled([1.0, c]) - 0.25), 2.0 * (pooled([0.0, c]) - 0.25),
                2.0 * (0.0 - 0.25)]
    np.testing.assert_allclose(_scores(layer, embedding_map), [expected], rtol=1e-5)


def test_small_temperature_approaches_the_maximum():
    rng = np.random.default_rng(0)
    embedding_map = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    layer = ConceptTagScores(3, 3, np.eye(3, dtype=np.float32), temperature=1e-3,
                             initial_scale=1.0, initial_bias=0.0)
    unit = embedding_map / np.linalg.norm(embedding_map, axis=-1, keepdims=True)
    np.testing.assert_allclose(_scores(layer, embedding_map), unit.max(axis=(1, 2)),
                               atol=1e-3)


def test_scale_and_bias_train_and_word_vectors_do_not():
    layer = ConceptTagScores(2, 2, np.eye(2, dtype=np.float32))
    layer(np.ones((1, 2, 2, 2), np.float32))
    assert sorted(w.name for w in layer.trainable_weights) == ["bias", "scale"]
    assert [w.name for w in layer.non_trainable_weights] == ["word_vectors"]


def test_config_round_trip_keeps_outputs_with_the_weights():
    vectors = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    layer = ConceptTagScores(2, 2, vectors, temperature=0.2)
    embedding_map = np.random.default_rng(1).normal(size=(1, 3, 3, 2)).astype(np.float32)
    expected = _scores(layer, embedding_map)
    again = ConceptTagScores.from_config(layer.get_config())
    assert "word_vectors" not in again.get_config()  # saved as a weight, not in the config
    again(embedding_map)
    again.set_weights(layer.get_weights())
    np.testing.assert_allclose(_scores(again, embedding_map), expected, rtol=1e-6)


def test_bad_settings():
    with pytest.raises(ValueError, match="temperature"):
        ConceptTagScores(2, 2, np.eye(2), temperature=0.0)
    with pytest.raises(ValueError, match="word_vectors"):
        ConceptTagScores(2, 2, np.ones((3, 2)))
