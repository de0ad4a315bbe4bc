"""Coarse attention maps of every vocabulary concept: word vectors as a fixed 1x1 conv."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from conceptmask_tf.models.concept_attention import SIMILARITIES
from conceptmask_tf.models.tensor_ops import l2_normalize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class VocabularyAttention(keras.layers.Layer):
    """Embedding map [B, h, w, D] -> coarse maps of all V concepts [B, h, w, V] (paper §4.2).

    The word-vector matrix [V, D] is a non-trainable weight (a 1x1 conv kernel
    [1, 1, D, V]); it is saved with the model, not in the config. Called with
    `concept_ids` [B, K] the layer also returns their word vectors [B, K, D] (zero rows
    for ids < 0, the padding slots).

    Args:
        vocabulary_size: V.
        embedding_dim: D.
        similarity: "cosine" or "dot", as in `ConceptAttention`.
        word_vectors: float [V, D] initial values (row i = concept i); zeros if None
            (e.g. before loading saved weights).
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int, similarity: str = "cosine",
                 word_vectors: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if word_vectors is not None:
            word_vectors = np.asarray(word_vectors, dtype=np.float32)
            if word_vectors.shape != (vocabulary_size, embedding_dim):
                raise ValueError(f"word_vectors must be [{vocabulary_size}, {embedding_dim}],"
                                 f" got {word_vectors.shape}")
        self.vocabulary_size = int(vocabulary_size)
        self.embedding_dim = int(embedding_dim)
        self.similarity = similarity
        self.word_vectors = self.add_weight(shape=(vocabulary_size, embedding_dim),
                                            initializer="zeros", trainable=False,
                                            name="word_vectors")
        if word_vectors is not None:
            self.word_vectors.assign(word_vectors)

    def call(self, embedding_map, concept_ids=None):
        # embedding_map [B, h, w, D] -> maps [B, h, w, V]
        table = self.word_vectors  # [V, D]
        if self.similarity == "cosine":
            embedding_map = l2_normalize(embedding_map)
            table = l2_normalize(table)
        maps = ops.einsum("bhwd,vd->bhwv", embedding_map, table)
        if concept_ids is None:
            return maps
        return maps, self.lookup(concept_ids)

    def lookup(self, concept_ids):
        """Word vectors [B, K, D] of ids [B, K]; zero rows where id < 0 (padding)."""
        concept_ids = ops.cast(concept_ids, "int32")
        vectors = ops.take(self.word_vectors, ops.maximum(concept_ids, 0), axis=0)
        present = ops.cast(concept_ids >= 0, vectors.dtype)
        return vectors * ops.expand_dims(present, -1)

    def compute_output_spec(self, embedding_map, concept_ids=None):
        maps = keras.KerasTensor((*embedding_map.shape[:3], self.vocabulary_size))
        if concept_ids is None:
            return maps
        return maps, keras.KerasTensor((*concept_ids.shape, self.embedding_dim))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim, "similarity": self.similarity}
