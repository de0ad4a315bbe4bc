"""Box loss against hand-worked values.

Logits ln 3 and -ln 3 give exact cross-entropies: sigmoid(ln 3) = 3/4, so
xent(1, ln 3) = ln(4/3) = 0.287682, xent(0, ln 3) = ln 4 = 1.386294,
xent(1, -ln 3) = ln 4, xent(0, -ln 3) = ln(4/3), xent(z, 0) = ln 2 = 0.693147.
"""

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.losses import BoxLoss

L3 = np.log(3.0)


def test_per_sample_values_by_hand():
    box_masks = np.zeros((3, 2, 2, 2), np.float32)
    logits = np.zeros((3, 2, 2, 2), np.float32)
    valid = np.array([[1, 0], [1, 1], [0, 0]], np.float32)
    # Sample 0, concept 0: G = [[1, 0], [0, 0]], logits [[ln3, ln3], [-ln3, 0]]
    # -> (ln(4/3) + ln 4 + ln(4/3) + ln 2) / 4 = 0.663701. Concept 1 is padding with
    # wild values that must not count.
    box_masks[0, 0] = [[1, 0], [0, 0]]
    logits[0, 0] = [[L3, L3], [-L3, 0]]
    box_masks[0, 1] = 1.0
    logits[0, 1] = -50.0
    # Sample 1: concept 0 all ones at logit 0 -> ln 2 = 0.693147; concept 1 all zeros
    # at -ln3 -> ln(4/3) = 0.287682; mean over the two valid concepts = 0.490415.
    box_masks[1, 0] = 1.0
    logits[1, 1] = -L3
    # Sample 2: no valid concept -> 0.
    logits[2] = 9.0
    y_true = {"box_masks": box_masks, "concept_valid": valid}
    per_sample = BoxLoss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [0.663701, 0.490415, 0.0], atol=1e-6)
    # Batch mean: (0.663701 + 0.490415 + 0) / 3 = 0.384705.
    assert float(BoxLoss()(y_true, logits)) == pytest.approx(0.384705, abs=1e-6)


def test_large_logits_stay_finite():
    y_true = {"box_masks": np.array([[[[1.0]]]], np.float32),
              "concept_valid": np.ones((1, 1), np.float32)}
    # xent(1, -200) = 200 exactly; a naive log(sigmoid) would give inf.
    assert float(BoxLoss()(y_true, np.full((1, 1, 1, 1), -200.0, np.float32))) == \
        pytest.approx(200.0)


def test_gradient_at_logit_zero_is_sigmoid_minus_target():
    # d xent(z, x) / dx = sigmoid(x) - z = 0.5 - z at x = 0 (exactly where relu/abs
    # formulations have a zero subgradient). Two pixels, one concept: mean -> / 2.
    logits = tf.Variable(np.zeros((1, 1, 1, 2), np.float32))
    y_true = {"box_masks": np.array([[[[1.0, 0.0]]]], np.float32),
              "concept_valid": np.ones((1, 1), np.float32)}
    with tf.GradientTape() as tape:
        loss = BoxLoss()(y_true, logits)
    np.testing.assert_allclose(tape.gradient(loss, logits), [[[[-0.25, 0.25]]]], atol=1e-7)
