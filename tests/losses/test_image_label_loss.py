"""Image-level label loss against hand-worked values.

sigmoid(ln 3) = 3/4, so xent(1, ln 3) = ln(4/3) = 0.287682, xent(0, ln 3) = ln 4 =
1.386294, xent(0, -ln 3) = ln(4/3), xent(1, -ln 3) = ln 4.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.losses import ImageLabelLoss

L3 = np.log(3.0)


def _batch():
    logits = np.full((3, 2, 2, 2), -9.0, np.float32)
    # Sample 0, label 0 present: its maximum location is ln 3 -> ln(4/3) = 0.287682 (the
    # other locations at -9 do not matter). Label 1 absent, maximum -ln 3 -> ln(4/3).
    logits[0, 0, 1, 0] = L3
    logits[0, 1, 0, 1] = -L3
    # Sample 1, label 0 absent but one location at ln 3 -> ln 4 = 1.386294; label 1 is
    # padding with a wild map that must not count.
    logits[1, 0, 0, 0] = L3
    logits[1, 1] = 50.0
    # Sample 2: no label -> 0.
    logits[2] = 7.0
    y_true = {"label_present": np.array([[1, 0], [0, 1], [1, 1]], np.float32),
              "label_ids": np.array([[4, 9], [2, -1], [-1, -1]], np.int32)}
    return y_true, logits


def test_per_sample_values_by_hand():
    y_true, logits = _batch()
    per_sample = ImageLabelLoss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [0.287682, 1.386294, 0.0], atol=1e-6)
    doubled = ImageLabelLoss(weight=2.0, reduction=None)(y_true, logits)
    np.testing.assert_allclose(doubled, 2 * np.asarray(per_sample), atol=1e-6)
    # Batch mean: (0.287682 + 1.386294 + 0) / 3 = 0.557992.
    assert float(ImageLabelLoss()(y_true, logits)) == pytest.approx(0.557992, abs=1e-6)


def test_an_absent_label_pushes_down_only_its_highest_location():
    y_true, logits = _batch()
    logits = keras.Variable(logits)
    with tf.GradientTape() as tape:
        loss = ImageLabelLoss(reduction=None)(y_true, logits)[1]
    grad = tape.gradient(loss, logits).numpy()
    # d xent(0, x) / dx = sigmoid(x) = 3/4 at the maximum, 0 elsewhere and in padding.
    assert grad[1, 0, 0, 0] == pytest.approx(0.75, abs=1e-6)
    assert np.count_nonzero(grad) == 1


def test_config_round_trip():
    loss = ImageLabelLoss(weight=0.5)
    clone = ImageLabelLoss.from_config(loss.get_config())
    assert clone.weight == 0.5 and clone.name == "image_label_loss"
