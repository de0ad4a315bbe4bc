"""Tag scores of every vocabulary concept from an embedding map (stage-1 tag loss)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from conceptmask_tf.models.vocabulary_attention import VocabularyAttention


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptTagScores(keras.layers.Layer):
    """Image-level tag logits from the best-matching locations of each concept.

    For every vocabulary concept v, the coarse map c_ij = cos(e_ij, w_v) (eq. 1 as
    `VocabularyAttention` computes it) is pooled with a softmax over locations at
    temperature tau, s_v = sum_ij softmax(c / tau)_ij c_ij (a smooth maximum: tau -> 0
    gives max_ij c_ij), and the logit is scale * (s_v - bias), with scale and bias learned.

    Used only in training (`conceptmask_tf.losses.TagLoss`, a departure from the paper;
    see `EmbeddingConfig.tag_loss_weight`): a tag is explained when some location of the
    embedding map points at its word vector, which is what the coarse attention map then
    shows. The soft-topic cosine loss alone is met as well by a map that repeats the
    image's topic at every location.

    Args:
        vocabulary_size: V.
        embedding_dim: D.
        word_vectors: float [V, D] (row v = concept v), a non-trainable weight saved with
            the layer, not in its config; zeros if None (e.g. before loading weights).
        temperature: tau > 0.
        initial_scale: Starting value of the learned scale.
        initial_bias: Starting value of the learned bias (a cosine).
        **kwargs: Layer arguments.

    Call args:
        embedding_map: float32 [B, h, w, D].

    Returns:
        float32 [B, V] logits.
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int,
                 word_vectors: np.ndarray | None = None, temperature: float = 0.1,
                 initial_scale: float = 10.0, initial_bias: float = 0.3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.vocabulary = VocabularyAttention(vocabulary_size, embedding_dim, "cosine",
                                              word_vectors, name="vocabulary")
        self.temperature = float(temperature)
        self.initial_scale = float(initial_scale)
        self.initial_bias = float(initial_bias)
        self.scale = self.add_weight(name="scale", shape=(),
                                     initializer=keras.initializers.Constant(initial_scale))
        self.bias = self.add_weight(name="bias", shape=(),
                                    initializer=keras.initializers.Constant(initial_bias))

    def call(self, embedding_map):
        maps = self.vocabulary(embedding_map)  # [B, h, w, V]
        shape = ops.shape(maps)
        cosines = ops.reshape(maps, (shape[0], -1, shape[-1]))  # [B, L, V]
        weights = ops.softmax(cosines / self.temperature, axis=1)
        pooled = ops.sum(weights * cosines, axis=1)  # [B, V]
        return self.scale * (pooled - self.bias)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.vocabulary.vocabulary_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_size": self.vocabulary.vocabulary_size,
                "embedding_dim": self.vocabulary.embedding_dim,
                "temperature": self.temperature, "initial_scale": self.initial_scale,
                "initial_bias": self.initial_bias}
