"""PMI against hand-worked values."""

import math

import numpy as np
import pytest

from conceptmask_tf.concepts.pmi import pmi_matrix


def test_hand_worked_pmi():
    # N = 4 images; n_0 = 2, n_1 = 2, n_2 = 1; n_01 = 1, n_02 = 0, n_12 = 1.
    counts = np.array([[2, 1, 0], [1, 2, 1], [0, 1, 1]], np.int32)
    pmi = pmi_matrix(counts, 4)
    expected = np.array([
        [math.log(4 / 2), math.log(1 * 4 / (2 * 2)), 0.0],  # never together -> 0
        [0.0, math.log(4 / 2), math.log(1 * 4 / (2 * 1))],
        [0.0, 0.0, math.log(4 / 1)],
    ])
    expected = np.triu(expected) + np.triu(expected, 1).T
    assert pmi.dtype == np.float32
    np.testing.assert_allclose(pmi, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_overwrite_reuses_the_memory_and_matches(dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((50, 20)) < 0.3).astype(np.int64)
    x[:, x.sum(0) == 0] = 1
    counts = (x.T @ x).astype(dtype)
    expected = pmi_matrix(counts, 50)
    out = pmi_matrix(counts, 50, overwrite=True)
    assert np.shares_memory(out, counts)
    np.testing.assert_array_equal(out, expected)


def test_zero_count_concept_is_rejected():
    with pytest.raises(ValueError, match="n_i > 0"):
        pmi_matrix(np.zeros((2, 2), np.int32), 3)
