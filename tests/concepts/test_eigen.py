"""Top-k eigenpairs: the block-Krylov solver against dense LAPACK."""

import numpy as np
import pytest

from conceptmask_tf.concepts import eigen
from conceptmask_tf.concepts.word_vectors import vectors_from_eigenpairs


def _pmi_like(v, seed=0):
    """A symmetric matrix shaped like a PMI matrix: positive diagonal, sparse off-diagonal
    of both signs, one large outlier eigenvalue and large negative eigenvalues."""
    rng = np.random.default_rng(seed)
    a = np.where(rng.random((v, v)) < 0.2, rng.normal(0.3, 1.0, (v, v)), 0.0)
    a = np.triu(a, 1)
    a = a + a.T + np.diag(rng.uniform(1, 8, v))
    u = rng.standard_normal(v)
    return a + 3.0 * np.outer(u, u) / v ** 0.5


def _assert_same_vectors_up_to_sign(got, want, values, atol):
    # Columns of well-separated eigenvalues must match up to sign; for near-degenerate
    # groups only the spanned subspace is defined, so compare projectors.
    gaps = np.abs(np.diff(values))
    separated = np.ones(len(values), bool)
    separated[:-1] &= gaps > 1e-3 * abs(values[0])
    separated[1:] &= gaps > 1e-3 * abs(values[0])
    for j in np.nonzero(separated)[0]:
        sign = np.sign(got[:, j] @ want[:, j])
        np.testing.assert_allclose(sign * got[:, j], want[:, j], atol=atol)
    np.testing.assert_allclose(got @ got.T, want @ want.T, atol=atol)


def test_krylov_float64_matches_dense():
    a = _pmi_like(300)
    dense = eigen.top_eigenpairs(a, 40, method="dense")
    fast = eigen.top_eigenpairs(a, 40, method="krylov", tol=1e-11, block=48, depth=4)
    assert fast.method == "krylov" and dense.method == "dense"
    assert fast.relative_residuals.max() <= 1e-11
    np.testing.assert_allclose(fast.values, dense.values, rtol=1e-12)
    _assert_same_vectors_up_to_sign(fast.vectors, dense.vectors, dense.values, atol=1e-8)


def test_krylov_float32_matches_dense_to_float32_accuracy():
    a = _pmi_like(300, seed=1)
    dense = eigen.top_eigenpairs(a, 30, method="dense")
    fast = eigen.top_eigenpairs(a.astype(np.float32), 30, method="krylov", tol=1e-4)
    assert fast.vectors.dtype == np.float32
    np.testing.assert_allclose(fast.values, dense.values, rtol=2e-5)
    assert fast.relative_residuals.max() <= 1e-4


def test_largest_algebraic_not_largest_magnitude():
    # Eigenvalues -100, -50, 5, 4, 3, 2, 1 in a random basis: the top 3 are 5, 4, 3.
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    a = q @ np.diag([-100.0, -50, 5, 4, 3, 2, 1]) @ q.T
    for method in ("dense", "krylov"):
        result = eigen.top_eigenpairs(a, 3, method=method, tol=1e-12, block=3, depth=2)
        np.testing.assert_allclose(result.values, [5, 4, 3], rtol=1e-10)
        np.testing.assert_allclose(np.abs(result.vectors.T @ q[:, 2:5]), np.eye(3), atol=1e-6)


def test_relative_residual_is_measured_against_the_matrix():
    a = _pmi_like(120, seed=3)
    result = eigen.top_eigenpairs(a, 10, method="krylov", tol=1e-3)
    true = np.linalg.norm(a @ result.vectors - result.vectors * result.values, axis=0)
    np.testing.assert_allclose(result.residuals, true, rtol=1e-6, atol=1e-12)
    assert result.relative_residuals.max() <= 1e-3


def test_vectors_scale_by_root_eigenvalue_and_zero_for_negative():
    result = eigen.EigenResult(np.array([4.0, 1.0, -2.0]), np.eye(3), np.zeros(3), "dense")
    vectors = vectors_from_eigenpairs(result)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.diag([2.0, 1.0, 0.0]))


@pytest.mark.parametrize("k, words", [(0, "k must be"), (8, "k must be")])
def test_bad_k_is_rejected(k, words):
    with pytest.raises(ValueError, match=words):
        eigen.top_eigenpairs(np.eye(7), k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthonormalize_keeps_the_span_and_drops_dependent_columns(dtype):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((200, 6)) * np.array([1e3, 1, 1e-2, 1, 1, 1])  # unequal scales
    for columns in (z, np.hstack([z, z[:, :2] + z[:, 2:4]])):  # independent; 2 dependent
        q = eigen._orthonormalize(columns.astype(dtype))
        assert q.shape == (200, 6)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(q.T @ q, np.eye(6), atol=tol)
        # Same span: projecting z on q changes nothing.
        np.testing.assert_allclose(q @ (q.T @ z), z, rtol=10 * tol, atol=10 * tol * 1e3)
