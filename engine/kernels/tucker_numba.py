"""Numba CPU kernel of the mode-n product (imported only when Numba is wanted; see tucker.py)."""
import numba
import numpy as np


@numba.njit(cache=True)
def mode_product_3d(t, matrix):
    """out[i, j, l] = sum_p matrix[j, p] * t[i, p, l] for t (a, k, b) and matrix (m, k).

    One copy only: bench/bench_tucker.py found NumPy's BLAS chain faster at every size tried,
    so this loop is kept for comparison, not threaded.
    """
    a, k, b = t.shape
    m = matrix.shape[0]
    out = np.zeros((a, m, b), dtype=t.dtype)
    if b == 1:  # contract the last axis: keep the output row contiguous in the inner loop
        matrix_t = np.ascontiguousarray(matrix.T)
        for i in range(a):
            for p in range(k):
                c = t[i, p, 0]
                for j in range(m):
                    out[i, j, 0] += c * matrix_t[p, j]
        return out
    for i in range(a):
        for j in range(m):
            for p in range(k):
                c = matrix[j, p]
                for l in range(b):
                    out[i, j, l] += c * t[i, p, l]
    return out
