"""Attention of weakly supervised concepts blended with their nearest neighbour (§4.4)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class WeakConceptBlend(keras.layers.Layer):
    """alpha = theta * alpha_q + (1 - theta) * alpha_p for unsupervised concepts q.

    p is q's nearest supervised concept (`NearestSupervisedConcept`); supervised concepts
    keep their own map. The segmentation network was trained on maps of supervised
    concepts only, and this moves weaker maps towards that distribution.

    Args:
        theta: Weight of the concept's own map (1 disables the rule; chosen on validation
            data in the paper).

    Call args:
        attention: float32 [B, 2K, h, w], the K concepts' maps then their neighbours'.
        is_supervised: float32 [B, K] in {0, 1}.

    Returns:
        float32 [B, K, h, w].
    """

    def __init__(self, theta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must be in [0, 1], got {theta}")
        self.theta = float(theta)

    def call(self, attention, is_supervised):
        own, neighbour = tf.split(attention, 2, axis=1)  # 2 x [B, K, h, w]
        weight = 1.0 - (1.0 - self.theta) * (1.0 - is_supervised)  # theta or 1, [B, K]
        weight = tf.reshape(weight, tf.concat([tf.shape(weight), [1, 1]], axis=0))
        return weight * own + (1.0 - weight) * neighbour

    def compute_output_shape(self, attention_shape: tuple, is_supervised_shape: tuple) -> tuple:
        return (attention_shape[0], is_supervised_shape[1], *attention_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "theta": self.theta}
