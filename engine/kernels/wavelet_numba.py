"""Numba CPU kernels of the wavelet primitives (imported only when Numba is wanted; see wavelet.py).

Each body is compiled twice, single-threaded and parallel over the batch; wavelet.py picks one
by the amount of work. The copies get their own names so Numba's on-disk cache keeps them apart.
"""
import numba
import numpy as np

from .serial_and_parallel import serial_and_parallel


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


analyze_serial, analyze_parallel = serial_and_parallel(_analyze, "analyze")
synthesize_serial, synthesize_parallel = serial_and_parallel(_synthesize, "synthesize")
filter_grad_serial, filter_grad_parallel = serial_and_parallel(_filter_grad, "filter_grad")


# ---------------------------------------------------------------- fused multi-level kernels
# One call runs every level for one batch row (parallel over rows), so a J-level transform costs
# one dispatch instead of J; coefficients are packed [cA_J, cD_J, ..., cD_1] on the last axis.
# m[j] is the approximation length entering level j + 1 (m[0] = n); detail_at[j] is where cD_j
# starts in the packed row; stored_at[j] where the level-j approximation is kept for backward.

# The row kernels index shifted views by the loop counter alone: an index such as 2o + 1 - j
# would get Numba's negative-index wraparound, which slows every access.
@numba.njit(cache=True)
def _analysis_span(m, n, j):
    """(o0, o1, first): the outputs o in [o0, o1) (o < n) whose input 2o + 1 - j lies in [0, m),
    and that input index for o0."""
    o0 = j // 2
    o1 = max(o0, min(n, (m - 2 + j) // 2 + 1))
    return o0, o1, 2 * o0 + 1 - j


@numba.njit(cache=True)
def _synthesis_span(n, n_out, t, L):
    """(o0, o1, first): the inputs o in [o0, o1) (o < n) whose output 2o + t - (L - 2) lies in
    [0, n_out), and that output index for o0."""
    shift = t - (L - 2)
    o0 = max(0, (1 - shift) // 2)
    o1 = max(o0, min(n, (n_out - 1 - shift) // 2 + 1))
    return o0, o1, 2 * o0 + shift


@numba.njit(cache=True)
def _row_analyze(x, f, out):
    """out[o] = sum_j f[j] x[2o + 1 - j] (x zero outside its length)."""
    out[:] = 0
    for j in range(f.shape[0]):
        o0, o1, first = _analysis_span(x.shape[0], out.shape[0], j)
        fj, taps, dst = f[j], x[first::2], out[o0:o1]
        for k in range(o1 - o0):
            dst[k] += fj * taps[k]


@numba.njit(cache=True)
def _row_synthesize_add(c, f, out):
    """out[2o + t - (L - 2)] += f[t] c[o] inside out's length."""
    L = f.shape[0]
    for t in range(L):
        o0, o1, first = _synthesis_span(c.shape[0], out.shape[0], t, L)
        ft, dst, src = f[t], out[first::2], c[o0:o1]
        for k in range(o1 - o0):
            dst[k] += ft * src[k]


@numba.njit(cache=True)
def _row_analysis_filter_grad_add(x, g, out):
    """out[j] += sum_o g[o] x[2o + 1 - j]."""
    for j in range(out.shape[0]):
        o0, o1, first = _analysis_span(x.shape[0], g.shape[0], j)
        taps, grads = x[first::2], g[o0:o1]
        acc = out[j]
        for k in range(o1 - o0):
            acc += grads[k] * taps[k]
        out[j] = acc


@numba.njit(cache=True)
def _row_synthesis_filter_grad_add(c, gy, out):
    """out[t] += sum_o c[o] gy[2o + t - (L - 2)] inside gy's length."""
    L = out.shape[0]
    for t in range(L):
        o0, o1, first = _synthesis_span(c.shape[0], gy.shape[0], t, L)
        taps, coeffs = gy[first::2], c[o0:o1]
        acc = out[t]
        for k in range(o1 - o0):
            acc += coeffs[k] * taps[k]
        out[t] = acc


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


# Polyphase forms of the forward transforms: splitting the signal (or the output) into even and
# odd samples turns each stride-2 filter into two unit-stride convolutions whose inner loop runs
# over outputs, which the compiler vectorises; both bands come from one pass over the input.
@numba.njit(cache=True, fastmath={"contract"})
def _analyze_pair(x, lo, hi, a_out, d_out, even, odd):
    """a_out[o] = sum_j lo[j] x[2o + 1 - j], d_out likewise with hi (x zero outside its length)."""
    L, m, n_out = lo.shape[0], x.shape[0], a_out.shape[0]
    half = (L + 1) // 2
    zero = lo.dtype.type(0)     # a float literal would turn float32 taps into float64 arithmetic
    # zero only what the samples do not overwrite: the leading pad and the tails
    for k in range(half):
        even[k] = zero
        odd[k] = zero
    for k in range(half + (m + 1) // 2, n_out + 2 * half):
        even[k] = zero
    for k in range(half + m // 2, n_out + 2 * half):
        odd[k] = zero
    even_body, odd_body = even[half:], odd[half:]
    # both samples of a pair in one loop: the compiler loads them with shuffles, not gathers
    for k in range(m // 2):
        even_body[k] = x[2 * k]
        odd_body[k] = x[2 * k + 1]
    if m % 2:
        even_body[m // 2] = x[m - 1]
    # three tap pairs per pass over the outputs (taps past the filter get zero coefficients and
    # repeat a valid view): fewer loads and stores of the outputs per multiply-add. Shifted views
    # are indexed by the loop counter alone: an index like o - i + half would get Numba's
    # negative-index wraparound, which stops the loop from vectorising (2x slower)
    for i0 in range(0, half, 3):
        (lo_e0, lo_o0), (lo_e1, lo_o1), (lo_e2, lo_o2) = _tap_group(lo, i0, zero)
        (hi_e0, hi_o0), (hi_e1, hi_o1), (hi_e2, hi_o2) = _tap_group(hi, i0, zero)
        j1, j2 = min(i0 + 1, half - 1), min(i0 + 2, half - 1)     # zero taps: any valid view serves
        e0, q0 = even[half - i0:half - i0 + n_out], odd[half - i0:half - i0 + n_out]
        e1, q1 = even[half - j1:half - j1 + n_out], odd[half - j1:half - j1 + n_out]
        e2, q2 = even[half - j2:half - j2 + n_out], odd[half - j2:half - j2 + n_out]
        if i0 == 0:
            for o in range(n_out):
                a_out[o] = lo_o0 * e0[o] + lo_e0 * q0[o] + lo_o1 * e1[o] + lo_e1 * q1[o] \
                    + lo_o2 * e2[o] + lo_e2 * q2[o]
                d_out[o] = hi_o0 * e0[o] + hi_e0 * q0[o] + hi_o1 * e1[o] + hi_e1 * q1[o] \
                    + hi_o2 * e2[o] + hi_e2 * q2[o]
        else:
            for o in range(n_out):
                a_out[o] += lo_o0 * e0[o] + lo_e0 * q0[o] + lo_o1 * e1[o] + lo_e1 * q1[o] \
                    + lo_o2 * e2[o] + lo_e2 * q2[o]
                d_out[o] += hi_o0 * e0[o] + hi_e0 * q0[o] + hi_o1 * e1[o] + hi_e1 * q1[o] \
                    + hi_o2 * e2[o] + hi_e2 * q2[o]


@numba.njit(cache=True)
def _tap_pair(f, i, zero):
    """(f[2i], f[2i + 1]), zero past the filter's end."""
    L = f.shape[0]
    return (f[2 * i] if 2 * i < L else zero), (f[2 * i + 1] if 2 * i + 1 < L else zero)


@numba.njit(cache=True)
def _tap_group(f, i0, zero):
    """The (even, odd) taps of tap pairs i0, i0 + 1, i0 + 2 of f (zero past its end)."""
    return _tap_pair(f, i0, zero), _tap_pair(f, i0 + 1, zero), _tap_pair(f, i0 + 2, zero)


@numba.njit(cache=True, fastmath={"contract"})
def _synthesize_pair(a, d, lo, hi, out, bufs):
    """out[2o + t - (L - 2)] = sum over o, t of lo[t] a[o] + hi[t] d[o], cropped to out's length."""
    L, n, n_out = lo.shape[0], a.shape[0], out.shape[0]
    half = (L + 1) // 2
    zero = lo.dtype.type(0)
    shift = L - 2
    count = (n_out + shift) // 2 + 1
    a_pad, d_pad, y_even, y_odd = bufs[0], bufs[1], bufs[2], bufs[3]
    for k in range(half):
        a_pad[k] = zero
        d_pad[k] = zero
    for k in range(half + min(n, count), count + half):
        a_pad[k] = zero
        d_pad[k] = zero
    a_body, d_body = a_pad[half:], d_pad[half:]
    for k in range(min(n, count)):
        a_body[k] = a[k]
        d_body[k] = d[k]
    for k0 in range(0, half, 3):        # three tap pairs per pass, as in _analyze_pair
        (lo_e0, lo_o0), (lo_e1, lo_o1), (lo_e2, lo_o2) = _tap_group(lo, k0, zero)
        (hi_e0, hi_o0), (hi_e1, hi_o1), (hi_e2, hi_o2) = _tap_group(hi, k0, zero)
        j1, j2 = min(k0 + 1, half - 1), min(k0 + 2, half - 1)
        a0, d0 = a_pad[half - k0:half - k0 + count], d_pad[half - k0:half - k0 + count]
        a1, d1 = a_pad[half - j1:half - j1 + count], d_pad[half - j1:half - j1 + count]
        a2, d2 = a_pad[half - j2:half - j2 + count], d_pad[half - j2:half - j2 + count]
        if k0 == 0:
            for u in range(count):
                y_even[u] = lo_e0 * a0[u] + hi_e0 * d0[u] + lo_e1 * a1[u] + hi_e1 * d1[u] \
                    + lo_e2 * a2[u] + hi_e2 * d2[u]
                y_odd[u] = lo_o0 * a0[u] + hi_o0 * d0[u] + lo_o1 * a1[u] + hi_o1 * d1[u] \
                    + lo_o2 * a2[u] + hi_o2 * d2[u]
        else:
            for u in range(count):
                y_even[u] += lo_e0 * a0[u] + hi_e0 * d0[u] + lo_e1 * a1[u] + hi_e1 * d1[u] \
                    + lo_e2 * a2[u] + hi_e2 * d2[u]
                y_odd[u] += lo_o0 * a0[u] + hi_o0 * d0[u] + lo_o1 * a1[u] + hi_o1 * d1[u] \
                    + lo_o2 * a2[u] + hi_o2 * d2[u]
    # out[i] is y_even/y_odd[(i + shift) // 2] by the parity of i + shift
    first, second = (y_even, y_odd) if shift % 2 == 0 else (y_odd, y_even[1:])
    start = shift // 2
    first_tap, second_tap = first[start:], second[start:]
    for p in range(n_out // 2):         # one loop for both parities: stored with shuffles, not scattered
        out[2 * p] = first_tap[p]
        out[2 * p + 1] = second_tap[p]
    if n_out % 2:
        out[n_out - 1] = first_tap[n_out // 2]


@numba.njit(cache=True)
def _row_fwt_polyphase(x, lo, hi, m, detail_at, stored_at, out, stored, even, odd):
    levels = m.shape[0] - 1
    stored[0:m[0]] = x
    for j in range(levels):
        src = stored[stored_at[j]:stored_at[j] + m[j]]
        detail = out[detail_at[j + 1]:detail_at[j + 1] + m[j + 1]]
        if j + 1 < levels:
            approx = stored[stored_at[j + 1]:stored_at[j + 1] + m[j + 1]]
        else:
            approx = out[0:m[levels]]
        _analyze_pair(src, lo, hi, approx, detail, even, odd)


@numba.njit(cache=True)
def _row_ifwt_polyphase(c, lo, hi, m, detail_at, stored_at, y, stored, bufs):
    levels = m.shape[0] - 1
    stored[stored_at[levels]:stored_at[levels] + m[levels]] = c[0:m[levels]]
    for j in range(levels, 0, -1):
        a = stored[stored_at[j]:stored_at[j] + m[j]]
        d = c[detail_at[j]:detail_at[j] + m[j]]
        dst = y if j == 1 else stored[stored_at[j - 1]:stored_at[j - 1] + m[j - 1]]
        _synthesize_pair(a, d, lo, hi, dst, bufs)


# the batch loops: each row is independent, so rows run in parallel (compiled below in a serial
# and a parallel copy, like the per-level kernels)
def _fwt_fused(x, lo, hi, m, detail_at, stored_at, out, stored):
    half = (lo.shape[0] + 1) // 2
    size = m[1] + 2 * half + 1
    for b in numba.prange(x.shape[0]):
        even, odd = np.empty(size, dtype=x.dtype), np.empty(size, dtype=x.dtype)
        _row_fwt_polyphase(x[b], lo, hi, m, detail_at, stored_at, out[b], stored[b], even, odd)


def _fwt_fused_backward(g, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_x,
                       grad_filters, need_filters):
    for b in numba.prange(g.shape[0]):
        _row_fwt_backward(g[b], stored[b], lo_reversed, hi_reversed, m, detail_at, stored_at,
                          grad_x[b], grad_filters[b], need_filters)


def _ifwt_fused(c, lo, hi, m, detail_at, stored_at, y, stored):
    size = m[0] // 2 + lo.shape[0] + 3
    for b in numba.prange(c.shape[0]):
        bufs = np.empty((4, size), dtype=c.dtype)
        _row_ifwt_polyphase(c[b], lo, hi, m, detail_at, stored_at, y[b], stored[b], bufs)


def _ifwt_fused_backward(gy, c, stored, lo_reversed, hi_reversed, m, detail_at, stored_at, grad_c,
                        grad_filters, need_filters):
    for b in numba.prange(gy.shape[0]):
        _row_ifwt_backward(gy[b], c[b], stored[b], lo_reversed, hi_reversed, m, detail_at, stored_at,
                           grad_c[b], grad_filters[b], need_filters)


def _linear_map(x, input_scale, dec_lo, dec_hi, perm, coeff_scale, rec_lo, rec_hi, output_scale, bias,
                m, detail_at, analysis_at, synthesis_at, chunks, y):
    """y[b] = S . IFWT(G . P(FWT(B . x[b]))) + bias, one row at a time: each row's coefficients and
    levels stay in cache between the steps, and the permutation is a gather within one row.
    Rows are split into `chunks` contiguous parts (run in parallel), each with its own buffers."""
    rows, n = x.shape
    n_coeffs, L = perm.shape[0], dec_lo.shape[0]
    half = (L + 1) // 2
    per_chunk = (rows + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        scaled, coeffs, mixed = np.empty(n, x.dtype), np.empty(n_coeffs, x.dtype), np.empty(n_coeffs, x.dtype)
        analysis = np.empty(analysis_at[-1] + m[m.shape[0] - 2], x.dtype)
        synthesis = np.empty(max(1, synthesis_at[-1] + m[m.shape[0] - 1]), x.dtype)
        even, odd = np.empty(m[1] + 2 * half + 1, x.dtype), np.empty(m[1] + 2 * half + 1, x.dtype)
        bufs = np.empty((4, n // 2 + L + 3), x.dtype)
        for b in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            row, out = x[b], y[b]
            for i in range(n):
                scaled[i] = row[i] * input_scale[i]
            _row_fwt_polyphase(scaled, dec_lo, dec_hi, m, detail_at, analysis_at, coeffs, analysis, even, odd)
            for k in range(n_coeffs):
                mixed[k] = coeffs[perm[k]] * coeff_scale[k]
            _row_ifwt_polyphase(mixed, rec_lo, rec_hi, m, detail_at, synthesis_at, out, synthesis, bufs)
            for i in range(n):
                out[i] = out[i] * output_scale[i] + bias[i]


fwt_fused_serial, fwt_fused_parallel = serial_and_parallel(_fwt_fused, "fwt_fused")
fwt_fused_backward_serial, fwt_fused_backward_parallel = serial_and_parallel(_fwt_fused_backward,
                                                                             "fwt_fused_backward")
ifwt_fused_serial, ifwt_fused_parallel = serial_and_parallel(_ifwt_fused, "ifwt_fused")
ifwt_fused_backward_serial, ifwt_fused_backward_parallel = serial_and_parallel(_ifwt_fused_backward,
                                                                               "ifwt_fused_backward")
linear_map_serial, linear_map_parallel = serial_and_parallel(_linear_map, "linear_map")
