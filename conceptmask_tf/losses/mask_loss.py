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

    Call args:
        y_true: {"mask": float32 [B, ...] in {0, 1}, "mask_weight": float32 [B, ...]},
            e.g. [B, S, S, 1] (the stage-3 targets).
        y_pred: Mask logits of the same shape.

    Returns (before reduction): float32 [B].
    """

    def __init__(self, name: str = "mask_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        weight = y_true["mask_weight"]
        xent = sigmoid_cross_entropy(y_true["mask"], y_pred) * weight
        axes = tuple(range(1, len(y_pred.shape)))
        return ops.divide_no_nan(ops.sum(xent, axis=axes), ops.sum(weight, axis=axes))
