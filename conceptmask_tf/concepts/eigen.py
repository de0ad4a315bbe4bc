"""Top-k eigenpairs (largest algebraic eigenvalues) of a dense symmetric matrix.

Two methods:

* ``dense``: LAPACK ``eigh`` (exact; O(V^3), for V up to a few thousand).
* ``krylov``: restarted block Krylov (block Lanczos with full re-orthogonalisation and
  Rayleigh-Ritz), for large V. Every step is a matrix-block product (Level-3 BLAS, float32
  by default) instead of ARPACK's one matrix-vector product at a time. Rayleigh-Ritz on the
  Krylov space selects the largest *algebraic* Ritz values, so large negative eigenvalues
  (which PMI matrices have) need no shift: the Krylov space approximates both ends of the
  spectrum, and each restart keeps only the wanted end. Deep Krylov spaces (`depth` blocks
  per restart) matter: the top of a PMI spectrum is a flat plateau with small gaps.

Convergence is measured per pair by the relative residual
``||A v_i - lambda_i v_i|| / max(|lambda_i|, 1e-3 * lambda_1)`` (the floor keeps the test
meaningful for eigenvalues near 0).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.linalg

from conceptmask_tf.base import progress as progress_lib

DENSE_MAX_SIZE = 3000
RESIDUAL_FLOOR = 1e-3
_CHOLESKY_MIN_PIVOT = 1e-2  # smaller: columns too close to dependent for Cholesky QR


@dataclasses.dataclass(frozen=True)
class EigenResult:
    """Top-k eigenpairs and how they were obtained.

    Attributes:
        values: float64 [k] eigenvalues, descending.
        vectors: [V, k] orthonormal eigenvectors (float32 or float64), column i for values[i].
        residuals: float64 [k] ``||A v_i - values[i] v_i||``.
        method: "dense" or "krylov".
        products: Matrix-vector products spent (columns of the block products; 0 for dense).
        cycles: Krylov restart cycles (0 for dense).
        seconds: Wall time.
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    method: str
    products: int = 0
    cycles: int = 0
    seconds: float = 0.0

    @property
    def relative_residuals(self) -> np.ndarray:
        """float64 [k]: residuals / max(|lambda_i|, RESIDUAL_FLOOR * |lambda_1|)."""
        return _relative(self.residuals, self.values)


def _relative(residuals: np.ndarray, values: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(values), RESIDUAL_FLOOR * np.abs(values[:1]).max(initial=0.0))
    return residuals / np.maximum(scale, np.finfo(np.float64).tiny)


