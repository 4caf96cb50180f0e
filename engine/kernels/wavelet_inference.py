"""WaveletLinear's map without a graph, in one Numba call: by rows (wavelet_numba) or on blocks of rows turned
on their side (wavelet_lanes_numba), whichever the batch suits."""
import functools

import numpy as np

from .. import backend
from . import load_numba_module, pays_to_thread
from .wavelet import _as_batch, _packed_layout, _scratch_buffer, numba_available

# The sideways pass: rows per block, the fewest rows and the widest layer it runs for. One thread, filter
# length 6, 8 levels (6 at n = 128 and 800), us by rows against linear_map: batch 128, n = 128 / 256 / 512 /
# 800 / 1024 / 2048: 233 / 317 / 368 / 389 / 520 / 878 against 39 / 68 / 136 / 213 / 291 / 594; batch 32,
# n = 256 / 1024 / 2048: 80 / 133 / 206 against 29 / 100 / 187; at n = 4096 on its side 1233 against 1434
# at batch 128 but 384 against 342 at batch 32; at batch 16 a block of 16 lanes beat the rows up to
# n = 800 (n = 256: 14 against 31 us) and lost from n = 2048: below 32 rows the rows stay
# (bench/results/microbench-session13.md).
LANES = 64
LANES_MIN_ROWS = 32
LANES_MAX_WIDTH = 2048


@functools.lru_cache(maxsize=64)
def _sideways_layout(n, filter_length, levels):
    """(mixed_at, band_at, scratch rows) of the sideways pass: mixed_at[q] is the row of `work` that holds
    packed coefficient q of the permuted store (band k of [cA_J, cD_J, ..., cD_1] keeps `margin` zero rows
    on both sides); band_at and the row count as wavelet_lanes_numba.scratch_rows gives them."""
    kernels = load_numba_module("wavelet_lanes_numba")
    pad = kernels.margin(filter_length)
    m, detail_at, _, _ = _packed_layout(n, filter_length, levels)
    starts = [0] + [int(v) for v in detail_at[levels:0:-1]]       # packed starts of cA_J, cD_J, ..., cD_1
    total = int(detail_at[1] + m[1])
    band_at, rows = kernels.scratch_rows(m, total, pad)
    mixed_at = np.empty(total, dtype=np.int64)
    for band, start in enumerate(starts):
        end = starts[band + 1] if band + 1 < len(starts) else total
        mixed_at[start:end] = band_at[levels] + np.arange(start, end) + (2 * band + 1) * pad
    for array in (mixed_at, band_at):
        array.flags.writeable = False
    return mixed_at, band_at, rows


def _placement(perm, coeff_scale, mixed_at, dtype):
    """(placed_at, placed_scale): for each packed coefficient q, the row where the permutation puts it and
    the scale it takes there (P . FWT puts coefficient perm[k] at place k, scaled by coeff_scale[k])."""
    perm = np.asarray(perm, dtype=np.int64)
    placed_at, placed_scale = np.empty_like(mixed_at), np.empty(perm.shape[0], dtype)
    placed_at[perm] = mixed_at
    placed_scale[perm] = coeff_scale
    return placed_at, placed_scale


def _sideways_scratch(n, filter_length, levels, parts, lanes, dtype):
    """The zeroed work array of the sideways pass, (parts, rows, lanes), kept per shape (wavelet's scratch
    cache): only the bands' interiors are ever written, so the margins stay zero, and a fresh
    (page-faulting) allocation a call would cost more than the pass (hidden 256, 8 levels, 64 lanes:
    0.5 MB a part)."""
    rows = _sideways_layout(n, filter_length, levels)[2]
    return _scratch_buffer((parts, rows, lanes), dtype, zeroed=True)


