"""Image-level presence of a concept from the pooled image embedding."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.models.tensor_ops import l2_normalize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class PresenceScore(keras.layers.Layer):
    """presence = sigmoid(scale * (cos(e, w) - threshold)) per concept.

    e is the image's pooled embedding (stage 1 output). `threshold` and `scale` are
    non-trainable weights so a calibration step can set them on a trained model
    (`set_calibration`); they are saved with the weights, and the config reports the
    current values.

    Args:
        threshold: Cosine at which presence is 0.5.
        scale: Slope of the sigmoid.

    Call args:
        embedding: float32 [B, D]; concept_vectors: float32 [B, K, D].

    Returns:
        (similarity float32 [B, K] cosine, presence float32 [B, K] in (0, 1)).
    """

    def __init__(self, threshold: float = 0.0, scale: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = self.add_weight(shape=(), trainable=False, name="threshold",
                                         initializer=keras.initializers.Constant(threshold))
        self.scale = self.add_weight(shape=(), trainable=False, name="scale",
                                     initializer=keras.initializers.Constant(scale))

    def set_calibration(self, threshold: float, scale: float) -> None:
        """Sets the calibrated threshold and scale (saved with the weights)."""
        self.threshold.assign(threshold)
        self.scale.assign(scale)

    def call(self, embedding, concept_vectors):
        similarity = ops.einsum("bd,bkd->bk", l2_normalize(embedding),
                                l2_normalize(concept_vectors))
        return similarity, ops.sigmoid(self.scale * (similarity - self.threshold))

    def compute_output_spec(self, embedding, concept_vectors):
        shape = concept_vectors.shape[:2]
        return keras.KerasTensor(shape), keras.KerasTensor(shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "threshold": float(ops.convert_to_numpy(self.threshold)),
                "scale": float(ops.convert_to_numpy(self.scale))}
