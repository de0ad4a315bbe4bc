"""Stage 3 mask loss against hand-worked values (ln 3 logits as in test_box_loss)."""

import numpy as np
import pytest

from conceptmask_tf.losses import MaskLoss

L3 = np.log(3.0)


def test_per_sample_values_by_hand():
    mask = np.zeros((3, 2, 2, 1), np.float32)
    weight = np.zeros((3, 2, 2, 1), np.float32)
    logits = np.zeros((3, 2, 2, 1), np.float32)
    # Sample 0: mask [[1, 0], [1, 1]], weight [[1, 1], [0, 1]], logits [[ln3, ln3],
    # [-9, -ln3]] -> (ln(4/3) + ln 4 + ln 4) / 3 = 3.060271 / 3 = 1.020090 (the crowd
    # pixel, weight 0, is out of sum and count).
    mask[0, ..., 0] = [[1, 0], [1, 1]]
    weight[0, ..., 0] = [[1, 1], [0, 1]]
    logits[0, ..., 0] = [[L3, L3], [-9, -L3]]
    # Sample 1: all weights 0 -> 0.
    mask[1] = 1.0
    logits[1] = -5.0
    # Sample 2: mask all 1, weight [[2, 1], [1, 0]], logits [[0, ln3], [ln3, 7]]
    # -> (2 ln 2 + ln(4/3) + ln(4/3)) / 4 = 1.961658 / 4 = 0.490415.
    mask[2] = 1.0
    weight[2, ..., 0] = [[2, 1], [1, 0]]
    logits[2, ..., 0] = [[0, L3], [L3, 7]]
    y_true = {"mask": mask, "mask_weight": weight}
    per_sample = MaskLoss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [1.020090, 0.0, 0.490415], atol=1e-6)
    # Batch mean: 1.510505 / 3 = 0.503502.
    assert float(MaskLoss()(y_true, logits)) == pytest.approx(0.503502, abs=1e-6)


def test_positive_weight_scales_mask_pixels_only():
    # mask [[1, 0], [0, 0]], weights 1, logits 0 -> every pixel xent ln 2; positive weight
    # 4: (4 ln 2 + 3 ln 2) / 4 = 7 ln 2 / 4 = 1.213008 (normaliser: the 4 weighted pixels).
    mask = np.zeros((1, 2, 2, 1), np.float32)
    mask[0, 0, 0, 0] = 1.0
    y_true = {"mask": mask, "mask_weight": np.ones_like(mask)}
    logits = np.zeros_like(mask)
    loss = MaskLoss(positive_weight=4.0, reduction=None)(y_true, logits)
    np.testing.assert_allclose(loss, [7 * np.log(2.0) / 4], atol=1e-6)
    plain = MaskLoss(reduction=None)(y_true, logits)
    np.testing.assert_allclose(plain, [np.log(2.0)], atol=1e-6)
    assert MaskLoss.from_config(MaskLoss(positive_weight=4.0).get_config()).positive_weight == 4
    with pytest.raises(ValueError, match="positive_weight"):
        MaskLoss(positive_weight=0.0)
