"""Batched multi-level 1-D fast wavelet transform (zero padding): NumPy, Numba and CuPy kernels.

Index conventions (checked against PyWavelets, mode='zero'):

* analysis of a signal x of length m with a filter f of length L gives
  N = floor((m + L - 1) / 2) coefficients  c[o] = sum_j f[j] x[2o + 1 - j]
  (x is zero outside [0, m)): the odd samples of the full convolution f * x;
* synthesis of coefficients c (length N) gives  y[i] = sum_o f[i + L - 2 - 2o] c[o]
  for i in [0, M); PyWavelets keeps M = 2N - L + 2, the layer crops to the
  original length.

The adjoint of analysis with f is synthesis with f reversed and vice versa, so
the backward passes reuse the same three primitives: ``analyze``, ``synthesize``
and ``analyze_filter_grad``. Each primitive has a NumPy/CuPy version (gather +
matmul, xp taken from the input) and a Numba CPU version, chosen by
``implementation``; setting COMPACTNET_DISABLE_NUMBA=1 forces the NumPy path.
"""
import os

import numpy as np

from .. import backend

IMPLEMENTATIONS = ("numpy", "numba")

_numba_kernels = None
_numba_checked = False


# ---------------------------------------------------------------- dispatch
def numba_available():
    """True when numba imports and COMPACTNET_DISABLE_NUMBA is not set."""
    return _load_numba() is not None


def implementation(x, impl=None):
    """The kernel family for array x: 'cupy' for GPU arrays, else impl or the fastest available."""
    if backend.is_gpu_array(x):
        return "cupy"
    if impl is None:
        return "numba" if numba_available() else "numpy"
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"wavelet kernels: impl must be one of {IMPLEMENTATIONS} or None, got {impl!r}")
    if impl == "numba" and not numba_available():
        raise RuntimeError("wavelet kernels: impl='numba' requested but numba is not importable "
                           "(or COMPACTNET_DISABLE_NUMBA=1 is set)")
    return impl


def analyze(x, filters, n_out, impl=None):
    """c[b, k, o] = sum_j filters[k, j] x[b, 2o + 1 - j]; x (B, m), filters (K, L) -> (B, K, n_out)."""
    if implementation(x, impl) == "numba":
        out = np.zeros((x.shape[0], filters.shape[0], n_out), dtype=x.dtype)
        _numba_kernel("analyze", out.size * filters.shape[1])(x, filters, out)
        return out
    return _analyze_xp(x, filters, n_out)


def synthesize(c, filters, n_out, impl=None):
    """y[b, i] = sum_k sum_o filters[k, i + L - 2 - 2o] c[b, k, o]; c (B, K, N) -> (B, n_out)."""
    if implementation(c, impl) == "numba":
        out = np.zeros((c.shape[0], n_out), dtype=c.dtype)
        _numba_kernel("synthesize", c.size * filters.shape[1])(c, filters, out)
        return out
    return _synthesize_xp(c, filters, n_out)


def analyze_filter_grad(x, grad_c, filter_length, impl=None):
    """Gradient of analyze() w.r.t. its filters: g[k, j] = sum_{b,o} grad_c[b, k, o] x[b, 2o + 1 - j].

    x (B, m), grad_c (B, K, N) -> (K, filter_length).
    """
    if implementation(x, impl) == "numba":
        out = np.zeros((grad_c.shape[1], filter_length), dtype=x.dtype)
        _numba_kernel("filter_grad", grad_c.size * filter_length)(x, grad_c, out)
        return out
    return _filter_grad_xp(x, grad_c, filter_length)


# ---------------------------------------------------------------- sizes
def band_length(m, filter_length):
    """Coefficients per band after one analysis level of a length-m signal."""
    return (m + filter_length - 1) // 2


def signal_lengths(n, filter_length, levels):
    """[m_0 = n, m_1, ..., m_J]: the approximation length entering/leaving each level."""
    lengths = [int(n)]
    for _ in range(levels):
        lengths.append(band_length(lengths[-1], filter_length))
    return lengths


def coefficient_lengths(n, filter_length, levels):
    """Band lengths in output order [cA_J, cD_J, ..., cD_1]."""
    m = signal_lengths(n, filter_length, levels)
    return [m[-1]] + m[:0:-1]


# ---------------------------------------------------------------- multi-level transforms
def _as_batch(x):
    return x.reshape(-1, x.shape[-1])


def _filter_pair(lo, hi, dtype):
    xp = backend.xp_of(lo, hi)
    if lo.shape != hi.shape or lo.ndim != 1 or lo.shape[0] < 2:
        raise ValueError(f"wavelet kernels: the two filters must be 1-D of one length >= 2, got shapes "
                         f"{tuple(lo.shape)} and {tuple(hi.shape)}")
    return xp.ascontiguousarray(xp.stack([lo, hi]).astype(dtype, copy=False))


