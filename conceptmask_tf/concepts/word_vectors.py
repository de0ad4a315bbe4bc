"""PMI word vectors (Chollet 2016, "Information-theoretical label embeddings"; Concept Mask §4.1).

tag corpus -> vocabulary (counts, idf) -> co-occurrence counts -> PMI -> top-D eigenpairs
by largest algebraic eigenvalue -> vectors = U_D * sqrt(max(lambda, 0)), float32 [V, D].

`concept_vectors_from_corpus` is the one call the binary and the benchmark make.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from conceptmask_tf.base import progress as progress_lib
from conceptmask_tf.concepts import cooccurrence, eigen
from conceptmask_tf.concepts import pmi as pmi_lib
from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.data.tags import TagCorpus

_LOG = logging.getLogger("conceptmask_tf")


def vectors_from_eigenpairs(result: eigen.EigenResult) -> np.ndarray:
    """float32 [V, D] = U_D * sqrt(max(lambda, 0)); columns of negative eigenvalues are 0."""
    scale = np.sqrt(np.maximum(result.values, 0.0))
    return (result.vectors * scale.astype(result.vectors.dtype)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ConceptVectors:
    """The result of `concept_vectors_from_corpus`.

    Attributes:
        vocabulary: Concepts, counts and idf; row i of `vectors` is concept i.
        vectors: float32 [V, D] word vectors.
        eigen: The eigen-decomposition (values, residuals, method, ...).
        energy_kept: sum of the D squared eigenvalues / ||PMI||_F^2 (the share of the
            matrix's "variance" the D components carry).
        requested_dim: The dimension asked for (D is smaller when V was smaller).
        timer: Wall and CPU seconds per phase (vocabulary, cooccurrence, pmi, eigen).
    """

    vocabulary: Vocabulary
    vectors: np.ndarray
    eigen: eigen.EigenResult
    energy_kept: float
    requested_dim: int
    timer: progress_lib.PhaseTimer


def concept_vectors_from_corpus(corpus: TagCorpus, dim: int, min_count: int = 1,
                                eigen_method: str = "auto", tol: float = 1e-3,
                                seed: int = 0, progress: bool = False) -> ConceptVectors:
    """Vocabulary and PMI word vectors of a tag corpus.

    Args:
        corpus: Images and their tags.
        dim: D, the vector dimension. When D > V it is clamped to V with a warning (the
            PMI matrix has only V eigenpairs).
        min_count: Concepts held by fewer images are dropped (N still counts every image).
        eigen_method: "auto", "dense" or "krylov" (see `eigen.top_eigenpairs`).
        tol: Krylov relative residual tolerance (see `eigen.top_eigenpairs`).
        seed: Seed of the eigen-solver's random start.
        progress: Show progress bars.

    Returns:
        ConceptVectors.

    Raises:
        ValueError: If no concept is left after the min_count filter, or dim < 1.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    timer = progress_lib.PhaseTimer()
    with timer.phase("vocabulary"):
        vocab, id_map = Vocabulary.from_counts(corpus.names, corpus.counts(),
                                               corpus.num_images, min_count)
        if not len(vocab):
            raise ValueError(f"no concept is held by >= {min_count} images "
                             f"({len(corpus.names)} concepts, {corpus.num_images} images)")
        indptr, ids = cooccurrence.relabel(corpus.indptr, corpus.tag_ids, id_map)
    with timer.phase("cooccurrence"):
        counts = cooccurrence.cooccurrence_counts(indptr, ids, len(vocab), progress=progress)
        del indptr, ids
    with timer.phase("pmi"):
        pmi = pmi_lib.pmi_matrix(counts, vocab.num_images, overwrite=True)
        del counts
        frobenius_sq = _frobenius_sq(pmi)
    d = dim
    if dim > len(vocab):
        _LOG.warning("dim %d > vocabulary size %d: using dim = %d (the PMI matrix has only "
                     "%d eigenpairs)", dim, len(vocab), len(vocab), len(vocab))
        d = len(vocab)
    with timer.phase("eigen"):
        result = eigen.top_eigenpairs(pmi, d, method=eigen_method, tol=tol, seed=seed,
                                      progress=progress)
        vectors = vectors_from_eigenpairs(result)
    worst = float(result.relative_residuals.max())
    if result.method == "krylov" and worst > tol:
        _LOG.warning("eigen-solver stopped at relative residual %.2e > tol %.0e", worst, tol)
    energy = float(np.sum(result.values ** 2) / frobenius_sq) if frobenius_sq else 0.0
    return ConceptVectors(vocab, vectors, result, energy, dim, timer)


def _frobenius_sq(matrix: np.ndarray, rows_per_step: int = 1024) -> float:
    total = 0.0
    for r in range(0, len(matrix), rows_per_step):
        block = matrix[r:r + rows_per_step].astype(np.float64)
        total += float(np.einsum("ij,ij->", block, block))
    return total
