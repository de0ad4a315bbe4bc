"""Weak-concept rule (paper §4.4) layers, by hand."""

import keras
import numpy as np
import pytest

from conceptmask_tf.models import NearestSupervisedConcept, WeakConceptBlend


def test_nearest_supervised_concept_by_hand():
    supervised = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    layer = NearestSupervisedConcept(2, 2, supervised)
    # [3, 0.1]: cosines 0.9994 and 0.033 -> concept 0, not itself supervised.
    # [0, 5]: same direction as [0, 2] -> concept 1, cosine 1 -> supervised.
    # [-1, 0.5]: cosines -0.894 and 0.447 -> concept 1.
    queries = np.array([[[3.0, 0.1], [0.0, 5.0], [-1.0, 0.5]]], np.float32)
    neighbours, is_supervised = layer(queries)
    np.testing.assert_array_equal(neighbours, [[[1, 0], [0, 2], [0, 2]]])
    np.testing.assert_array_equal(is_supervised, [[0, 1, 0]])
    assert layer.trainable_weights == []


def test_nearest_supervised_concept_accepts_zero_concepts():
    layer = NearestSupervisedConcept(2, 2, np.eye(2, dtype=np.float32))
    neighbours, is_supervised = layer(np.zeros((1, 0, 2), np.float32))
    assert tuple(neighbours.shape) == (1, 0, 2)
    assert tuple(is_supervised.shape) == (1, 0)


def test_weak_blend_by_hand():
    # K = 2; concept 0 weak, concept 1 supervised; theta 0.25.
    own = np.array([[[[0.8]], [[0.6]]]], np.float32)  # [1, 2, 1, 1]
    neighbour = np.array([[[[0.4]], [[0.0]]]], np.float32)
    out = WeakConceptBlend(0.25)(np.concatenate([own, neighbour], axis=1),
                                 np.array([[0.0, 1.0]], np.float32))
    # 0.25 * 0.8 + 0.75 * 0.4 = 0.5; supervised keeps 0.6.
    np.testing.assert_allclose(np.asarray(out)[0, :, 0, 0], [0.5, 0.6], atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="theta"):
        WeakConceptBlend(1.5)
    with pytest.raises(ValueError, match="at least one"):
        NearestSupervisedConcept(0, 4)
    with pytest.raises(ValueError, match="supervised_vectors must be"):
        NearestSupervisedConcept(2, 4, np.zeros((3, 4)))


def test_config_round_trips():
    blend = keras.layers.deserialize(keras.layers.serialize(WeakConceptBlend(0.3)))
    assert blend.theta == 0.3
    nearest = keras.layers.deserialize(keras.layers.serialize(NearestSupervisedConcept(3, 4)))
    assert (nearest.num_supervised, nearest.embedding_dim) == (3, 4)
