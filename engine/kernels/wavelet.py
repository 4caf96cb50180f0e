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
``implementation``; COMPACTNET_DISABLE_NUMBA=1 (see engine.kernels) forces the NumPy path. The packed
transforms at the end (bands concatenated, as WaveletLinear uses them) run every level in one
fused Numba call per direction when Numba is active.
"""
import functools

import numpy as np

from .. import backend, buffers
from . import load_numba_module, pays_to_thread

IMPLEMENTATIONS = ("numpy", "numba")


# ---------------------------------------------------------------- dispatch
def numba_available():
    """True when numba imports and COMPACTNET_DISABLE_NUMBA does not disable it."""
    return load_numba_module("wavelet_numba") is not None


def available_implementations():
    """The CPU kernel families usable here ('numpy', plus 'numba' when it imports and is enabled)."""
    return ("numpy", "numba") if numba_available() else ("numpy",)


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
                           "(or COMPACTNET_DISABLE_NUMBA disables it)")
    return impl


_resolve = implementation   # fwt/ifwt take a keyword named `implementation`


def analyze(x, filters, n_out, impl=None):
    """c[b, k, o] = sum_j filters[k, j] x[b, 2o + 1 - j]; x (B, m), filters (K, L) -> (B, K, n_out)."""
    return _analyze(implementation(x, impl), x, filters, n_out)


def synthesize(c, filters, n_out, impl=None):
    """y[b, i] = sum_k sum_o filters[k, i + L - 2 - 2o] c[b, k, o]; c (B, K, N) -> (B, n_out)."""
    return _synthesize(implementation(c, impl), c, filters, n_out)


def analyze_filter_grad(x, grad_c, filter_length, impl=None):
    """Gradient of analyze() w.r.t. its filters: g[k, j] = sum_{b,o} grad_c[b, k, o] x[b, 2o + 1 - j].

    x (B, m), grad_c (B, K, N) -> (K, filter_length).
    """
    return _filter_grad(implementation(x, impl), x, grad_c, filter_length)


# the multi-level functions resolve the implementation once and call these directly
def _analyze(impl, x, filters, n_out):
    if impl == "numba":
        out = np.zeros((x.shape[0], filters.shape[0], n_out), dtype=x.dtype)
        _numba_kernel("analyze", out.size * filters.shape[1])(x, filters, out)
        return out
    return _analyze_xp(x, filters, n_out)


def _synthesize(impl, c, filters, n_out):
    if impl == "numba":
        out = np.zeros((c.shape[0], n_out), dtype=c.dtype)
        _numba_kernel("synthesize", c.size * filters.shape[1])(c, filters, out)
        return out
    return _synthesize_xp(c, filters, n_out)


def _filter_grad(impl, x, grad_c, filter_length):
    if impl == "numba":
        out = np.zeros((grad_c.shape[1], filter_length), dtype=x.dtype)
        _numba_kernel("filter_grad", grad_c.size * filter_length)(x, grad_c, out)
        return out
    return _filter_grad_xp(x, grad_c, filter_length)


def _pair(xp, a, d):
    """(B, 2, N) buffer holding a and d (cheaper than xp.stack for these small arrays)."""
    out = xp.empty((a.shape[0], 2, a.shape[1]), dtype=a.dtype)
    out[:, 0] = a
    out[:, 1] = d
    return out


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


def fwt(x, dec_lo, dec_hi, levels, impl=None, return_inputs=False, implementation=None):
    """Multi-level analysis along the last axis: [cA_J, cD_J, ..., cD_1] like pywt.wavedec(mode='zero').

    With return_inputs=True also returns the approximations fed to each level (what the filter
    gradients need), as (B, m_j) arrays. `implementation` is an alias of `impl`.
    """
    impl = _resolve(x, impl or implementation)
    if levels < 1:
        raise ValueError(f"fwt: levels must be >= 1, got {levels}")
    lead = x.shape[:-1]
    filters = _filter_pair(dec_lo, dec_hi, x.dtype)
    a = _as_batch(x)
    a = a if a.flags.c_contiguous else a.copy()
    details, inputs = [], []
    for _ in range(levels):
        inputs.append(a)
        c = _analyze(impl, a, filters, band_length(a.shape[1], filters.shape[1]))
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


def ifwt(coeffs, rec_lo, rec_hi, lengths=None, impl=None, return_inputs=False, implementation=None):
    """Multi-level synthesis: like pywt.waverec(coeffs, mode='zero'), or cropped to `lengths`.

    lengths = [m_0, ..., m_{J-1}], the signal length entering each analysis level (m_0 = n);
    each level's output is cropped to it. Without lengths, inner levels are cropped to the next
    detail band (PyWavelets drops the approximation's extra sample) and the outer one keeps 2N-L+2.
    With return_inputs=True also returns the (B, 2, N_j) stacked [approximation, detail] fed to
    each level, level 1 first (what the filter gradients need). `implementation` aliases `impl`.
    """
    impl = impl or implementation
    if len(coeffs) < 2:
        raise ValueError(f"ifwt: need [cA_J, cD_J, ..., cD_1] with at least one detail band, "
                         f"got {len(coeffs)} arrays")
    xp = backend.xp_of(*coeffs)
    impl = _resolve(coeffs[0], impl)
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
        c = _pair(xp, a, d)
        inputs.append(c)
        a = _synthesize(impl, c, filters, m)
    y = a.reshape(lead + (a.shape[-1],))
    return (y, inputs[::-1]) if return_inputs else y


def fwt_backward(grad_coeffs, inputs, dec_lo, dec_hi, need_x=True, need_filters=True, impl=None):
    """Gradients of fwt for the output gradients [g_cA_J, g_cD_J, ..., g_cD_1].

    inputs: the approximations fed to each level (from fwt(return_inputs=True)).
    Returns (grad_x of shape lead + (n,), grad_dec_lo, grad_dec_hi); None where not needed.
    """
    xp = backend.xp_of(*grad_coeffs)
    impl = implementation(grad_coeffs[0], impl)
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
        g_c = _pair(xp, g_a, _as_batch(g_d))
        x_in = inputs[level - 1]
        if need_filters:
            g_filters += _filter_grad(impl, x_in, g_c, L)
        if level > 1 or need_x:
            g_a = _synthesize(impl, g_c, reversed_filters, x_in.shape[1])
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
    impl = implementation(grad_y, impl)
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
            g_filters += _filter_grad(impl, g, c, L)[:, ::-1]
        if need_coeffs:
            g_c = _analyze(impl, g, reversed_filters, c.shape[2])
            details.append(g_c[:, 1])
            g = xp.ascontiguousarray(g_c[:, 0])
        elif level < len(inputs):
            g = _analyze(impl, g, reversed_filters, c.shape[2])[:, 0].copy()
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
def _numba_kernel(name, work):
    """The serial or parallel copy of Numba kernel `name`, by the call's multiply-adds."""
    kernels = load_numba_module("wavelet_numba")
    return getattr(kernels, name + ("_parallel" if pays_to_thread(work) else "_serial"))


# ---------------------------------------------------------------- packed transforms (what the layer uses)
# The layer works on the bands concatenated along the last axis ([cA_J, cD_J, ..., cD_1], band k
# starting where the bands before it end). With Numba these run the fused kernels (one call for
# all levels); otherwise the level-by-level functions above. `state` carries what backward needs.

@functools.lru_cache(maxsize=64)
def _packed_layout(n, filter_length, levels):
    """int64 arrays: lengths m[0..J], cD_j's start in the packed row, and the two stores' offsets.
    Cached per shape (every forward and backward of a layer asks for the same one), so they are
    read-only: the kernels only read them."""
    m = signal_lengths(n, filter_length, levels)
    detail_at = [0] * (levels + 1)
    detail_at[levels] = m[levels]
    for j in range(levels - 1, 0, -1):
        detail_at[j] = detail_at[j + 1] + m[j + 1]
    analysis_at = [0] * levels                 # approximation entering analysis level j + 1
    for j in range(1, levels):
        analysis_at[j] = analysis_at[j - 1] + m[j - 1]
    synthesis_at = [0] * (levels + 1)          # approximation entering synthesis level j (1..J)
    for j in range(2, levels + 1):
        synthesis_at[j] = synthesis_at[j - 1] + m[j - 1]
    layout = tuple(np.asarray(v, dtype=np.int64) for v in (m, detail_at, analysis_at, synthesis_at))
    for array in layout:
        array.flags.writeable = False
    return layout


def _contiguous_filters(lo, hi, dtype, reverse=False):
    step = -1 if reverse else 1
    return tuple(np.ascontiguousarray(f[::step].astype(dtype, copy=False)) for f in (lo, hi))


_scratch = {}


def _scratch_buffer(shape, dtype, zeroed=False):
    """A reused work array for state nobody will read (no backward): fresh large allocations
    cost more than the transform itself here (first-touch page faults). zeroed: one that starts as zeros,
    for callers that write only parts of it and rely on the rest staying zero (wavelet_inference's
    sideways pass); it is kept apart from the plain ones."""
    key = (tuple(shape), np.dtype(dtype).str, zeroed)
    buf = _scratch.get(key)
    if buf is None:
        if len(_scratch) > 32:
            _scratch.clear()
        buf = _scratch[key] = buffers.aligned_empty(shape, dtype, zeroed)
    return buf


def fwt_packed(x, dec_lo, dec_hi, levels, impl=None, keep_state=True):
    """fwt with the bands concatenated on the last axis; returns (packed, state for the backward).

    keep_state=False (inference) skips keeping the per-level inputs; the state is then None.
    """
    impl = implementation(x, impl)
    n, L = x.shape[-1], dec_lo.shape[0]
    if impl != "numba":
        coeffs, inputs = fwt(x, dec_lo, dec_hi, levels, impl, return_inputs=True)
        packed = backend.xp_of(x).concatenate(coeffs, axis=-1)
        return packed, ("levels", inputs, [c.shape[-1] for c in coeffs])
    m, detail_at, analysis_at, _ = _packed_layout(n, L, levels)
    rows = np.ascontiguousarray(_as_batch(x))
    out = np.empty((rows.shape[0], sum(coefficient_lengths(n, L, levels))), dtype=x.dtype)
    stored_shape = (rows.shape[0], int(m[:levels].sum()))
    stored = np.empty(stored_shape, x.dtype) if keep_state else _scratch_buffer(stored_shape, x.dtype)
    lo, hi = _contiguous_filters(dec_lo, dec_hi, x.dtype)
    kernel = _numba_kernel("fwt_fused", rows.size * 2 * L)
    kernel(rows, lo, hi, m, detail_at, analysis_at, out, stored)
    state = ("fused", stored, n, levels) if keep_state else None
    return out.reshape(x.shape[:-1] + (out.shape[-1],)), state


def fwt_packed_backward(grad, state, dec_lo, dec_hi, need_x=True, need_filters=True, impl=None):
    """Gradients (x, dec_lo, dec_hi) of fwt_packed for the packed output gradient."""
    if state[0] == "levels":
        _, inputs, sizes = state
        bounds = np.cumsum([0] + sizes)
        grads = [grad[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return fwt_backward(grads, inputs, dec_lo, dec_hi, need_x, need_filters, impl)
    _, stored, n, levels = state
    L = dec_lo.shape[0]
    m, detail_at, analysis_at, _ = _packed_layout(n, L, levels)
    rows = np.ascontiguousarray(_as_batch(grad))
    lo_r, hi_r = _contiguous_filters(dec_lo, dec_hi, grad.dtype, reverse=True)
    grad_x = np.empty((rows.shape[0], n), dtype=grad.dtype)
    grad_filters = np.zeros((rows.shape[0], 2, L), dtype=grad.dtype)
    kernel = _numba_kernel("fwt_fused_backward", rows.shape[0] * n * 2 * L)
    kernel(rows, stored, lo_r, hi_r, m, detail_at, analysis_at, grad_x, grad_filters,
           bool(need_filters))
    gx = grad_x.reshape(grad.shape[:-1] + (n,)) if need_x else None
    if not need_filters:
        return gx, None, None
    total = grad_filters.sum(axis=0)
    return gx, total[0], total[1]


def ifwt_packed(c, rec_lo, rec_hi, sizes, lengths, impl=None, keep_state=True):
    """ifwt of packed bands of the given sizes, cropped to `lengths`; returns (y, state).

    keep_state=False (inference) skips keeping the per-level inputs; the state is then None.
    """
    impl = implementation(c, impl)
    sizes, L = [int(v) for v in sizes], rec_lo.shape[0]
    levels = len(sizes) - 1
    n = int(lengths[0]) if lengths is not None else None
    fused = (impl == "numba" and n is not None
             and sizes == coefficient_lengths(n, L, levels)
             and [int(v) for v in lengths] == signal_lengths(n, L, levels)[:-1])
    if not fused:
        bounds = np.cumsum([0] + sizes)
        coeffs = [c[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        y, inputs = ifwt(coeffs, rec_lo, rec_hi, lengths, impl, return_inputs=True)
        return y, ("levels", inputs)
    m, detail_at, _, synthesis_at = _packed_layout(n, L, levels)
    rows = np.ascontiguousarray(_as_batch(c))
    y = np.empty((rows.shape[0], n), dtype=c.dtype)
    stored_shape = (rows.shape[0], int(m[1:].sum()))
    stored = np.empty(stored_shape, c.dtype) if keep_state else _scratch_buffer(stored_shape, c.dtype)
    lo, hi = _contiguous_filters(rec_lo, rec_hi, c.dtype)
    kernel = _numba_kernel("ifwt_fused", rows.shape[0] * n * 2 * L)
    kernel(rows, lo, hi, m, detail_at, synthesis_at, y, stored)
    state = ("fused", rows, stored, n, levels) if keep_state else None
    return y.reshape(c.shape[:-1] + (n,)), state


def ifwt_packed_backward(grad_y, state, rec_lo, rec_hi, need_coeffs=True, need_filters=True, impl=None):
    """Gradients (packed coefficients, rec_lo, rec_hi) of ifwt_packed."""
    if state[0] == "levels":
        grads, glo, ghi = ifwt_backward(grad_y, state[1], rec_lo, rec_hi, need_coeffs, need_filters, impl)
        gc = backend.xp_of(grad_y).concatenate(grads, axis=-1) if grads is not None else None
        return gc, glo, ghi
    _, rows, stored, n, levels = state
    L = rec_lo.shape[0]
    m, detail_at, _, synthesis_at = _packed_layout(n, L, levels)
    g = np.ascontiguousarray(_as_batch(grad_y))
    lo_r, hi_r = _contiguous_filters(rec_lo, rec_hi, grad_y.dtype, reverse=True)
    grad_c = np.empty_like(rows)
    grad_filters = np.zeros((rows.shape[0], 2, L), dtype=grad_y.dtype)
    kernel = _numba_kernel("ifwt_fused_backward", rows.shape[0] * n * 2 * L)
    kernel(g, rows, stored, lo_r, hi_r, m, detail_at, synthesis_at, grad_c, grad_filters,
           bool(need_filters))
    gc = grad_c.reshape(grad_y.shape[:-1] + (rows.shape[1],)) if need_coeffs else None
    if not need_filters:
        return gc, None, None
    total = grad_filters.sum(axis=0)
    return gc, total[0], total[1]
