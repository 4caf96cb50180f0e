"""Numba kernels of WaveletLinear's inference map with the batch as the vector lanes (see wavelet_inference.py).

The row pass (wavelet_numba._linear_map) vectorises along each band, whose levels shrink to a few
samples; here a block of rows is turned on its side, (n, lanes), so that every filter tap is one
multiply-add over a contiguous row of `lanes` examples at every level, and the permutation moves whole
rows: the analysis writes each coefficient straight into its permuted, scaled place. Every band sits in
a buffer with `margin` zero rows on both sides, so the taps need no bounds tests: the margins stand for
the zero padding of the transform and are never written.
"""
import numba
import numpy as np

from .serial_and_parallel import serial_and_parallel
from .turn_numba import rows_back, rows_on_side


@numba.njit(cache=True)
def margin(filter_length):
    """Zero rows kept on each side of a band: the farthest tap of a six-tap pass reaches L + 3 rows out."""
    return filter_length + 4


@numba.njit(cache=True)
def _tap(f, j, zero):
    return f[j] if j < f.shape[0] else zero


@numba.njit(cache=True, fastmath={"contract"})
def analyze_lanes(src, lo, hi, store, n_out, a_at, a_placed, d_at, placed_at, placed_scale, pad):
    """a[o] = sum_j lo[j] x[2o + 1 - j] and d[o] likewise with hi, for every lane; x is src's rows from
    `pad` on, src's other rows zero. d[o] is packed coefficient q = d_at + o, written straight into its
    place in the permuted store, row placed_at[q] of `store`, times placed_scale[q]; so is a[o] (q = o)
    when a_placed (the last level), else a[o] goes to row a_at + o, unscaled. Six taps a pass over the
    outputs (taps past the filter weigh zero)."""
    lanes = store.shape[1]
    zero, one = lo.dtype.type(0), lo.dtype.type(1)
    for j0 in range(0, lo.shape[0], 6):
        l0, l1, l2 = _tap(lo, j0, zero), _tap(lo, j0 + 1, zero), _tap(lo, j0 + 2, zero)
        l3, l4, l5 = _tap(lo, j0 + 3, zero), _tap(lo, j0 + 4, zero), _tap(lo, j0 + 5, zero)
        h0, h1, h2 = _tap(hi, j0, zero), _tap(hi, j0 + 1, zero), _tap(hi, j0 + 2, zero)
        h3, h4, h5 = _tap(hi, j0 + 3, zero), _tap(hi, j0 + 4, zero), _tap(hi, j0 + 5, zero)
        for o in range(n_out):
            top = 2 * o + 1 - j0 + pad            # the row of x[2o + 1 - j0]; the pass reads it and 5 below
            sa = placed_scale[o] if a_placed else one
            sd = placed_scale[d_at + o]
            ra = placed_at[o] if a_placed else a_at + o
            rd = placed_at[d_at + o]
            p0, p1, p2, p3, p4, p5 = sa * l0, sa * l1, sa * l2, sa * l3, sa * l4, sa * l5
            q0, q1, q2, q3, q4, q5 = sd * h0, sd * h1, sd * h2, sd * h3, sd * h4, sd * h5
            # indexed as 2-D arrays, not through row views: fewer pointers for LLVM to check against each
            # other before the vector loop (31 against 22 GMAC/s at 128 lanes, the same values)
            if j0 == 0:
                for b in range(lanes):
                    x0, x1, x2 = src[top, b], src[top - 1, b], src[top - 2, b]
                    x3, x4, x5 = src[top - 3, b], src[top - 4, b], src[top - 5, b]
                    store[ra, b] = p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3 + p4 * x4 + p5 * x5
                    store[rd, b] = q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3 + q4 * x4 + q5 * x5
            else:
                for b in range(lanes):
                    x0, x1, x2 = src[top, b], src[top - 1, b], src[top - 2, b]
                    x3, x4, x5 = src[top - 3, b], src[top - 4, b], src[top - 5, b]
                    store[ra, b] += p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3 + p4 * x4 + p5 * x5
                    store[rd, b] += q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3 + q4 * x4 + q5 * x5