def fwt(x, dec_lo, dec_hi, levels, impl=None, return_inputs=False):
    """Multi-level analysis along the last axis: [cA_J, cD_J, ..., cD_1] like pywt.wavedec(mode='zero').

    With return_inputs=True also returns the approximations fed to each level (what the filter
    gradients need), as (B, m_j) arrays.
    """
    if levels < 1:
        raise ValueError(f"fwt: levels must be >= 1, got {levels}")
    lead = x.shape[:-1]
    filters = _filter_pair(dec_lo, dec_hi, x.dtype)
    a = _as_batch(x)
    a = a if a.flags.c_contiguous else a.copy()
    details, inputs = [], []
    for _ in range(levels):
        inputs.append(a)
        c = analyze(a, filters, band_length(a.shape[1], filters.shape[1]), impl)
        a = c[:, 0]
        a = a.copy() if not a.flags.c_contiguous else a
        details.append(c[:, 1])
    coeffs = [a] + details[::-1]
    coeffs = [c.reshape(lead + (c.shape[-1],)) for c in coeffs]
    return (coeffs, inputs) if return_inputs else coeffs


def _output_lengths(coeffs, filter_length, lengths):
    """Length of each synthesis level's output, outermost (level 1) first: [m_0, ..., m_{J-1}]."""
    levels = len(coeffs) - 1
    if lengths is not None:
        lengths = [int(v) for v in lengths]
        if len(lengths) != levels:
            raise ValueError(f"ifwt: lengths needs one entry per level ({levels}), got {len(lengths)}")
        return lengths
    details = [c.shape[-1] for c in coeffs[1:]][::-1]       # [N_1, ..., N_J]
    return [2 * details[0] - filter_length + 2] + details[:-1]


def ifwt(coeffs, rec_lo, rec_hi, lengths=None, impl=None, return_inputs=False):
    """Multi-level synthesis: like pywt.waverec(coeffs, mode='zero'), or cropped to `lengths`.

    lengths = [m_0, ..., m_{J-1}], the signal length entering each analysis level (m_0 = n);
    each level's output is cropped to it. Without lengths, inner levels are cropped to the next
    detail band (PyWavelets drops the approximation's extra sample) and the outer one keeps 2N-L+2.
    With return_inputs=True also returns the (B, 2, N_j) stacked [approximation, detail] fed to
    each level, level 1 first (what the filter gradients need).
    """
    if len(coeffs) < 2:
        raise ValueError(f"ifwt: need [cA_J, cD_J, ..., cD_1] with at least one detail band, "
                         f"got {len(coeffs)} arrays")
    xp = backend.xp_of(*coeffs)
    lead = coeffs[0].shape[:-1]
    dtype = coeffs[0].dtype
    filters = _filter_pair(rec_lo, rec_hi, dtype)
    out_lengths = _output_lengths(coeffs, filters.shape[1], lengths)
    a = _as_batch(coeffs[0])
    inputs = []
    for j, d in enumerate(coeffs[1:]):
        level = len(coeffs) - 1 - j                      # J, J-1, ..., 1
        d = _as_batch(d)
        if a.shape != d.shape:
            raise ValueError(f"ifwt: at level {level} the approximation has shape {tuple(a.shape)} "
                             f"but the detail band has {tuple(d.shape)}; coefficients and lengths "
                             "are inconsistent")
        m = out_lengths[level - 1]
        full = 2 * d.shape[1] - filters.shape[1] + 2
        if not 1 <= m <= full:
            raise ValueError(f"ifwt: level {level} can give at most {full} samples from "
                             f"{d.shape[1]} coefficients, asked for {m}")
        c = xp.ascontiguousarray(xp.stack([a, d], axis=1))
        inputs.append(c)
        a = synthesize(c, filters, m, impl)
    y = a.reshape(lead + (a.shape[-1],))
    return (y, inputs[::-1]) if return_inputs else y


def fwt_backward(grad_coeffs, inputs, dec_lo, dec_hi, need_x=True, need_filters=True, impl=None):
    """Gradients of fwt for the output gradients [g_cA_J, g_cD_J, ..., g_cD_1].

    inputs: the approximations fed to each level (from fwt(return_inputs=True)).
    Returns (grad_x of shape lead + (n,), grad_dec_lo, grad_dec_hi); None where not needed.
    """
    xp = backend.xp_of(*grad_coeffs)
    lead = grad_coeffs[0].shape[:-1]
    dtype = grad_coeffs[0].dtype
    filters = _filter_pair(dec_lo, dec_hi, dtype)
    reversed_filters = xp.ascontiguousarray(filters[:, ::-1])
    L = filters.shape[1]
    g_filters = xp.zeros((2, L), dtype=dtype) if need_filters else None
    g_a = _as_batch(grad_coeffs[0])
    levels = len(grad_coeffs) - 1
    for j, g_d in enumerate(grad_coeffs[1:]):
        level = levels - j
        g_c = xp.ascontiguousarray(xp.stack([g_a, _as_batch(g_d)], axis=1))
        x_in = inputs[level - 1]
        if need_filters:
            g_filters += analyze_filter_grad(x_in, g_c, L, impl)
        if level > 1 or need_x:
            g_a = synthesize(g_c, reversed_filters, x_in.shape[1], impl)
    grad_x = g_a.reshape(lead + (g_a.shape[-1],)) if need_x else None
    if need_filters:
        return grad_x, g_filters[0], g_filters[1]
    return grad_x, None, None


