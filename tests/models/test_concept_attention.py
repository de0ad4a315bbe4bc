"""Coarse attention (eq. 1): given vectors and the whole vocabulary, against numpy loops."""

import keras
import numpy as np
import pytest

from conceptmask_tf.models import ConceptAttention, VocabularyAttention
from tests.models.tiny import DIM, VOCAB, word_vectors


def _naive(embedding_map: np.ndarray, vectors: np.ndarray, cosine: bool) -> np.ndarray:
    """[B, h, w, D], [B, K, D] -> [B, h, w, K] by explicit loops."""
    b, h, w, _ = embedding_map.shape
    out = np.zeros((b, h, w, vectors.shape[1]))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for k in range(vectors.shape[1]):
                    e, v = embedding_map[n, i, j], vectors[n, k]
                    out[n, i, j, k] = e @ v / (np.linalg.norm(e) * np.linalg.norm(v)
                                                if cosine else 1.0)
    return out


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_concept_attention_is_the_similarity_at_every_location(similarity):
    rng = np.random.default_rng(0)
    embedding_map = rng.normal(size=(2, 3, 4, DIM)).astype(np.float32)
    vectors = rng.normal(size=(2, 5, DIM)).astype(np.float32)
    out = np.asarray(ConceptAttention(similarity)(embedding_map, vectors))
    np.testing.assert_allclose(out, _naive(embedding_map, vectors, similarity == "cosine"),
                               atol=1e-5)


def test_vocabulary_attention_maps_every_concept_and_looks_up_ids():
    rng = np.random.default_rng(0)
    embedding_map = rng.normal(size=(2, 3, 3, DIM)).astype(np.float32)
    table = word_vectors()
    layer = VocabularyAttention(VOCAB, DIM, word_vectors=table)
    maps, vectors = layer(embedding_map, concept_ids=np.array([[4, -1], [0, 11]], np.int32))
    expected = _naive(embedding_map, np.broadcast_to(table, (2, VOCAB, DIM)), cosine=True)
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    np.testing.assert_array_equal(vectors, [[table[4], np.zeros(DIM)], [table[0], table[11]]])
    assert layer.trainable_weights == []  # the word-vector kernel is fixed


def test_vocabulary_attention_refuses_a_misshaped_matrix():
    with pytest.raises(ValueError, match="word_vectors must be"):
        VocabularyAttention(VOCAB, DIM, word_vectors=np.zeros((VOCAB, DIM + 1)))


def test_layers_config_round_trip():
    layer = VocabularyAttention(VOCAB, DIM, similarity="dot")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert (clone.vocabulary_size, clone.embedding_dim, clone.similarity) == (VOCAB, DIM, "dot")
    clone = ConceptAttention.from_config(ConceptAttention("dot").get_config())
    assert clone.similarity == "dot"