def top_eigenpairs(matrix: np.ndarray, k: int, method: str = "auto", tol: float = 1e-3,
                   block: int | None = None, depth: int = 6, max_cycles: int = 30,
                   seed: int = 0, progress: bool = False) -> EigenResult:
    """The k largest (algebraic) eigenpairs of a symmetric matrix.

    Args:
        matrix: [V, V] symmetric; its dtype (float32 or float64) is the working precision
            of ``krylov`` (``dense`` always works in float64).
        k: Number of eigenpairs, 1 <= k <= V.
        method: "dense", "krylov" or "auto" (dense when V <= DENSE_MAX_SIZE).
        tol: Krylov convergence: every relative residual <= tol (float32 reaches ~1e-5).
        block: Krylov block size (default k + max(16, k // 4): extra "guard" vectors
            widen the gap that limits convergence at the k-th eigenvalue).
        depth: Krylov blocks added per restart cycle.
        max_cycles: Restart cycles before giving up (the result then says how far it got).
        seed: Seed of the random start block.
        progress: Show a progress bar over the restart cycles.

    Returns:
        EigenResult.
    """
    v = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != v:
        raise ValueError(f"expected a square matrix, got shape {matrix.shape}")
    if not 1 <= k <= v:
        raise ValueError(f"k must be in [1, {v}], got {k}")
    if method == "auto":
        method = "dense" if v <= DENSE_MAX_SIZE else "krylov"
    start = time.time()
    if method == "dense":
        result = _dense(matrix, k)
    elif method == "krylov":
        block = min(block or k + max(16, k // 4), v)
        if block < k:
            raise ValueError(f"block ({block}) must be >= k ({k})")
        result = _block_krylov(matrix, k, block, depth, tol, max_cycles, seed, progress)
    else:
        raise ValueError(f"unknown method {method!r}; expected auto, dense or krylov")
    return dataclasses.replace(result, seconds=time.time() - start)


def _dense(matrix: np.ndarray, k: int) -> EigenResult:
    a = np.asarray(matrix, np.float64)
    v = len(a)
    values, vectors = scipy.linalg.eigh(a, subset_by_index=[v - k, v - 1], driver="evr")
    values, vectors = values[::-1].copy(), vectors[:, ::-1]
    residuals = np.linalg.norm(a @ vectors - vectors * values, axis=0)
    dtype = matrix.dtype if matrix.dtype in (np.float32, np.float64) else np.float64
    return EigenResult(values, np.ascontiguousarray(vectors, dtype), residuals, "dense")


def _orthonormal_complement(z: np.ndarray, basis: np.ndarray,
                            recent: np.ndarray | None = None) -> np.ndarray:
    """Orthonormal basis of the part of span(z) orthogonal to `basis` (may drop columns).

    Two rounds of block Gram-Schmidt, each followed by an orthonormalisation, keep float32
    bases orthonormal to working precision ("twice is enough"). The first round may project
    against `recent` columns only (in block Lanczos, A q_i lies in the span of the previous,
    current and next blocks), the second is against the whole `basis`.
    """
    for against in (basis if recent is None else recent, basis):
        if against.shape[1]:
            z = z - against @ (against.T @ z)
        z = _orthonormalize(z)
    return z


def _orthonormalize(z: np.ndarray, again: bool = True) -> np.ndarray:
    """Orthonormal columns spanning z: Cholesky QR of the column-normalised z or, when the
    columns are nearly dependent, the Gram matrix's eigenvectors (dropping the dependent
    directions) followed by one more Cholesky QR.

    Cholesky is tried first because it is a few blocked LAPACK steps, while a symmetric
    eigen-solver has a synchronisation point per column, which is slow when other processes
    compete for the cores.
    """
    gram = (z.T @ z).astype(np.float64)
    scale = np.sqrt(np.diagonal(gram))
    nonzero = scale > 0
    z, scale = z[:, nonzero], scale[nonzero]
    gram = gram[np.ix_(nonzero, nonzero)] / np.outer(scale, scale)
    gram = (gram + gram.T) / 2  # [k, k], unit diagonal
    try:
        chol = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        chol = None
    if chol is not None and np.diagonal(chol).min(initial=1.0) > _CHOLESKY_MIN_PIVOT:
        # z / scale = Q chol^T  ->  Q = z diag(1 / scale) chol^-T
        inverse = scipy.linalg.solve_triangular(chol, np.diag(1.0 / scale), lower=True)
        return z @ inverse.T.astype(z.dtype)
    s, u = np.linalg.eigh(gram)
    keep = s > s.max(initial=0.0) * np.finfo(z.dtype).eps * 100
    z = z @ (u[:, keep] / (np.sqrt(s[keep]) * scale[:, None])).astype(z.dtype)
    return _orthonormalize(z, again=False) if again else z


def _block_krylov(a: np.ndarray, k: int, block: int, depth: int, tol: float,
                  max_cycles: int, seed: int, progress: bool) -> EigenResult:
    rng = np.random.default_rng(seed)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    a = np.asarray(a, dtype)
    v = len(a)
    width = min(block * (depth + 1), v)
    q = np.empty((v, width), dtype)  # Krylov basis, block after block
    w = np.empty((v, width), dtype)  # w = A q
    x = _orthonormal_complement(rng.standard_normal((v, block)).astype(dtype), q[:, :0])
    ax = a @ x
    products = x.shape[1]
    with progress_lib.bar(progress, max_cycles, "eigenpairs (Krylov cycles)") as bar:
        for cycle in range(1, max_cycles + 1):
            filled = x.shape[1]
            q[:, :filled], w[:, :filled] = x, ax
            newest = previous = slice(0, filled)
            for _ in range(depth):
                recent = q[:, previous.start:filled]
                z = _orthonormal_complement(w[:, newest], q[:, :filled], recent)
                z = z[:, :width - filled]
                if z.shape[1] == 0:
                    break  # the space is invariant (or the basis fills the whole space)
                previous, newest = newest, slice(filled, filled + z.shape[1])
                q[:, newest] = z
                w[:, newest] = a @ z
                products += z.shape[1]
                filled = newest.stop
            basis, images = q[:, :filled], w[:, :filled]
            h = basis.T @ images  # Rayleigh quotient, [m, m]
            theta, y = _top_symmetric_eigenpairs((h + h.T) / 2, min(block, filled))
            x, ax = basis @ y, images @ y
            residuals = np.linalg.norm(ax[:, :k] - x[:, :k] * theta[:k].astype(dtype), axis=0)
            bar.update(1)
            if np.all(_relative(residuals.astype(np.float64), theta[:k]) <= tol):
                break
    return EigenResult(theta[:k], np.ascontiguousarray(x[:, :k]),
                       residuals.astype(np.float64), "krylov", products, cycle)


def _top_symmetric_eigenpairs(h: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` largest eigenpairs of a small symmetric matrix, descending."""
    m = len(h)
    theta, y = scipy.linalg.eigh(h, subset_by_index=[m - count, m - 1], driver="evr")
    return theta[::-1].astype(np.float64), np.ascontiguousarray(y[:, ::-1])
