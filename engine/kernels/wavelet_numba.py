"""Numba CPU kernels of the wavelet primitives (imported only when Numba is wanted; see wavelet.py).

Each body is compiled twice, single-threaded and parallel over the batch; wavelet.py picks one
by the amount of work. The copies get their own names so Numba's on-disk cache keeps them apart.
"""
import types

import numba
import numpy as np


def _analyze(x, filters, out):
    """out[b, k, o] += sum_j filters[k, j] x[b, 2o + 1 - j] (x zero outside its length)."""
    batch, m = x.shape
    bands, L = filters.shape
    n_out = out.shape[2]
    for b in numba.prange(batch):
        for k in range(bands):
            for o in range(n_out):
                i0 = 2 * o + 1
                acc = out[b, k, o]
                for j in range(max(0, i0 - m + 1), min(L, i0 + 1)):
                    acc += filters[k, j] * x[b, i0 - j]
                out[b, k, o] = acc


def _synthesize(c, filters, out):
    """out[b, i] += sum_k sum_o filters[k, i + L - 2 - 2o] c[b, k, o] for i < out.shape[1]."""
    batch, bands, n = c.shape
    L = filters.shape[1]
    n_out = out.shape[1]
    for b in numba.prange(batch):
        for k in range(bands):
            for o in range(n):
                v = c[b, k, o]
                # tap t = i + L - 2 - 2o must lie in [0, L)
                for i in range(max(0, 2 * o + 2 - L), min(n_out, 2 * o + 2)):
                    out[b, i] += filters[k, i + L - 2 - 2 * o] * v


def _filter_grad(x, grad_c, out):
    """out[k, j] += sum_{b,o} grad_c[b, k, o] x[b, 2o + 1 - j]."""
    batch, m = x.shape
    bands, L = out.shape
    n = grad_c.shape[2]
    # one partial sum per batch row, so the parallel loop never writes to shared memory
    partial = np.zeros((batch, bands, L), dtype=out.dtype)
    for b in numba.prange(batch):
        for k in range(bands):
            for o in range(n):
                g = grad_c[b, k, o]
                i0 = 2 * o + 1
                for j in range(max(0, i0 - m + 1), min(L, i0 + 1)):
                    partial[b, k, j] += g * x[b, i0 - j]
    for b in range(batch):
        for k in range(bands):
            for j in range(L):
                out[k, j] += partial[b, k, j]


def _compile(fn, name, parallel):
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return numba.njit(parallel=parallel, cache=True)(copy)


analyze_serial = _compile(_analyze, "analyze_serial", False)
analyze_parallel = _compile(_analyze, "analyze_parallel", True)
synthesize_serial = _compile(_synthesize, "synthesize_serial", False)
synthesize_parallel = _compile(_synthesize, "synthesize_parallel", True)
filter_grad_serial = _compile(_filter_grad, "filter_grad_serial", False)
filter_grad_parallel = _compile(_filter_grad, "filter_grad_parallel", True)
