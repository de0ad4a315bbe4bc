"""Spatial discrimination loss against hand-worked values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.losses import SpatialDiscriminationLoss

LN2 = np.log(2.0)
LN4 = np.log(4.0)

# Overlap-matrix concepts c0, c1, c2 at vocabulary rows 2, 0 and none (dropped).
GAMMA = np.array([[0.0, 0.8, 0.5],
                  [0.6, 0.0, 0.0],
                  [0.9, 0.9, 0.0]], np.float32)
ROWS = np.array([2, 0, -1])


def _loss(**kwargs) -> SpatialDiscriminationLoss:
    return SpatialDiscriminationLoss(GAMMA, ROWS, vocabulary_size=4, **kwargs)


def test_candidates_are_the_concepts_that_are_a_negative_somewhere():
    # Without c2, gamma is [[0, 0.8], [0.6, 0]]: both columns have an entry > 0.
    np.testing.assert_array_equal(_loss().candidate_ids, [2, 0])
    only_one = SpatialDiscriminationLoss(np.array([[0, 0.7], [0, 0]]), [5, 1])
    np.testing.assert_array_equal(only_one.candidate_ids, [1])  # column of row 1 only


def test_per_sample_values_by_hand():
    # Slots (K = 3, m = 2): the third slot is padding (id -1) with a full mask.
    ids = np.array([[2, 3, -1], [2, 0, -1], [2, 0, -1]], np.float32)
    valid = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], np.float32)
    box_masks = np.zeros((3, 3, 2, 2), np.float32)
    box_masks[:, 2] = 1.0
    logits = np.zeros((3, 2, 2, 2), np.float32)  # candidates j0 = row 2, j1 = row 0
    # Sample 0: slot 0 is row 2 (c0), G = [[1, 1], [0, 0]]; slot 1 is row 3, which has
    # no gamma row. Negatives: j1 (row 0) gets 0.8 * G0 = [[.8, .8], [0, 0]]; j0 none.
    # j1 logits [[0, ln3], [5, 5]]: 0.8 * (ln 2 + ln 4) = 2.4 ln 2 = 1.663553;
    # / 4 pixels / 2 valid concepts = 0.207944.
    box_masks[0, 0] = [[1, 1], [0, 0]]
    box_masks[0, 1] = [[0, 0], [1, 1]]
    logits[0, 1] = [[0, np.log(3.0)], [5, 5]]
    logits[0, 0] = 7.0  # j0 has no negative pixel here
    # Sample 1: slot 0 row 2 (c0), G0 = [[1, 1], [0, 0]]; slot 1 row 0 (c1),
    # G1 = [[0, 1], [0, 1]]. j0 (row 2): 0.6 * G1 minus its own box G0 -> [[0, 0], [0, .6]];
    # j1 (row 0): 0.8 * G0 minus its own box G1 -> [[.8, 0], [0, 0]]. Logits 0 -> ln 2:
    # (0.6 + 0.8) ln 2 = 0.970406; / 4 / 2 = 0.121301.
    box_masks[1, 0] = [[1, 1], [0, 0]]
    box_masks[1, 1] = [[0, 1], [0, 1]]
    # Sample 2: no valid concept -> 0.
    box_masks[2, :2] = 1.0
    y_true = {"box_masks": box_masks, "concept_valid": valid, "concept_ids": ids}
    per_sample = _loss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [0.207944, 0.121301, 0.0], atol=1e-6)
    weighted = _loss(weight=2.0, reduction=None)(y_true, logits)
    np.testing.assert_allclose(weighted, 2 * np.asarray(per_sample), atol=1e-6)


def test_gradient_pushes_the_negative_map_down_only_inside_the_positive_box():
    ids = np.array([[2, -1]], np.float32)
    valid = np.array([[1, 0]], np.float32)
    box_masks = np.zeros((1, 2, 2, 2), np.float32)
    box_masks[0, 0] = [[1, 0], [0, 0]]
    logits = tf.Variable(np.zeros((1, 2, 2, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = _loss()({"box_masks": box_masks, "concept_valid": valid, "concept_ids": ids},
                       logits)
    gradient = np.asarray(tape.gradient(loss, logits))
    # d/dx xent(0, x) = sigmoid(x) = 0.5 at 0; weight 0.8 / 4 pixels / 1 concept.
    expected = np.zeros((1, 2, 2, 2))
    expected[0, 1, 0, 0] = 0.8 * 0.5 / 4
    np.testing.assert_allclose(gradient, expected, atol=1e-7)


def test_bad_gamma_is_refused_and_config_round_trips():
    with pytest.raises(ValueError, match="square"):
        SpatialDiscriminationLoss(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="vocabulary_size"):
        SpatialDiscriminationLoss(GAMMA, ROWS, vocabulary_size=2)
    clone = keras.losses.deserialize(keras.losses.serialize(_loss(weight=0.5)))
    np.testing.assert_array_equal(clone.candidate_ids, [2, 0])
    assert clone.weight == 0.5
