"""Tag scores of every vocabulary concept from an embedding map (stage-1 tag loss)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptTagScores(keras.layers.Layer):
    """Image-level tag logits from the best-matching locations of each concept.

    For every vocabulary concept v with unit word vector w_v, the per-location cosine
    c_ij = cos(e_ij, w_v) is pooled with a softmax over locations at temperature tau,
    s_v = sum_ij softmax(c / tau)_ij c_ij (a smooth maximum: tau -> 0 gives max_ij c_ij),
    and the logit is scale * (s_v - bias), with scale and bias learned.

    Used only in training (`conceptmask_tf.losses.TagLoss`, a departure from the paper;
    see `EmbeddingConfig.tag_loss_weight`): a tag is explained when some location of the
    embedding map points at its word vector, which is what the coarse attention map
    <e_ij, w> (eq. 1) then shows. The soft-topic cosine loss alone is met as well by a
    map that repeats the image's topic at every location.

    Args:
        word_vectors: float [V, D], row v = concept v (normalised here; zero rows stay 0).
        temperature: tau > 0.
        initial_scale: Starting value of the learned scale.
        initial_bias: Starting value of the learned bias (a cosine).
        **kwargs: Layer arguments.

    Call args:
        embedding_map: float32 [B, h, w, D].

    Returns:
        float32 [B, V] logits.
    """

    def __init__(self, word_vectors: np.ndarray | list, temperature: float = 0.1,
                 initial_scale: float = 10.0, initial_bias: float = 0.3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        vectors = np.asarray(word_vectors, np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"word_vectors must be [V, D], got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._unit_vectors = vectors / np.maximum(norms, EPSILON)
        self.temperature = float(temperature)
        self.initial_scale = float(initial_scale)
        self.initial_bias = float(initial_bias)

    def build(self, input_shape: tuple) -> None:
        self.unit_vectors = self.add_weight(
            name="unit_vectors", shape=self._unit_vectors.shape, trainable=False,
            initializer=keras.initializers.Constant(self._unit_vectors))
        self.scale = self.add_weight(name="scale", shape=(),
                                     initializer=keras.initializers.Constant(self.initial_scale))
        self.bias = self.add_weight(name="bias", shape=(),
                                    initializer=keras.initializers.Constant(self.initial_bias))

    def call(self, embedding_map):
        shape = ops.shape(embedding_map)
        locations = ops.reshape(embedding_map, (shape[0], -1, shape[-1]))  # [B, L, D]
        norms = ops.maximum(ops.norm(locations, axis=-1, keepdims=True), EPSILON)
        cosines = ops.einsum("bld,vd->blv", locations / norms, self.unit_vectors)
        weights = ops.softmax(cosines / self.temperature, axis=1)
        pooled = ops.sum(weights * cosines, axis=1)  # [B, V]
        return self.scale * (pooled - self.bias)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self._unit_vectors.shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "word_vectors": self._unit_vectors.tolist(),
                "temperature": self.temperature, "initial_scale": self.initial_scale,
                "initial_bias": self.initial_bias}
