"""Stage 2 attention network (paper §4.2): fine-tuned embedding + refinement head."""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np
from keras import ops

from conceptmask_tf.models.concept_attention import ConceptAttention
from conceptmask_tf.models.concept_refinement import ConceptRefinement
from conceptmask_tf.models.fully_convolutional_embedding import FullyConvolutionalEmbedding
from conceptmask_tf.models.tensor_ops import channels_to_concepts
from conceptmask_tf.models.vocabulary_attention import VocabularyAttention

CONCEPT_INPUTS = ("ids", "vectors")


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class RefinementModel(keras.Model):
    """Image + concepts -> refined attention maps (and the coarse ones) per concept.

    image -> `FullyConvolutionalEmbedding` (trainable: fine-tuned jointly) -> embedding
    map e [B, h, w, D] -> coarse maps of all V vocabulary concepts (`VocabularyAttention`,
    fixed word-vector kernel) -> `ConceptRefinement` (two 1x1 convs) -> logits for the
    requested concepts, scored from their word vectors (see `ConceptRefinement` for why
    the head is not a fixed V-way or C-way output).

    Args:
        embedding: The stage-1 network in fully-convolutional form (`to_fully_convolutional`).
        vocabulary_size: V, rows of the word-vector matrix.
        word_vectors: float [V, D] (row i = concept i); None leaves zeros (to be loaded).
        hidden_dim: H of the refinement head.
        coarse_skip: See `ConceptRefinement`.
        location_term: See `ConceptRefinement`.
        similarity: "cosine" or "dot" for coarse maps (see `ConceptAttention`).
        concept_input: "ids" -> input "concept_ids" int32 [B, K] (vocabulary rows, -1 =
            padding; the stage-2 pipeline's features); "vectors" -> input
            "concept_vectors" float32 [B, K, D] (any word vectors).
        **kwargs: keras.Model arguments (name, trainable).

    Inputs: {"image": float32 [B, H, W, 3] in [0, 255],
             "concept_ids": int32 [B, K] or "concept_vectors": float32 [B, K, D]}.
    Outputs (h = H / stride): {"logits": [B, K, h, w] refined logits,
             "attention": [B, K, h, w] sigmoid(logits),
             "coarse": [B, K, h, w] coarse maps alpha0 of the fine-tuned embedding,
             "embedding": [B, D] pooled image embedding}. Padding slots (id -1) get a
             zero vector: their maps are meaningless and must be masked by the losses.
    """

    def __init__(self, embedding: FullyConvolutionalEmbedding, vocabulary_size: int,
                 word_vectors: np.ndarray | None = None, hidden_dim: int = 256,
                 coarse_skip: bool = True, similarity: str = "cosine",
                 concept_input: str = "ids", location_term: bool = False,
                 **kwargs: Any) -> None:
        if concept_input not in CONCEPT_INPUTS:
            raise ValueError(f"concept_input must be one of {CONCEPT_INPUTS}, "
                             f"got {concept_input!r}")
        dim = embedding.embedding_dim
        vocabulary = VocabularyAttention(vocabulary_size, dim, similarity, word_vectors,
                                         name="vocabulary")
        attention = ConceptAttention(similarity, name="concept_attention")
        head = ConceptRefinement(dim, hidden_dim, coarse_skip, location_term,
                                 name="refinement_head")

        image = keras.Input(shape=embedding.input_shape[1:], name="image")
        embedded = embedding(image)
        embedding_map = embedded["embedding_map"]  # [B, h, w, D]
        key = "concept_ids" if concept_input == "ids" else "concept_vectors"
        if concept_input == "ids":
            concepts = keras.Input(shape=(None,), dtype="int32", name=key)
            vocabulary_maps, vectors = vocabulary(embedding_map, concept_ids=concepts)
        else:
            concepts = keras.Input(shape=(None, dim), name=key)
            vocabulary_maps, vectors = vocabulary(embedding_map), concepts
        coarse = attention(embedding_map, vectors)  # [B, h, w, K]
        logits = head(vocabulary_maps, vectors, coarse)  # [B, h, w, K]
        outputs = {"logits": channels_to_concepts(logits),
                   "attention": channels_to_concepts(ops.sigmoid(logits)),
                   "coarse": channels_to_concepts(coarse),
                   "embedding": embedded["embedding"]}
        inputs = {"image": image, key: concepts}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.embedding = embedding
        self.vocabulary = vocabulary
        self.concept_attention = attention
        self.head = head
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.coarse_skip = bool(coarse_skip)
        self.location_term = bool(location_term)
        self.similarity = similarity
        self.concept_input = concept_input

    @property
    def output_stride(self) -> int:
        """Image side / attention-map side."""
        return self.embedding.output_stride

    def refine(self, embedding_map, concept_vectors):
        """Refined logits and coarse maps of any concept vectors on an embedding map.

        Calls this model's layers, so it works on symbolic tensors (to compose models,
        e.g. `ConceptMask`) and eagerly (e.g. extra concepts in a training step).

        Args:
            embedding_map: float32 [B, h, w, D] from `self.embedding`.
            concept_vectors: float32 [B, K, D].

        Returns:
            (logits [B, h, w, K], coarse [B, h, w, K]), channels last.
        """
        coarse = self.concept_attention(embedding_map, concept_vectors)
        logits = self.head(self.vocabulary(embedding_map), concept_vectors, coarse)
        return logits, coarse

    def concept_logits(self, embedding_map, concept_ids):
        """Refined logits [B, K, h, w] of vocabulary rows [B, K] on an embedding map.

        The model's "logits" output computed from `self.embedding`'s map instead of the
        image (stage 2 computes the map itself when it shares a frozen lower backbone).
        """
        logits, _ = self.refine(embedding_map, self.vocabulary.lookup(concept_ids))
        return channels_to_concepts(logits)

    def get_config(self) -> dict[str, Any]:
        return {"embedding": keras.layers.serialize(self.embedding),
                "vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim,
                "coarse_skip": self.coarse_skip, "similarity": self.similarity,
                "concept_input": self.concept_input, "location_term": self.location_term,
                "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RefinementModel:
        config = copy.deepcopy(config)  # deserialize() consumes nested configs
        if isinstance(config["embedding"], dict):
            config["embedding"] = keras.layers.deserialize(config["embedding"])
        return cls(**config)
