"""Word vectors end to end against a naive reference (loops, dense PMI, numpy eigh)."""

import logging
import math

import numpy as np
import pytest

from conceptmask_tf.concepts.word_vectors import concept_vectors_from_corpus
from conceptmask_tf.data.tags import TagCorpus
from conceptmask_tf.data.types import TaggedImage


def _corpus(num_images=400, vocab_size=60, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"tag{i}" for i in range(vocab_size)]
    weights = 1.0 / (np.arange(vocab_size) + 3.0)
    records = []
    for n in range(num_images):
        k = rng.integers(1, 9)
        chosen = rng.choice(vocab_size, size=k, replace=False, p=weights / weights.sum())
        records.append(TaggedImage(f"images/{n}.jpg", tuple(names[i] for i in chosen)))
    return TagCorpus.from_records(records), records


def _naive_pmi(records, concepts):
    n = len(records)
    index = {c: i for i, c in enumerate(concepts)}
    counts = np.zeros((len(concepts), len(concepts)))
    for record in records:
        present = [index[t] for t in record.tags if t in index]
        for i in present:
            for j in present:
                counts[i, j] += 1
    pmi = np.zeros_like(counts)
    for i in range(len(concepts)):
        for j in range(len(concepts)):
            if counts[i, j] > 0:
                pmi[i, j] = math.log(counts[i, j] * n / (counts[i, i] * counts[j, j]))
    return pmi


@pytest.mark.parametrize("method", ["dense", "krylov"])
def test_vectors_reproduce_the_naive_pipeline(method):
    corpus, records = _corpus()
    result = concept_vectors_from_corpus(corpus, dim=12, min_count=3, eigen_method=method,
                                         tol=1e-5)
    vocab = result.vocabulary
    assert min(vocab.counts) >= 3 and vocab.num_images == 400
    pmi = _naive_pmi(records, vocab.concepts)
    values, vectors = np.linalg.eigh(pmi)
    values, vectors = values[::-1][:12], vectors[:, ::-1][:, :12]
    np.testing.assert_allclose(result.eigen.values, values, rtol=1e-5)
    # w_i . w_j = sum_d U_id lambda_d U_jd (sign- and basis-free).
    gram = result.vectors.astype(np.float64) @ result.vectors.T
    np.testing.assert_allclose(gram, (vectors * values) @ vectors.T, atol=2e-4)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (len(vocab), 12)
    assert 0 < result.energy_kept < 1
    np.testing.assert_allclose(result.energy_kept, np.sum(values ** 2) / np.sum(pmi ** 2),
                               rtol=1e-5)


def test_dim_larger_than_vocabulary_is_clamped_with_a_warning(caplog):
    corpus, _ = _corpus(num_images=50, vocab_size=8)
    with caplog.at_level(logging.WARNING, logger="conceptmask_tf"):
        result = concept_vectors_from_corpus(corpus, dim=20)
    assert result.vectors.shape == (8, 8) and result.requested_dim == 20
    assert "dim 20 > vocabulary size 8" in caplog.text


def test_min_count_that_drops_everything_raises():
    corpus, _ = _corpus(num_images=20, vocab_size=8)
    with pytest.raises(ValueError, match="no concept is held by >= 1000 images"):
        concept_vectors_from_corpus(corpus, dim=4, min_count=1000)
