"""Stage 3 mask loss (paper §4.3): weighted per-pixel sigmoid cross-entropy."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class MaskLoss(keras.losses.Loss):
    """Per sample: sum_p w_p xent(mask_p, logit_p) / sum_p w_p (0 when all weights are 0).

    Pixels with mask_weight 0 (crowd regions) are ignored; the mean runs over the
    weighted pixels, so ignoring pixels does not shrink the loss.

    `positive_weight` multiplies the cross-entropy of mask pixels (w_p becomes
    mask_weight * positive_weight on the mask) while the normaliser stays sum_p
    mask_weight. An addition to the paper: small concepts cover a few % of the image, and
    with weight 1 a network whose attention is uncertain keeps every probability under
    the 0.5 that binarises the masks.

    Args:
        positive_weight: Weight of mask pixels (1 = plain cross-entropy).

    Call args:
        y_true: {"mask": float32 [B, ...] in {0, 1}, "mask_weight": float32 [B, ...]},
            e.g. [B, S, S, 1] (the stage-3 targets).
        y_pred: Mask logits of the same shape.

    Returns (before reduction): float32 [B].
    """

    def __init__(self, positive_weight: float = 1.0, name: str = "mask_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if positive_weight <= 0:
            raise ValueError(f"positive_weight must be > 0, got {positive_weight}")
        self.positive_weight = float(positive_weight)

    def call(self, y_true, y_pred):
        weight = y_true["mask_weight"]
        mask = y_true["mask"]
        boost = 1.0 + (self.positive_weight - 1.0) * mask
        xent = sigmoid_cross_entropy(mask, y_pred) * weight * boost
        axes = tuple(range(1, len(y_pred.shape)))
        return ops.divide_no_nan(ops.sum(xent, axis=axes), ops.sum(weight, axis=axes))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "positive_weight": self.positive_weight}
