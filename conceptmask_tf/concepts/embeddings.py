"""Concept embeddings: word vectors by name, phrase vectors and soft-topic vectors (§4.1).

Soft-topic vector of an image with tags w_1..w_n: t = sum_i alpha_i w_i with alpha_i the idf
-log p(w_i). It is *not* normalised: the stage-1 cosine loss 1 - e.t / (|e||t|) is
invariant to the scale of t (pass ``normalize=True`` for unit vectors where a consumer
needs them).

A concept outside the vocabulary made of several words ("red car") gets the same idf-weighted
sum over its words ("red", "car"), each of which must be in the vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse

from conceptmask_tf.base import files
from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.errors import DataError, UnknownConceptError

CONCEPTS_FILE = "concepts.tsv"
VECTORS_FILE = "word_vectors.npy"


def require_concepts(concepts_dir: str) -> None:
    """Raises FileNotFoundError naming a missing word-vector file and its producer."""
    for name in (CONCEPTS_FILE, VECTORS_FILE):
        path = os.path.join(concepts_dir, name)
        if not files.exists(path):
            raise FileNotFoundError(f"{path} does not exist: the word vectors are written by "
                                    "conceptmask-concepts (conceptmask-pipeline puts them in "
                                    "<work_dir>/concepts); pass their folder as concepts_dir")


def soft_topic_vectors(indptr: np.ndarray, ids: np.ndarray, vectors: np.ndarray,
                       idf: np.ndarray, exclude: Iterable[int] = (),
                       normalize: bool = False) -> np.ndarray:
    """Soft-topic vectors of many images at once (one sparse-dense product).

    Args:
        indptr: int [N + 1] CSR row pointers (image n holds ids[indptr[n]:indptr[n + 1]]).
        ids: int [nnz] vocabulary rows.
        vectors: [V, D] word vectors.
        idf: [V] alpha_i.
        exclude: Vocabulary rows given weight 0 (e.g. zero-shot concepts, which are never a
            training target).
        normalize: Return unit vectors (all-zero rows stay zero).

    Returns:
        float32 [N, D]; an image with no (non-excluded) tag gets a zero row.
    """
    weights = np.asarray(idf, np.float32).copy()
    weights[np.fromiter(exclude, np.int64)] = 0.0
    num_images = len(indptr) - 1
    incidence = scipy.sparse.csr_matrix(
        (weights[ids], np.asarray(ids, np.int32), np.asarray(indptr, np.int64)),
        shape=(num_images, len(vectors)))
    topics = np.asarray(incidence @ np.asarray(vectors, np.float32), np.float32)
    if normalize:
        norms = np.linalg.norm(topics, axis=1, keepdims=True)
        topics /= np.where(norms > 0, norms, 1.0)
    return topics


class ConceptEmbeddings:
    """A vocabulary with its word vectors: the concept -> vector map of the whole model.

    Attributes:
        vocabulary: Concepts, counts and idf (row i of `vectors` is concept i).
        vectors: float32 [V, D].
    """

    def __init__(self, vocabulary: Vocabulary, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or len(vectors) != len(vocabulary):
            raise ValueError(f"expected [{len(vocabulary)}, D] vectors, got {vectors.shape}")
        self.vocabulary = vocabulary
        self.vectors = np.asarray(vectors, np.float32)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __contains__(self, concept: object) -> bool:
        """True when `vector(concept)` succeeds (in the vocabulary, or all its words are)."""
        if not isinstance(concept, str):
            return False
        name = normalize_concept(concept)
        words = name.split(" ")
        return bool(name) and (name in self.vocabulary.index_of
                               or all(w in self.vocabulary.index_of for w in words))

    def vector(self, concept: str) -> np.ndarray:
        """float32 [D]: the stored vector of a vocabulary concept, else its phrase vector.

        Raises:
            UnknownConceptError: If the concept is not in the vocabulary and one of its
                words is not either (the error names the word and the phrase).
        """
        name = normalize_concept(concept)
        i = self.vocabulary.index_of.get(name)
        if i is not None:
            return self.vectors[i].copy()
        return self.phrase_vector(concept)

    def vectors_for(self, concepts: Sequence[str]) -> np.ndarray:
        """float32 [K, D]: `vector` of each concept."""
        if not concepts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vector(c) for c in concepts])

    def phrase_vector(self, phrase: str) -> np.ndarray:
        """float32 [D]: idf-weighted sum of the vectors of the phrase's words.

        Raises:
            UnknownConceptError: If the phrase is empty or a word is not in the vocabulary.
        """
        name = normalize_concept(phrase)
        if not name:
            raise UnknownConceptError(phrase, "the name is empty after normalisation")
        rows = []
        for word in name.split(" "):
            i = self.vocabulary.index_of.get(word)
            if i is None:
                detail = (f"word {word!r} of phrase {name!r} is not in the vocabulary"
                          if " " in name else "not in the vocabulary and not a phrase")
                raise UnknownConceptError(word, detail)
            rows.append(i)
        return self.soft_topic_rows(rows)

    def soft_topic_rows(self, rows: Sequence[int]) -> np.ndarray:
        """float32 [D]: sum_i alpha_i w_i over vocabulary rows (repeats count again)."""
        rows = np.asarray(rows, np.int64)
        weights = self.vocabulary.idf[rows].astype(np.float32)
        return (weights @ self.vectors[rows]).astype(np.float32)

    def soft_topic(self, tags: Iterable[str], exclude: Iterable[str] = ()) -> np.ndarray:
        """float32 [D]: soft-topic vector of one image's tags (each must be in the vocabulary).

        Args:
            tags: Tag names (normalised here; repeats are counted once).
            exclude: Concepts that contribute nothing (e.g. zero-shot concepts).

        Raises:
            UnknownConceptError: For a tag outside the vocabulary.
        """
        skip = {normalize_concept(c) for c in exclude}
        rows = [self.vocabulary.index(t) for t in dict.fromkeys(
            normalize_concept(t) for t in tags) if t not in skip]
        return self.soft_topic_rows(rows)

    def exclude_rows(self, concepts: Iterable[str]) -> np.ndarray:
        """int64 vocabulary rows of the given concepts that are in the vocabulary."""
        index = self.vocabulary.index_of
        return np.asarray([index[n] for n in (normalize_concept(c) for c in concepts)
                           if n in index], np.int64)

    def save(self, directory: str) -> None:
        """Writes ``concepts.tsv`` and ``word_vectors.npy`` into `directory`."""
        files.makedirs(directory)
        self.vocabulary.save_tsv(os.path.join(directory, CONCEPTS_FILE))
        files.save_npy(os.path.join(directory, VECTORS_FILE), self.vectors)

    @classmethod
    def load(cls, directory: str) -> ConceptEmbeddings:
        """Reads what `save` (or ``conceptmask-concepts``) wrote.

        Raises:
            DataError: If the two files disagree on the number of concepts.
        """
        vocab = Vocabulary.load_tsv(os.path.join(directory, CONCEPTS_FILE))
        path = os.path.join(directory, VECTORS_FILE)
        vectors = files.load_npy(path)
        if vectors.ndim != 2 or len(vectors) != len(vocab):
            raise DataError(f"expected [{len(vocab)}, D] vectors to match {CONCEPTS_FILE}, "
                            f"got {vectors.shape}", path)
        return cls(vocab, vectors)
