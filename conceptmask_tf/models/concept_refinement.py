"""Stage 2 refinement head (paper §4.2): refined attention for any concept vector."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.models.tensor_ops import l2_normalize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptRefinement(keras.layers.Layer):
    """Coarse maps of all V concepts -> refined logits of any K concepts given their vectors.

    The paper's refinement is two 1x1 convolutions from the V coarse maps to one output
    map per box-supervised concept, then a sigmoid. A fixed output per concept cannot
    refine a concept that had no boxes, so here the second convolution's output
    channels are indexed by word vectors instead of concept ids:

        g_ij  = relu(W1 alpha0_ij + b1)              1x1 conv, V -> H (a non-linear
                                                     combination of concept responses)
        r_ij  = W2 g_ij + b2                         1x1 conv, H -> D (word space)
        logit_ij(w) = <r_ij, w / |w|> + s * alpha0_ij(w) + b

    i.e. the second conv's kernel for concept w is W2^T w / |w| (rank D instead of one
    free column per concept). Every concept, trained, weak or unseen, gets a map from
    its vector alone. The optional skip term s * alpha0_ij(w) (its own coarse map,
    learnt scale s, init 1) starts the refinement from the coarse map and carries it
    to concepts the head has not learnt to combine. b is one scalar for all concepts.

    With `location_term`, a third 1x1 conv H -> 1 adds a concept-independent logit
    u_ij = W3 g_ij + b3 at each location (not in the paper). Without it, the only way the
    head can lower every supervised concept at a location that none of them covers (the
    sky of the concept world) is a word-space direction, which raises the unsupervised
    concepts whose vectors point the other way (BENCHMARKS.md, "Stage 2 and the weak
    concepts").

    Args:
        embedding_dim: D.
        hidden_dim: H.
        coarse_skip: Add the s * alpha0(w) term (then `coarse` must be passed).
        location_term: Add the concept-independent per-location logit u_ij.

    Call args:
        vocabulary_maps: float32 [B, h, w, V] coarse maps of all vocabulary concepts.
        concept_vectors: float32 [B, K, D].
        coarse: float32 [B, h, w, K] the concepts' own coarse maps (for the skip term).

    Returns:
        float32 [B, h, w, K] refined logits (sigmoid gives the attention map).
    """

    def __init__(self, embedding_dim: int, hidden_dim: int = 256, coarse_skip: bool = True,
                 location_term: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim = int(embedding_dim)
        self.hidden_dim = int(hidden_dim)
        self.coarse_skip = bool(coarse_skip)
        self.location_term = bool(location_term)
        self.combine = keras.layers.Conv2D(hidden_dim, 1, activation="relu", name="combine")
        self.project = keras.layers.Conv2D(embedding_dim, 1, name="project")
        self.locate = (keras.layers.Conv2D(1, 1, name="locate") if self.location_term
                       else None)

    def build(self, vocabulary_maps_shape: tuple, concept_vectors_shape: tuple,
              coarse_shape: tuple | None = None) -> None:
        if concept_vectors_shape[-1] != self.embedding_dim:
            raise ValueError(f"concept vectors must have {self.embedding_dim} dims, got "
                             f"{concept_vectors_shape}")
        self.combine.build(vocabulary_maps_shape)
        self.project.build((*vocabulary_maps_shape[:3], self.hidden_dim))
        if self.locate is not None:
            self.locate.build((*vocabulary_maps_shape[:3], self.hidden_dim))
        self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")
        if self.coarse_skip:
            self.coarse_weight = self.add_weight(shape=(), initializer="ones",
                                                 name="coarse_weight")

    def call(self, vocabulary_maps, concept_vectors, coarse=None):
        combined = self.combine(vocabulary_maps)  # [B, h, w, H]
        refined = self.project(combined)  # [B, h, w, D]
        logits = ops.einsum("bhwd,bkd->bhwk", refined, l2_normalize(concept_vectors))
        logits = logits + self.bias
        if self.locate is not None:
            logits = logits + self.locate(combined)  # [B, h, w, 1] onto every concept
        if self.coarse_skip:
            if coarse is None:
                raise ValueError("coarse_skip=True needs the concepts' coarse maps")
            logits = logits + self.coarse_weight * coarse
        return logits  # [B, h, w, K]

    def compute_output_shape(self, vocabulary_maps_shape: tuple, concept_vectors_shape: tuple,
                             coarse_shape: tuple | None = None) -> tuple:
        return (*vocabulary_maps_shape[:3], concept_vectors_shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim,
                "coarse_skip": self.coarse_skip, "location_term": self.location_term}
