"""Soft-topic, phrase and stored vectors against hand-worked sums."""

import math

import numpy as np
import pytest

from conceptmask_tf.concepts.embeddings import ConceptEmbeddings, soft_topic_vectors
from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.errors import DataError, UnknownConceptError

# N = 8 images: red in 4 (idf log 2), car in 2 (log 4), red car in 1 (log 8), sky in 8 (0).
VOCAB = Vocabulary(("red", "car", "red car", "sky"), np.array([4, 2, 1, 8]), 8)
VECTORS = np.array([[1, 0], [0, 1], [5, 5], [3, 3]], np.float32)
L2, L4 = math.log(2), math.log(4)


def test_soft_topic_vectors_are_idf_weighted_sums():
    # Image 0: red + car; image 1: car + sky; image 2: no tag.
    topics = soft_topic_vectors(np.array([0, 2, 4, 4]), np.array([0, 1, 1, 3]), VECTORS,
                                VOCAB.idf)
    np.testing.assert_allclose(topics, [[L2, L4], [0, L4], [0, 0]], rtol=1e-6)
    assert topics.dtype == np.float32


def test_soft_topic_excludes_concepts_and_normalises():
    topics = soft_topic_vectors(np.array([0, 2]), np.array([0, 1]), VECTORS, VOCAB.idf,
                                exclude=[1], normalize=True)
    np.testing.assert_allclose(topics, [[1, 0]], rtol=1e-6)
    embeddings = ConceptEmbeddings(VOCAB, VECTORS)
    np.testing.assert_allclose(embeddings.soft_topic(["Red", "car", "red"], exclude=["CAR"]),
                               [L2, 0], rtol=1e-6)
    np.testing.assert_array_equal(embeddings.exclude_rows(["car", "bus"]), [1])


def test_stored_vector_wins_over_phrase_and_phrases_use_idf_weights():
    embeddings = ConceptEmbeddings(VOCAB, VECTORS)
    np.testing.assert_array_equal(embeddings.vector("Red_Car"), [5, 5])  # in the vocabulary
    # "car red" is not: alpha_car * w_car + alpha_red * w_red.
    np.testing.assert_allclose(embeddings.vector("car red"), [L2, L4], rtol=1e-6)
    np.testing.assert_allclose(embeddings.vectors_for(["sky", "car red"]),
                               [[3, 3], [L2, L4]], rtol=1e-6)
    assert "car red" in embeddings and "car bus" not in embeddings


def test_unknown_word_names_the_word_and_the_phrase():
    embeddings = ConceptEmbeddings(VOCAB, VECTORS)
    with pytest.raises(UnknownConceptError, match="word 'bus' of phrase 'red bus'") as info:
        embeddings.vector("red bus")
    assert info.value.concept == "bus"
    with pytest.raises(UnknownConceptError, match="'bus'"):
        embeddings.vector("bus")
    with pytest.raises(UnknownConceptError):
        embeddings.soft_topic(["red", "bus"])


def test_save_load_round_trip_and_mismatch(tmp_path):
    ConceptEmbeddings(VOCAB, VECTORS).save(str(tmp_path))
    loaded = ConceptEmbeddings.load(str(tmp_path))
    assert loaded.vocabulary.concepts == VOCAB.concepts and loaded.vocabulary.num_images == 8
    np.testing.assert_array_equal(loaded.vectors, VECTORS)
    np.save(tmp_path / "word_vectors.npy", VECTORS[:3])
    with pytest.raises(DataError, match="to match concepts.tsv"):
        ConceptEmbeddings.load(str(tmp_path))