def linear_map(x, input_scale, dec_lo, dec_hi, perm, coeff_scale, rec_lo, rec_hi, output_scale, bias, levels,
               out=None):
    """S . IFWT(G . P(FWT(B . x))) + bias along the last axis (B, G, S elementwise scales, P the index
    vector perm, the transforms packed and cropped as WaveletLinear uses them), for inference: no state
    for a backward is kept. From LANES_MIN_ROWS rows on (up to LANES_MAX_WIDTH wide), blocks of LANES
    rows go through on their side, and the rest as one narrower block (its width rounded up to 8 lanes);
    otherwise one fused pass per row. `out` (rows, n), which may be a strided view, takes the result
    when given (x then 2-D). None when Numba is not in use or x is on the GPU; the caller then composes
    the differentiable ops, which give the same values."""
    if backend.is_gpu_array(x) or not numba_available():
        return None
    n, L = x.shape[-1], dec_lo.shape[0]
    m, detail_at, analysis_at, synthesis_at = _packed_layout(n, L, levels)
    rows = np.ascontiguousarray(_as_batch(x))
    vectors = [np.ascontiguousarray(v, dtype=x.dtype) for v in
               (input_scale, dec_lo, dec_hi, coeff_scale, rec_lo, rec_hi, output_scale,
                np.zeros(n, x.dtype) if bias is None else bias)]
    y = np.empty_like(rows) if out is None else out
    count = rows.shape[0]
    if count < LANES_MIN_ROWS or n > LANES_MAX_WIDTH:
        args = (vectors[0], vectors[1], vectors[2], np.ascontiguousarray(perm, dtype=np.int64), *vectors[3:])
        _run("wavelet_numba", "linear_map", rows, args, (m, detail_at, analysis_at, synthesis_at), count, L, y)
    else:
        mixed_at, band_at, _ = _sideways_layout(n, L, levels)
        args = (*vectors[:3], *_placement(perm, vectors[3], mixed_at, x.dtype), *vectors[4:])
        full = count - count % LANES
        for start, stop, lanes in ((0, full, LANES), (full, count, -(-(count - full) // 8) * 8)):
            if stop > start:
                parts = -(-(stop - start) // lanes)
                _run("wavelet_lanes_numba", "linear_map_lanes", rows[start:stop], args, (m, detail_at, band_at),
                     parts, L, y[start:stop],
                     scratch=lambda chunks, lanes=lanes: _sideways_scratch(n, L, levels, chunks, lanes, rows.dtype))
    return y if out is not None else y.reshape(x.shape)


def _run(module, name, rows, args, layout, parts, filter_length, y, scratch=None):
    """One kernel call over `rows`, its parallel copy on up to `parts` chunks when the work pays for threads;
    the row pass takes the chunk count as an argument, the sideways pass a scratch with one part a chunk."""
    chunks = 1
    if pays_to_thread(rows.size * 4 * filter_length):
        import numba
        chunks = max(1, min(parts, numba.get_num_threads()))
    kernel = getattr(load_numba_module(module), name + ("_parallel" if chunks > 1 else "_serial"))
    extra = (chunks,) if scratch is None else (scratch(chunks),)
    kernel(rows, *args, *layout, *extra, y)


def sideways_map(input_scale, dec_lo, dec_hi, perm, coeff_scale, rec_lo, rec_hi, output_scale, levels, lanes):
    """run(src, out): out (n, lanes) <- S . IFWT(G . P(FWT(B . src))) for src (n, lanes), both C-contiguous
    and already on their side (a recurrent layer's state kept as (H, B)), without a bias; the values of
    the parameters as they are now. None when Numba is not in use or the parameters are on the GPU."""
    if backend.is_gpu_array(input_scale) or not numba_available():
        return None
    n, L, dtype = input_scale.shape[0], dec_lo.shape[0], input_scale.dtype
    m, detail_at, _, _ = _packed_layout(n, L, levels)
    mixed_at, band_at, _ = _sideways_layout(n, L, levels)
    s_in, lo, hi, g, rlo, rhi, s_out = (np.ascontiguousarray(v, dtype=dtype) for v in
                                        (input_scale, dec_lo, dec_hi, coeff_scale, rec_lo, rec_hi, output_scale))
    placed_at, placed_scale = _placement(perm, g, mixed_at, dtype)
    work = _sideways_scratch(n, L, levels, 1, lanes, dtype)[0]
    kernel = load_numba_module("wavelet_lanes_numba").map_on_side

    def run(src, out):
        kernel(src, s_in, work, lo, hi, placed_at, placed_scale, rlo, rhi, s_out, m, detail_at, band_at, out)
    return run