def ifwt_backward(grad_y, inputs, rec_lo, rec_hi, need_coeffs=True, need_filters=True, impl=None):
    """Gradients of ifwt for the output gradient grad_y.

    inputs: the stacked (B, 2, N_j) [approximation, detail] fed to each level, level 1 first
    (from ifwt(return_inputs=True)). Returns (list of coefficient gradients in
    [cA_J, cD_J, ..., cD_1] order or None, grad_rec_lo, grad_rec_hi).
    """
    xp = backend.xp_of(grad_y)
    lead = grad_y.shape[:-1]
    dtype = grad_y.dtype
    filters = _filter_pair(rec_lo, rec_hi, dtype)
    reversed_filters = xp.ascontiguousarray(filters[:, ::-1])
    L = filters.shape[1]
    g_filters = xp.zeros((2, L), dtype=dtype) if need_filters else None
    g = _as_batch(grad_y)
    g = g if g.flags.c_contiguous else g.copy()
    details = []
    for level, c in enumerate(inputs, start=1):
        if need_filters:
            # synthesis filter gradient = reversed analysis filter gradient with roles swapped
            g_filters += analyze_filter_grad(g, c, L, impl)[:, ::-1]
        if need_coeffs:
            g_c = analyze(g, reversed_filters, c.shape[2], impl)
            details.append(g_c[:, 1])
            g = xp.ascontiguousarray(g_c[:, 0])
        elif level < len(inputs):
            g = analyze(g, reversed_filters, c.shape[2], impl)[:, 0].copy()
    grads = None
    if need_coeffs:
        grads = [g] + details[::-1]
        grads = [a.reshape(lead + (a.shape[-1],)) for a in grads]
    if need_filters:
        return grads, g_filters[0], g_filters[1]
    return grads, None, None


# ---------------------------------------------------------------- NumPy / CuPy primitives
def _analyze_windows(x, filter_length, n_out):
    """windows[b, o, j] = x[b, 2o + 1 - j] (zero outside the signal)."""
    xp = backend.xp_of(x)
    batch, m = x.shape
    L = filter_length
    width = max(2 * n_out + L - 1, m + L - 1)
    padded = xp.zeros((batch, width), dtype=x.dtype)
    padded[:, L - 1:L - 1 + m] = x
    index = 2 * xp.arange(n_out)[:, None] + L - xp.arange(L)[None, :]   # (2o+1-j) + (L-1)
    return padded[:, index]


def _analyze_xp(x, filters, n_out):
    windows = _analyze_windows(x, filters.shape[1], n_out)          # (B, N, L)
    return (windows @ filters.T).transpose(0, 2, 1)                  # (B, K, N)


def _filter_grad_xp(x, grad_c, filter_length):
    windows = _analyze_windows(x, filter_length, grad_c.shape[2])   # (B, N, L)
    batch, bands, n = grad_c.shape
    g = grad_c.transpose(1, 0, 2).reshape(bands, batch * n)
    return g @ windows.reshape(batch * n, filter_length)


def _synthesize_xp(c, filters, n_out):
    xp = backend.xp_of(c)
    batch, bands, n = c.shape
    L = filters.shape[1]
    # tap t of every band sends c[o] to y[i] with i + (L - 2) = 2o + t: one matmul for the
    # products, then L strided adds into a buffer shifted by L - 2
    products = c.transpose(0, 2, 1) @ filters                        # (B, N, L)
    buffer = xp.zeros((batch, max(2 * n + L - 1, n_out + L - 2)), dtype=c.dtype)
    for t in range(L):
        buffer[:, t:t + 2 * n - 1:2] += products[:, :, t]
    return buffer[:, L - 2:L - 2 + n_out]


# ---------------------------------------------------------------- Numba primitives
def _load_numba():
    """The Numba kernel module (compiled lazily, cached on disk); None without numba or when disabled."""
    global _numba_kernels, _numba_checked
    if os.environ.get("COMPACTNET_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    if not _numba_checked:
        _numba_checked = True
        try:
            from . import wavelet_numba
            _numba_kernels = wavelet_numba
        except ImportError:
            _numba_kernels = None
    return _numba_kernels


# below this many multiply-adds a call runs single-threaded (starting threads costs more)
PARALLEL_MIN_WORK = 200_000


def _numba_kernel(name, work):
    return getattr(_load_numba(), name + ("_parallel" if work >= PARALLEL_MIN_WORK else "_serial"))
