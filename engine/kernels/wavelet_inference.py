"""WaveletLinear's map without a graph, in one Numba call: by rows (wavelet_numba) or on blocks of rows turned
on their side (wavelet_lanes_numba), whichever the batch suits."""
import numpy as np

from .. import backend
from . import load_numba_module, pays_to_thread
from .wavelet import _as_batch, _packed_layout, _scratch_buffer, numba_available
from .wavelet_schedule import placement, sideways_schedule

# The sideways pass: rows per block (fewer for wide layers, whose coefficient store then stays in cache),
# the fewest rows and the widest layer it runs for. One thread, filter length 6, 8 levels (6 at n = 128),
# us at batch 128, n = 128 / 256 / 512 / 1024 / 2048 / 4096: by rows 249 / 332 / 383 / 523 / 850 / 1408,
# on the side in blocks of 64 rows 46 / 82 / 134 / 305 / 578 / 1359, of 128 rows 45 / 66 / 135 / 296 /
# 637 / 1564 (at batch 256 the same order: 128 up to n = 1024, 64 beyond); at batch 32, 70 / 90 / 110 /
# 145 / 214 / 347 by rows against 25 / 35 / 58 / 99 / 208 / 414; at batch 16 a block of 16 lanes beat the
# rows up to n = 800 (n = 256: 14 against 31 us) and lost from n = 2048: below 32 rows the rows stay
# (bench/results/microbench-session13.md, -session15.md).
LANES, LANES_WIDE, WIDE_FROM = 128, 64, 2048
LANES_MIN_ROWS = 32
LANES_MAX_WIDTH = 2048


def _sideways_arguments(n, levels, vectors, perm, dtype, loads):
    """(input scale, lo, hi, rlo, rhi, placed_at, placed_scale, output scale) for
    wavelet_lanes_numba.transform_scheduled, and the schedule, from the layer's vectors in the order
    linear_map takes them: input scale, analysis low and high pass, coefficient scale, reconstruction
    low and high pass, output scale."""
    s_in, lo, hi, g, rlo, rhi, s_out = vectors[:7]
    schedule = sideways_schedule(n, lo.shape[0], levels, loads)
    return (s_in, lo, hi, rlo, rhi, *placement(perm, g, schedule.store_at, dtype), s_out), schedule


def _sideways_scratch(work_rows, parts, lanes, dtype):
    """The zeroed work array of the sideways pass, (parts, work_rows, lanes), kept per shape (wavelet's
    scratch cache): a fresh (page-faulting) allocation a call would cost more than the pass. Its row 0
    is never written, so it stays the zero row every schedule reads outside a band."""
    return _scratch_buffer((parts, work_rows, lanes), dtype, zeroed=True)


def linear_map(x, input_scale, dec_lo, dec_hi, perm, coeff_scale, rec_lo, rec_hi, output_scale, bias, levels,
               out=None):
    """S . IFWT(G . P(FWT(B . x))) + bias along the last axis (B, G, S elementwise scales, P the index
    vector perm, the transforms packed and cropped as WaveletLinear uses them), for inference: no state
    for a backward is kept. From LANES_MIN_ROWS rows on (up to LANES_MAX_WIDTH wide), blocks of LANES
    rows go through on their side (of LANES_WIDE from WIDE_FROM wide, or when a thread would get none),
    and the rest as one narrower block (its width rounded up to 8 lanes); otherwise one fused pass per
    row. `out` (rows, n), which may be a strided view, takes the result when given (x then 2-D). None
    when Numba is not in use or x is on the GPU; the caller then composes the differentiable ops, which
    give the same values."""
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
        args, schedule = _sideways_arguments(n, levels, vectors, perm, x.dtype, loads=False)
        args += (vectors[7],)
        block = LANES if n < WIDE_FROM and count >= LANES * _threads(rows, L) else LANES_WIDE
        full = count - count % block
        for start, stop, lanes in ((0, full, block), (full, count, -(-(count - full) // 8) * 8)):
            if stop > start:
                parts = -(-(stop - start) // lanes)
                _run("wavelet_lanes_numba", "linear_map_lanes", rows[start:stop], args,
                     (schedule.analysis, schedule.synthesis, schedule.block_at), parts, L, y[start:stop],
                     scratch=lambda chunks, lanes=lanes: _sideways_scratch(schedule.work_rows, chunks, lanes,
                                                                           rows.dtype))
    return y if out is not None else y.reshape(x.shape)


def _threads(rows, filter_length):
    """The threads a pass over `rows` runs on: Numba's, when the work pays for them."""
    if not pays_to_thread(rows.size * 4 * filter_length):
        return 1
    import numba
    return numba.get_num_threads()


def _run(module, name, rows, args, layout, parts, filter_length, y, scratch=None):
    """One kernel call over `rows`, its parallel copy on up to `parts` chunks when the work pays for threads;
    the row pass takes the chunk count as an argument, the sideways pass a scratch with one part a chunk."""
    chunks = max(1, min(parts, _threads(rows, filter_length)))
    kernel = getattr(load_numba_module(module), name + ("_parallel" if chunks > 1 else "_serial"))
    extra = (chunks,) if scratch is None else (scratch(chunks),)
    kernel(rows, *args, *layout, *extra, y)


def sideways_map(input_scale, dec_lo, dec_hi, perm, coeff_scale, rec_lo, rec_hi, output_scale, levels, lanes):
    """run(src, out): out (n, lanes) <- S . IFWT(G . P(FWT(B . src))) for src (n, lanes), both C-contiguous
    and already on their side (a recurrent layer's state kept as (H, B)), without a bias; the values of
    the parameters as they are now. None when Numba is not in use or the parameters are on the GPU."""
    if backend.is_gpu_array(input_scale) or not numba_available():
        return None
    n, dtype = input_scale.shape[0], input_scale.dtype
    vectors = [np.ascontiguousarray(v, dtype=dtype) for v in
               (input_scale, dec_lo, dec_hi, coeff_scale, rec_lo, rec_hi, output_scale)]
    (s_in, *filters, placed_at, placed_scale, s_out), schedule = _sideways_arguments(n, levels, vectors, perm, dtype,
                                                                                     loads=True)
    work = _sideways_scratch(schedule.work_rows, 1, lanes, dtype)[0]
    kernel = load_numba_module("wavelet_lanes_numba").transform_scheduled

    def run(src, out):
        kernel(src, s_in, work, schedule.analysis, schedule.synthesis, *filters, placed_at, placed_scale, s_out, out)
    return run
