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

    theta is a non-trainable weight, like `PresenceScore`'s threshold: calibration sets it
    on a built model (`set_theta`), traced functions see the new value without retracing,
    and it is saved with the weights; the config reports the current value.

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
        _check_theta(theta)
        self.theta = self.add_weight(shape=(), trainable=False, name="theta",
                                     initializer=keras.initializers.Constant(float(theta)))

    def set_theta(self, theta: float) -> None:
        """Sets the calibrated theta (saved with the weights)."""
        _check_theta(theta)
        self.theta.assign(float(theta))

    def theta_value(self) -> float:
        """theta as a Python float."""
        return float(keras.ops.convert_to_numpy(self.theta))

    def call(self, attention, is_supervised):
        own, neighbour = tf.split(attention, 2, axis=1)  # 2 x [B, K, h, w]
        theta = tf.cast(self.theta, attention.dtype)
        weight = 1.0 - (1.0 - theta) * (1.0 - is_supervised)  # theta or 1, [B, K]
        weight = tf.reshape(weight, tf.concat([tf.shape(weight), [1, 1]], axis=0))
        return weight * own + (1.0 - weight) * neighbour

    def compute_output_shape(self, attention_shape: tuple, is_supervised_shape: tuple) -> tuple:
        return (attention_shape[0], is_supervised_shape[1], *attention_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "theta": self.theta_value()}


def _check_theta(theta: float) -> None:
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
