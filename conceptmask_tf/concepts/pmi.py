"""Point-wise mutual information of concept pairs (Chollet 2016; Concept Mask §4.1).

PMI_ij = log(n_ij * N / (n_i * n_j)) where n_ij > 0 and 0 where n_ij = 0. The diagonal is
included: n_ii = n_i, so PMI_ii = log(N / n_i), the idf of concept i.
"""

from __future__ import annotations

import numpy as np

_ROWS_PER_STEP = 512


def pmi_matrix(counts: np.ndarray, num_images: int, overwrite: bool = False) -> np.ndarray:
    """PMI from co-occurrence counts, in float32.

    Args:
        counts: [V, V] symmetric co-occurrence counts with n_i on the diagonal (int32,
            int64, float32 or float64), every n_i > 0.
        num_images: N.
        overwrite: Compute in the memory of `counts` (int32 or float32 only; `counts` is
            then invalid) so that peak memory stays at one V x V matrix.

    Returns:
        float32 [V, V] PMI.
    """
    v = len(counts)
    n_i = np.diagonal(counts).astype(np.float64).copy()
    if np.any(n_i <= 0):
        raise ValueError("every concept must occur at least once (n_i > 0)")
    if overwrite and counts.dtype.itemsize == 4 and counts.flags.c_contiguous:
        out = counts.view(np.float32)
    else:
        out = np.empty((v, v), np.float32)
    log_n = np.log(n_i)
    log_big_n = np.log(float(num_images))
    for r in range(0, v, _ROWS_PER_STEP):
        rows = slice(r, min(r + _ROWS_PER_STEP, v))
        n_ij = counts[rows].astype(np.float32)  # copy: `out` may be the same memory
        positive = n_ij > 0
        pmi = np.log(n_ij, out=n_ij, where=positive)  # float32 log is exact to 1 ulp
        # log N - log n_i - log n_j in float64, then float32: [rows, V]
        pmi += (log_big_n - log_n[rows, None] - log_n[None, :]).astype(np.float32)
        out[rows] = np.where(positive, pmi, np.float32(0))
    return out
