"""Stage 2 image-level labels on the refined maps (not in the paper; departure 18 in docs/method.md)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ImageLabelLoss(keras.losses.Loss):
    """Multiple-instance cross-entropy of verified image-level labels on refined maps.

    A verified-present label says some location of the image shows the concept, a
    verified-absent one that none does. The image-level logit of a label is the maximum
    of its refined logits over the map, and the loss is its sigmoid cross-entropy against
    the label: an absent concept's highest location is pushed down (so its whole map), a
    present one's highest location up. Per sample: the mean over its label slots (id >= 0)
    times `weight`; a sample without a label scores 0.

    Args:
        weight: Multiplies the loss (the `--label_weight` of stage 2).

    Call args:
        y_true: {"label_present": float32 [B, L] in {0, 1},
                 "label_ids": int [B, L] vocabulary rows, -1 = padding}.
        y_pred: Refined logits float32 [B, L, m, m] of those labels.

    Returns (before reduction): float32 [B].
    """

    def __init__(self, weight: float = 1.0, name: str = "image_label_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        valid = ops.cast(y_true["label_ids"] >= 0, y_pred.dtype)  # [B, L]
        image_logits = ops.max(y_pred, axis=(2, 3))  # [B, L]
        per_label = sigmoid_cross_entropy(y_true["label_present"], image_logits)
        return self.weight * ops.divide_no_nan(ops.sum(per_label * valid, axis=1),
                                               ops.sum(valid, axis=1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight": self.weight}
