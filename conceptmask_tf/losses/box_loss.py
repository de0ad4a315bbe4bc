"""Stage 2 box supervision (paper §4.2, first term of eq. 2)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.losses._sigmoid import sigmoid_cross_entropy


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class BoxLoss(keras.losses.Loss):
    """Sigmoid cross-entropy between refined maps and box masks G, over valid concepts.

    Per sample: the mean over its valid concepts (concept_valid = 1) of the pixel-mean
    cross-entropy of each concept's map; padding and invalid slots contribute nothing,
    and a sample without a valid concept scores 0.

    Call args:
        y_true: {"box_masks": float32 [B, K, m, m] in {0, 1},
                 "concept_valid": float32 [B, K] in {0, 1}} (the stage-2 targets).
        y_pred: Refined logits float32 [B, K, m, m] (`RefinementModel` "logits").

    Returns (before reduction): float32 [B].
    """

    def __init__(self, name: str = "box_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        valid = y_true["concept_valid"]  # [B, K]
        per_concept = ops.mean(sigmoid_cross_entropy(y_true["box_masks"], y_pred),
                               axis=(2, 3))  # [B, K]
        return ops.divide_no_nan(ops.sum(per_concept * valid, axis=1),
                                 ops.sum(valid, axis=1))
