"""Coarse attention maps of given concepts (paper eq. 1)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.models.tensor_ops import l2_normalize

SIMILARITIES = ("cosine", "dot")


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptAttention(keras.layers.Layer):
    """alpha0_ij(w) = <e_ij, w> for each concept vector w: [B, h, w, D] x [B, K, D] -> [B, h, w, K].

    Departure from the paper (default): with `similarity="cosine"` both e_ij and w are
    unit-normalised, so alpha0 is the cosine in [-1, 1]. Stage 1 trains only the
    direction of e (cosine loss), so the norm of e_ij carries no trained meaning, and
    word-vector norms differ by concept frequency; cosine maps are comparable across
    locations and concepts, which the matching-loss threshold relies on. `"dot"` is the
    paper's plain inner product.

    Args:
        similarity: "cosine" or "dot".
    """

    def __init__(self, similarity: str = "cosine", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity

    def call(self, embedding_map, concept_vectors):
        # embedding_map [B, h, w, D], concept_vectors [B, K, D] -> [B, h, w, K]
        if self.similarity == "cosine":
            embedding_map = l2_normalize(embedding_map)
            concept_vectors = l2_normalize(concept_vectors)
        return ops.einsum("bhwd,bkd->bhwk", embedding_map, concept_vectors)

    def compute_output_shape(self, embedding_map_shape: tuple,
                             concept_vectors_shape: tuple) -> tuple:
        return (*embedding_map_shape[:3], concept_vectors_shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "similarity": self.similarity}
