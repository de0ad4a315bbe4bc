"""Spatial discrimination loss against hand-worked values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.losses import SpatialDiscriminationLoss

LN2 = np.log(2.0)
LN4 = np.log(4.0)

# Overlap-matrix concepts c0, c1, c2, c3 at vocabulary rows 2, 0, none (dropped) and 1.
GAMMA = np.array([[0.0, 0.6, 0.5, 0.2],
                  [0.6, 0.0, 0.0, 0.0],
                  [0.9, 0.9, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0]], np.float32)
ROWS = np.array([2, 0, -1, 1])
# Without c2, the rows over (c0, c1, c3) are c0 [0, 0.6, 0.2] (sum 0.8), c1 [0.6, 0, 0]
# (sum 0.6), c3 [0, 0, 0] (no negative). Normalised by the row sums (gamma-weighted mean
# over each concept's negatives): c0 -> [0, 0.75, 0.25], c1 -> [1, 0, 0], c3 -> 0.


def _loss(**kwargs) -> SpatialDiscriminationLoss:
    return SpatialDiscriminationLoss(GAMMA, ROWS, vocabulary_size=4, **kwargs)


def test_candidates_are_the_concepts_that_are_a_negative_somewhere():
    # Columns c0 (row 2), c1 (row 0) and c3 (row 1) have an entry > 0 (c2 is dropped).
    np.testing.assert_array_equal(_loss().candidate_ids, [2, 0, 1])
    only_one = SpatialDiscriminationLoss(np.array([[0, 0.7], [0, 0]]), [5, 1])
    np.testing.assert_array_equal(only_one.candidate_ids, [1])  # column of row 1 only


def test_per_sample_values_by_hand():
    # Slots (K = 3, m = 2): the third slot is padding (id -1) with a full mask.
    # Candidates j0 = row 2 (c0), j1 = row 0 (c1), j2 = row 1 (c3).
    ids = np.array([[2, 3, -1], [2, 0, -1], [2, 0, -1], [1, 0, -1]], np.float32)
    valid = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0]], np.float32)
    box_masks = np.zeros((4, 3, 2, 2), np.float32)
    box_masks[:, 2] = 1.0
    logits = np.zeros((4, 3, 2, 2), np.float32)
    # Sample 0: slot 0 is row 2 (c0), G = [[1, 1], [0, 0]]; slot 1 is row 3, which has
    # no gamma row (it counts as a valid concept with nothing to add).
    # j1 (weight 0.75) logits [[0, ln3], [5, 5]]: ln 2 + ln 4 = 3 ln 2 on G;
    # j2 (weight 0.25) logits [[ln3, ln3], [9, 9]]: 2 ln 4 = 4 ln 2 on G; j0: no negative.
    # 0.75 * 3 ln 2 + 0.25 * 4 ln 2 = 3.25 ln 2 = 2.252728; / 4 pixels / 2 valid = 0.281591.
    # (Unnormalised: 0.6 * 3 ln 2 + 0.2 * 4 ln 2 = 2.6 ln 2, i.e. 0.8 = sum_j gamma_0j times
    # as much.)
    box_masks[0, 0] = [[1, 1], [0, 0]]
    box_masks[0, 1] = [[0, 0], [1, 1]]
    logits[0, 1] = [[0, np.log(3.0)], [5, 5]]
    logits[0, 2] = [[np.log(3.0), np.log(3.0)], [9, 9]]
    logits[0, 0] = 7.0  # j0 has no negative pixel here
    # Sample 1: slot 0 row 2 (c0), G0 = [[1, 1], [0, 0]]; slot 1 row 0 (c1),
    # G1 = [[0, 1], [0, 1]]. Logits 0 -> ln 2 per pixel.
    # j0 (c0): 1.0 * G1 minus its own box G0 -> [[0, 0], [0, 1]]: 1;
    # j1 (c1): 0.75 * G0 minus its own box G1 -> [[.75, 0], [0, 0]]: 0.75;
    # j2 (c3, not a box of the image): 0.25 * G0: 0.5.
    # (1 + 0.75 + 0.5) ln 2 = 2.25 ln 2 = 1.559581; / 4 / 2 = 0.194948.
    box_masks[1, 0] = [[1, 1], [0, 0]]
    box_masks[1, 1] = [[0, 1], [0, 1]]
    # Sample 2: no valid concept -> 0.
    box_masks[2, :2] = 1.0
    # Sample 3: slot 0 row 1 (c3, no negative: contributes 0 but counts), slot 1 row 0 (c1),
    # G1 = [[1, 0], [0, 0]]: j0 (c0) 1.0 * G1 at logit 0 -> ln 2; / 4 / 2 = 0.086643.
    box_masks[3, 0] = 1.0
    box_masks[3, 1] = [[1, 0], [0, 0]]
    y_true = {"box_masks": box_masks, "concept_valid": valid, "concept_ids": ids}
    per_sample = _loss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [0.281591, 0.194948, 0.0, 0.086643], atol=1e-6)
    weighted = _loss(weight=2.0, reduction=None)(y_true, logits)
    np.testing.assert_allclose(weighted, 2 * np.asarray(per_sample), atol=1e-6)


def test_the_loss_does_not_grow_with_the_number_of_negatives():
    # One box concept (row 0) with 1 or with 4 negatives (gamma 0.3 .. 0.9), every
    # candidate at logit 0: sum_j w_j * |G| ln 2 / 4 with sum_j w_j = 1 -> 2 ln 2 / 4 for
    # a 2-pixel box, whatever the number of negatives (unnormalised: 0.3 vs 2.4 times that).
    box_masks = np.zeros((1, 1, 2, 2), np.float32)
    box_masks[0, 0, 0] = 1.0
    y_true = {"box_masks": box_masks, "concept_valid": np.ones((1, 1), np.float32),
              "concept_ids": np.zeros((1, 1), np.float32)}
    for negatives in ([0.3], [0.3, 0.5, 0.7, 0.9]):
        gamma = np.zeros((5, 5), np.float32)
        gamma[0, 1:1 + len(negatives)] = negatives
        loss = SpatialDiscriminationLoss(gamma)
        logits = np.zeros((1, len(negatives), 2, 2), np.float32)
        assert float(loss(y_true, logits)) == pytest.approx(2 * LN2 / 4, rel=1e-6)


def test_gradient_pushes_the_negative_map_down_only_inside_the_positive_box():
    ids = np.array([[2, -1]], np.float32)
    valid = np.array([[1, 0]], np.float32)
    box_masks = np.zeros((1, 2, 2, 2), np.float32)
    box_masks[0, 0] = [[1, 0], [0, 0]]
    logits = tf.Variable(np.zeros((1, 3, 2, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = _loss()({"box_masks": box_masks, "concept_valid": valid, "concept_ids": ids},
                       logits)
    gradient = np.asarray(tape.gradient(loss, logits))
    # d/dx xent(0, x) = sigmoid(x) = 0.5 at 0; normalised weights 0.75 (j1) and 0.25 (j2)
    # / 4 pixels / 1 concept.
    expected = np.zeros((1, 3, 2, 2))
    expected[0, 1, 0, 0] = 0.75 * 0.5 / 4
    expected[0, 2, 0, 0] = 0.25 * 0.5 / 4
    np.testing.assert_allclose(gradient, expected, atol=1e-7)


def test_bad_gamma_is_refused_and_config_round_trips():
    with pytest.raises(ValueError, match="square"):
        SpatialDiscriminationLoss(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="vocabulary_size"):
        SpatialDiscriminationLoss(GAMMA, ROWS, vocabulary_size=2)
    clone = keras.losses.deserialize(keras.losses.serialize(_loss(weight=0.5)))
    np.testing.assert_array_equal(clone.candidate_ids, [2, 0, 1])
    assert clone.weight == 0.5
