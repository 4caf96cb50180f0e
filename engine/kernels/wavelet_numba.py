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
            for j in range(L):
                # tap-outer order keeps the inner loop unit-stride in o; 0 <= 2o + 1 - j < m
                f = filters[k, j]
                for o in range(j // 2, min(n_out, (m - 2 + j) // 2 + 1)):
                    out[b, k, o] += f * x[b, 2 * o + 1 - j]


def _synthesize(c, filters, out):
    """out[b, i] += sum_k sum_o filters[k, t] c[b, k, o] with i = 2o + t - (L - 2), i < out.shape[1]."""
    batch, bands, n = c.shape
    L = filters.shape[1]
    n_out = out.shape[1]
    for b in numba.prange(batch):
        for k in range(bands):
            for t in range(L):
                f = filters[k, t]
                shift = t - (L - 2)
                # 0 <= 2o + shift < n_out
                o_lo = max(0, (1 - shift) // 2)
                o_hi = min(n, (n_out - 1 - shift) // 2 + 1)
                for o in range(o_lo, o_hi):
                    out[b, 2 * o + shift] += f * c[b, k, o]


def _filter_grad(x, grad_c, out):
    """out[k, j] += sum_{b,o} grad_c[b, k, o] x[b, 2o + 1 - j]."""
    batch, m = x.shape
    bands, L = out.shape
    n = grad_c.shape[2]
    # one partial sum per batch row, so the parallel loop never writes to shared memory
    partial = np.zeros((batch, bands, L), dtype=out.dtype)
    for b in numba.prange(batch):
        for k in range(bands):
            for j in range(L):
                acc = partial[b, k, j]
                for o in range(j // 2, min(n, (m - 2 + j) // 2 + 1)):
                    acc += grad_c[b, k, o] * x[b, 2 * o + 1 - j]
                partial[b, k, j] = acc
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


# ---------------------------------------------------------------- fused multi-level kernels
# One call runs every level for one batch row (parallel over rows), so a J-level transform costs
# one dispatch instead of J; coefficients are packed [cA_J, cD_J, ..., cD_1] on the last axis.
# m[j] is the approximation length entering level j + 1 (m[0] = n); detail_at[j] is where cD_j
# starts in the packed row; stored_at[j] where the level-j approximation is kept for backward.

@numba.njit(cache=True)
def _row_analyze(x, f, out):
    """out[o] = sum_j f[j] x[2o + 1 - j] (x zero outside its length)."""
    m, L, n_out = x.shape[0], f.shape[0], out.shape[0]
    out[:] = 0
    for j in range(L):
        fj = f[j]
        for o in range(j // 2, min(n_out, (m - 2 + j) // 2 + 1)):
            out[o] += fj * x[2 * o + 1 - j]


@numba.njit(cache=True)
def _row_synthesize_add(c, f, out):
    """out[2o + t - (L - 2)] += f[t] c[o] inside out's length."""
    n, L, n_out = c.shape[0], f.shape[0], out.shape[0]
    for t in range(L):
        ft = f[t]
        shift = t - (L - 2)
        for o in range(max(0, (1 - shift) // 2), min(n, (n_out - 1 - shift) // 2 + 1)):
            out[2 * o + shift] += ft * c[o]


@numba.njit(cache=True)
def _row_analysis_filter_grad_add(x, g, out):
    """out[j] += sum_o g[o] x[2o + 1 - j]."""
    m, n, L = x.shape[0], g.shape[0], out.shape[0]
    for j in range(L):
        acc = out[j]
        for o in range(j // 2, min(n, (m - 2 + j) // 2 + 1)):
            acc += g[o] * x[2 * o + 1 - j]
        out[j] = acc


@numba.njit(cache=True)
def _row_synthesis_filter_grad_add(c, gy, out):
    """out[t] += sum_o c[o] gy[2o + t - (L - 2)] inside gy's length."""
    n, n_out, L = c.shape[0], gy.shape[0], out.shape[0]
    for t in range(L):
        shift = t - (L - 2)
        acc = out[t]
        for o in range(max(0, (1 - shift) // 2), min(n, (n_out - 1 - shift) // 2 + 1)):
            acc += c[o] * gy[2 * o + shift]
        out[t] = acc


@numba.njit(cache=True)
def _row_fwt(x, lo, hi, m, detail_at, stored_at, out, stored):
    levels = m.shape[0] - 1
    stored[0:m[0]] = x
    for j in range(levels):
        src = stored[stored_at[j]:stored_at[j] + m[j]]
        _row_analyze(src, hi, out[detail_at[j + 1]:detail_at[j + 1] + m[j + 1]])
        if j + 1 < levels:
            _row_analyze(src, lo, stored[stored_at[j + 1]:stored_at[j + 1] + m[j + 1]])
        else:
            _row_analyze(src, lo, out[0:m[levels]])


@numba.njit(cache=True)
def _row_fwt_backward(g, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_x,
                      grad_filters, need_filters):
    levels = m.shape[0] - 1
    g_a = g[0:m[levels]].copy()
    for j in range(levels - 1, -1, -1):
        g_d = g[detail_at[j + 1]:detail_at[j + 1] + m[j + 1]]
        if need_filters:
            x_in = stored[stored_at[j]:stored_at[j] + m[j]]
            _row_analysis_filter_grad_add(x_in, g_a, grad_filters[0])
            _row_analysis_filter_grad_add(x_in, g_d, grad_filters[1])
        previous = np.zeros(m[j], dtype=g.dtype)
        _row_synthesize_add(g_a, lo_reversed, previous)
        _row_synthesize_add(g_d, hi_reversed, previous)
        g_a = previous
    grad_x[:] = g_a


@numba.njit(cache=True)
def _row_ifwt(c, lo, hi, m, detail_at, stored_at, y, stored):
    levels = m.shape[0] - 1
    a = c[0:m[levels]].copy()
    for j in range(levels, 0, -1):
        stored[stored_at[j]:stored_at[j] + m[j]] = a
        out = np.zeros(m[j - 1], dtype=c.dtype)
        _row_synthesize_add(a, lo, out)
        _row_synthesize_add(c[detail_at[j]:detail_at[j] + m[j]], hi, out)
        a = out
    y[:] = a


@numba.njit(cache=True)
def _row_ifwt_backward(gy, c, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_c,
                       grad_filters, need_filters):
    levels = m.shape[0] - 1
    g = gy.copy()
    for j in range(1, levels + 1):
        if need_filters:
            _row_synthesis_filter_grad_add(stored[stored_at[j]:stored_at[j] + m[j]], g, grad_filters[0])
            _row_synthesis_filter_grad_add(c[detail_at[j]:detail_at[j] + m[j]], g, grad_filters[1])
        _row_analyze(g, hi_reversed, grad_c[detail_at[j]:detail_at[j] + m[j]])
        g_a = np.empty(m[j], dtype=gy.dtype)
        _row_analyze(g, lo_reversed, g_a)
        g = g_a
    grad_c[0:m[levels]] = g


# the batch loops: each row is independent, so rows run in parallel
@numba.njit(parallel=True, cache=True)
def fwt_fused(x, lo, hi, m, detail_at, stored_at, out, stored):
    for b in numba.prange(x.shape[0]):
        _row_fwt(x[b], lo, hi, m, detail_at, stored_at, out[b], stored[b])


@numba.njit(parallel=True, cache=True)
def fwt_fused_backward(g, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_x,
                       grad_filters, need_filters):
    for b in numba.prange(g.shape[0]):
        _row_fwt_backward(g[b], stored[b], lo_reversed, hi_reversed, m, detail_at, stored_at,
                          grad_x[b], grad_filters[b], need_filters)


@numba.njit(parallel=True, cache=True)
def ifwt_fused(c, lo, hi, m, detail_at, stored_at, y, stored):
    for b in numba.prange(c.shape[0]):
        _row_ifwt(c[b], lo, hi, m, detail_at, stored_at, y[b], stored[b])


@numba.njit(parallel=True, cache=True)
def ifwt_fused_backward(gy, c, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_c,
                        grad_filters, need_filters):
    for b in numba.prange(gy.shape[0]):
        _row_ifwt_backward(gy[b], c[b], stored[b], lo_reversed, hi_reversed, m, detail_at, stored_at,
                           grad_c[b], grad_filters[b], need_filters)
