"""Numba kernels of WaveletLinear's inference map with the batch as the vector lanes (see wavelet_inference.py).

The row pass (wavelet_numba._linear_map) vectorises along each band, whose levels shrink to a few
samples; here a block of rows is turned on its side, (n, lanes), so that every filter tap is one
multiply-add over a contiguous row of `lanes` examples at every level, and the permutation moves whole
rows: the analysis writes each coefficient straight into its permuted, scaled place. The order of the
row operations, which keeps each level's rows in cache, is wavelet_schedule's.
"""
import numba

from .serial_and_parallel import serial_and_parallel
from .turn_numba import rows_back, rows_on_side


@numba.njit(cache=True)
def _tap(f, j, zero):
    return f[j] if j < f.shape[0] else zero


@numba.njit(cache=True, fastmath={"contract"})
def transform_scheduled(src, input_scale, work, analysis, synthesis, lo, hi, rlo, rhi, placed_at, placed_scale,
                        output_scale, out):
    """out (n, lanes) <- S . IFWT(G . P(FWT(B . src))) for src (n, lanes) on its side, by the row operations
    of a wavelet_schedule.Schedule (its tables `analysis` and `synthesis`; work has its work_rows, row 0
    zero); lo, hi: the analysis filters, rlo, rhi: the reconstruction filters; placed_at, placed_scale:
    wavelet_schedule.placement's. Each op's rows are indexed in the 2-D arrays themselves, not through row
    views: fewer pointers for LLVM to check against each other before the vector loop (31 against 22
    GMAC/s at 128 lanes, bench/results/microbench-session13.md)."""
    lanes = out.shape[1]
    zero, one = lo.dtype.type(0), lo.dtype.type(1)
    taps = analysis.shape[1] - 4
    for op in range(analysis.shape[0]):
        if analysis[op, 0] == 0:                        # LOAD: an input row, scaled, into its ring
            target, r = analysis[op, 1], analysis[op, 2]
            s = input_scale[r]
            for b in range(lanes):
                work[target, b] = src[r, b] * s
            continue
        ra, sa = analysis[op, 1], one
        if ra < 0:                                      # the last level's approximation: a coefficient
            ra, sa = placed_at[analysis[op, 2]], placed_scale[analysis[op, 2]]
        rd, sd = placed_at[analysis[op, 3]], placed_scale[analysis[op, 3]]
        for j0 in range(0, taps, 6):
            x0, x1, x2 = analysis[op, 4 + j0], analysis[op, 5 + j0], analysis[op, 6 + j0]
            x3, x4, x5 = analysis[op, 7 + j0], analysis[op, 8 + j0], analysis[op, 9 + j0]
            p0, p1, p2 = sa * _tap(lo, j0, zero), sa * _tap(lo, j0 + 1, zero), sa * _tap(lo, j0 + 2, zero)
            p3, p4, p5 = sa * _tap(lo, j0 + 3, zero), sa * _tap(lo, j0 + 4, zero), sa * _tap(lo, j0 + 5, zero)
            q0, q1, q2 = sd * _tap(hi, j0, zero), sd * _tap(hi, j0 + 1, zero), sd * _tap(hi, j0 + 2, zero)
            q3, q4, q5 = sd * _tap(hi, j0 + 3, zero), sd * _tap(hi, j0 + 4, zero), sd * _tap(hi, j0 + 5, zero)
            if j0 == 0:
                for b in range(lanes):
                    v0, v1, v2 = work[x0, b], work[x1, b], work[x2, b]
                    v3, v4, v5 = work[x3, b], work[x4, b], work[x5, b]
                    work[ra, b] = p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3 + p4 * v4 + p5 * v5
                    work[rd, b] = q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3 + q4 * v4 + q5 * v5
            else:
                for b in range(lanes):
                    v0, v1, v2 = work[x0, b], work[x1, b], work[x2, b]
                    v3, v4, v5 = work[x3, b], work[x4, b], work[x5, b]
                    work[ra, b] += p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3 + p4 * v4 + p5 * v5
                    work[rd, b] += q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3 + q4 * v4 + q5 * v5
    per_band = (synthesis.shape[1] - 3) // 2
    for op in range(synthesis.shape[0]):
        to_output = synthesis[op, 1] == 1
        target, parity = synthesis[op, 0], synthesis[op, 2]
        dst = out if to_output else work
        s = output_scale[target] if to_output else one
        for k0 in range(0, per_band, 3):
            t0 = parity + 2 * k0
            c0, c1, c2 = s * _tap(rlo, t0, zero), s * _tap(rlo, t0 + 2, zero), s * _tap(rlo, t0 + 4, zero)
            e0, e1, e2 = s * _tap(rhi, t0, zero), s * _tap(rhi, t0 + 2, zero), s * _tap(rhi, t0 + 4, zero)
            a0, a1, a2 = synthesis[op, 3 + k0], synthesis[op, 4 + k0], synthesis[op, 5 + k0]
            d0, d1, d2 = (synthesis[op, 3 + per_band + k0], synthesis[op, 4 + per_band + k0],
                          synthesis[op, 5 + per_band + k0])
            if k0 == 0:
                for b in range(lanes):
                    dst[target, b] = c0 * work[a0, b] + e0 * work[d0, b] + c1 * work[a1, b] + e1 * work[d1, b] \
                        + c2 * work[a2, b] + e2 * work[d2, b]
            else:
                for b in range(lanes):
                    dst[target, b] += c0 * work[a0, b] + e0 * work[d0, b] + c1 * work[a1, b] + e1 * work[d1, b] \
                        + c2 * work[a2, b] + e2 * work[d2, b]


def _linear_map_lanes(x, input_scale, lo, hi, rlo, rhi, placed_at, placed_scale, output_scale, bias, analysis,
                      synthesis, block_at, scratch, y):
    """y = S . IFWT(G . P(FWT(B . x))) + bias row by row, in blocks of rows turned on their side, through
    transform_scheduled (its arguments as there; a schedule without loads, whose input block lies in
    the work array from row block_at). scratch (parts, work_rows, lanes): one part per parallel chunk of
    blocks; each block goes in turned and scaled, and its result comes back in the same rows, which the
    analysis has read by then."""
    rows, n = x.shape
    chunks, _, lanes = scratch.shape
    blocks = (rows + lanes - 1) // lanes
    per_chunk = (blocks + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        work = scratch[chunk]
        block = work[block_at:block_at + n]
        for index in range(chunk * per_chunk, min(blocks, (chunk + 1) * per_chunk)):
            r0 = index * lanes
            count = min(lanes, rows - r0)
            rows_on_side(x, r0, count, input_scale, block)
            transform_scheduled(block, input_scale, work, analysis, synthesis, lo, hi, rlo, rhi, placed_at,
                                placed_scale, output_scale, block)
            rows_back(block, r0, count, bias, y)


linear_map_lanes_serial, linear_map_lanes_parallel = serial_and_parallel(_linear_map_lanes, "linear_map_lanes")
