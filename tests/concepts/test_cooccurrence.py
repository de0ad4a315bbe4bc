"""Co-occurrence counts against hand-worked values and a naive double loop."""

import numpy as np
import pytest

from conceptmask_tf.concepts import cooccurrence


def _naive(rows, vocab_size):
    counts = np.zeros((vocab_size, vocab_size), np.int64)
    for row in rows:
        for i in row:
            for j in row:
                counts[i, j] += 1
    return counts


def _csr(rows):
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return indptr, np.asarray([i for r in rows for i in r], np.int32)


def test_hand_worked_counts():
    # Images {0, 1}, {1, 2}, {0, 1, 2}, {2}: n_0 = 2, n_1 = 3, n_2 = 3;
    # n_01 = 2 (images 1 and 3), n_02 = 1 (image 3), n_12 = 2 (images 2 and 3).
    indptr, ids = _csr([[0, 1], [2, 1], [1, 0, 2], [2]])
    counts = cooccurrence.cooccurrence_counts(indptr, ids, 3)
    np.testing.assert_array_equal(counts, [[2, 2, 1], [2, 3, 2], [1, 2, 3]])
    assert counts.dtype == np.int32


@pytest.mark.parametrize("block_pairs, threads", [(1 << 17, 1), (7, 2), (1, 3)])
def test_random_corpus_matches_naive_loop(block_pairs, threads):
    # Small blocks split a concept's occurrences into many slices; rows of length 0 and 1
    # are included; ids are in random order within images.
    rng = np.random.default_rng(0)
    vocab_size = 40
    weights = 1.0 / np.arange(1, vocab_size + 1)
    rows = [list(rng.choice(vocab_size, size=rng.integers(0, 12), replace=False,
                            p=weights / weights.sum())) for _ in range(300)]
    indptr, ids = _csr(rows)
    counts = cooccurrence.cooccurrence_counts(indptr, ids, vocab_size,
                                              block_pairs=block_pairs, threads=threads)
    np.testing.assert_array_equal(counts, _naive(rows, vocab_size))


def test_int32_ids_count_the_same(monkeypatch):
    # Vocabularies over 65536 concepts use int32 ids (too big a matrix for a unit test:
    # force the dtype on a small one instead).
    assert cooccurrence.id_dtype(1 << 16) == np.uint16
    assert cooccurrence.id_dtype((1 << 16) + 1) == np.int32
    monkeypatch.setattr(cooccurrence, "id_dtype", lambda v: np.int32)
    rows = [[4, 3], [3, 1, 4], [0]]
    counts = cooccurrence.cooccurrence_counts(*_csr(rows), 5, block_pairs=1)
    np.testing.assert_array_equal(counts, _naive(rows, 5))


def test_ids_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="ids must lie in"):
        cooccurrence.cooccurrence_counts(np.array([0, 1]), np.array([5]), 3)


def test_relabel_maps_and_drops():
    indptr, ids = _csr([[0, 1], [2], [1, 2, 0]])
    new_indptr, new_ids = cooccurrence.relabel(indptr, ids, np.array([1, -1, 0]))
    np.testing.assert_array_equal(new_indptr, [0, 1, 2, 4])
    np.testing.assert_array_equal(new_ids, [1, 0, 0, 1])


def test_inverted_index_lists_positions_in_order():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=1000).astype(np.uint16)
    index = cooccurrence._InvertedIndex(ids, 50, chunk=64)  # 16 chunks
    order = np.argsort(ids, kind="stable")
    np.testing.assert_array_equal(np.concatenate([index.positions(c) for c in range(50)]),
                                  order)
    np.testing.assert_array_equal(index.counts, np.bincount(ids, minlength=50))