@numba.njit(cache=True, fastmath={"contract"})
def synthesize_lanes(a, d, lo, hi, out, pad, scale, scaled):
    """out[i] = s_i sum over o, t with i = 2o + t - (L - 2) of lo[t] a[o] + hi[t] d[o], for every lane, with
    s_i = scale[i] when `scaled` (the layer's output scale, folded into the taps of the last level), else
    1; the bands are a's and d's rows from `pad` on, their other rows zero. Output i takes the taps of
    its parity, t = t0, t0 + 2, ... against o = o_top, o_top - 1, ...: three of each band a pass."""
    n_out, lanes = out.shape
    L = lo.shape[0]
    zero, one = lo.dtype.type(0), lo.dtype.type(1)
    for s0 in range(0, (L + 1) // 2, 3):
        for i in range(n_out):
            t0 = (i + L - 2) % 2 + 2 * s0
            top = (i + L - 2) // 2 - s0 + pad      # the row of a[o_top - s0]
            s = scale[i] if scaled else one
            c0, c1, c2 = s * _tap(lo, t0, zero), s * _tap(lo, t0 + 2, zero), s * _tap(lo, t0 + 4, zero)
            e0, e1, e2 = s * _tap(hi, t0, zero), s * _tap(hi, t0 + 2, zero), s * _tap(hi, t0 + 4, zero)
            if s0 == 0:                            # 2-D indexing, as in analyze_lanes
                for b in range(lanes):
                    out[i, b] = c0 * a[top, b] + e0 * d[top, b] + c1 * a[top - 1, b] + e1 * d[top - 1, b] \
                        + c2 * a[top - 2, b] + e2 * d[top - 2, b]
            else:
                for b in range(lanes):
                    out[i, b] += c0 * a[top, b] + e0 * d[top, b] + c1 * a[top - 1, b] + e1 * d[top - 1, b] \
                        + c2 * a[top - 2, b] + e2 * d[top - 2, b]


@numba.njit(cache=True)
def transform_on_side(work, dec_lo, dec_hi, placed_at, placed_scale, rec_lo, rec_hi, output_scale, m, detail_at,
                      band_at, out):
    """out (n, lanes) <- S . IFWT(G . P(FWT(.))) of the block on its side in `work` (rows, lanes), whose
    input sits in the rows from band_at[0] + pad (pad = margin(L)). m: the level lengths; detail_at: where
    cD_j starts in the packed coefficients; placed_at[q], placed_scale[q]: the row of `work` where packed
    coefficient q goes once permuted (in the padded coefficient store) and the coefficient scale it takes
    there, so that the analysis writes it in place (no pass of its own for P and G); band_at: where in
    `work` level j's approximation (j < J: the analysis input, later the synthesis output) and the padded
    coefficient store (J) begin, each band with its zero margins. work is zero wherever no band is
    written: the margins stay zero from call to call, so it is reused."""
    levels = m.shape[0] - 1
    pad = margin(dec_lo.shape[0])
    for j in range(levels):
        analyze_lanes(work[band_at[j]:][:m[j] + 2 * pad], dec_lo, dec_hi, work, m[j + 1], band_at[j + 1] + pad,
                      j + 1 == levels, detail_at[j + 1], placed_at, placed_scale, pad)
    # the synthesis outputs take the analysis inputs' places, whose margins are the same
    mixed = work[band_at[levels]:]
    for j in range(levels, 0, -1):
        mj = m[j]
        band = levels - j + 1                 # cD_j's place in [cA_J, cD_J, ..., cD_1]
        d = mixed[detail_at[j] + 2 * band * pad:][:mj + 2 * pad]
        a = mixed[:mj + 2 * pad] if j == levels else work[band_at[j]:][:mj + 2 * pad]
        target = out if j == 1 else work[band_at[j - 1] + pad:][:m[j - 1]]
        synthesize_lanes(a, d, rec_lo, rec_hi, target, pad, output_scale, j == 1)


@numba.njit(cache=True)
def map_on_side(src, input_scale, work, dec_lo, dec_hi, placed_at, placed_scale, rec_lo, rec_hi, output_scale, m,
                detail_at, band_at, out):
    """out (n, B) <- S . IFWT(G . P(FWT(B . src))) for src (n, B) already on its side (a recurrent layer's
    state kept so), through transform_on_side (its arguments as there; work has B lanes)."""
    pad = margin(dec_lo.shape[0])
    lanes = work.shape[1]
    for i in range(src.shape[0]):
        s, row, dst = input_scale[i], src[i], work[band_at[0] + pad + i]
        for b in range(lanes):
            dst[b] = row[b] * s
    transform_on_side(work, dec_lo, dec_hi, placed_at, placed_scale, rec_lo, rec_hi, output_scale, m, detail_at,
                      band_at, out)


def _linear_map_lanes(x, input_scale, dec_lo, dec_hi, placed_at, placed_scale, rec_lo, rec_hi, output_scale, bias,
                      m, detail_at, band_at, scratch, y):
    """y = S . IFWT(G . P(FWT(B . x))) + bias row by row, in blocks of rows turned on their side, through
    transform_on_side (its arguments as there; the result goes back into the input's band before it is
    turned). scratch (parts, rows, lanes): one part per parallel chunk of blocks."""
    rows, n = x.shape
    pad = margin(dec_lo.shape[0])
    chunks, _, lanes = scratch.shape
    blocks = (rows + lanes - 1) // lanes
    per_chunk = (blocks + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        work = scratch[chunk]
        result = work[band_at[0] + pad:][:n]
        for block in range(chunk * per_chunk, min(blocks, (chunk + 1) * per_chunk)):
            r0 = block * lanes
            count = min(lanes, rows - r0)
            rows_on_side(x, r0, count, input_scale, work[band_at[0]:], pad)
            transform_on_side(work, dec_lo, dec_hi, placed_at, placed_scale, rec_lo, rec_hi, output_scale, m,
                              detail_at, band_at, result)
            rows_back(result, r0, count, bias, y)


def scratch_rows(m, n_coeffs, pad):
    """(band_at, total rows) for transform_on_side's work array: every level's approximation and the padded
    coefficient store, each with zero margins."""
    levels = len(m) - 1
    sizes = [int(m[j]) + 2 * pad for j in range(levels)] + [n_coeffs + 2 * pad * (levels + 1)]
    band_at = np.zeros(len(sizes), dtype=np.int64)
    band_at[1:] = np.cumsum(sizes[:-1])
    return band_at, int(band_at[-1] + sizes[-1])


linear_map_lanes_serial, linear_map_lanes_parallel = serial_and_parallel(_linear_map_lanes, "linear_map_lanes")
