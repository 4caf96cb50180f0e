"""The sideways pass's schedule of row operations (engine/kernels/wavelet_schedule.py), run by a NumPy
interpreter written here, against WaveletLinear's differentiable ops; and the rings that keep it small."""
import numpy as np
import pytest

import engine
from compressors.wavelet import WaveletLinear
from engine.kernels import wavelet_schedule as S


def _run_schedule(schedule, layer, x_side):
    """out (n, lanes) for x_side (n, lanes) by the schedule's ops, one NumPy row operation each."""
    s_in, lo, hi, g, rlo, rhi, s_out = (p.data.astype(np.float64) for p in (
        layer.input_scale, layer.dec_lo, layer.dec_hi, layer.coeff_scale, layer.rec_lo, layer.rec_hi,
        layer.output_scale))
    placed_at, placed_scale = S.placement(layer.permutation, g, schedule.store_at, np.float64)
    lanes = x_side.shape[1]
    work = np.full((schedule.work_rows, lanes), np.nan)     # only row 0 may be read unwritten
    work[0] = 0
    if schedule.block_at >= 0:
        work[schedule.block_at:schedule.block_at + len(s_in)] = x_side * s_in[:, None]
    taps = schedule.analysis.shape[1] - 4
    lo_taps, hi_taps = (np.concatenate([f, np.zeros(taps - len(f))]) for f in (lo, hi))
    for kind, a, b, c, *rows in schedule.analysis:
        if kind == S.LOAD:
            work[a] = x_side[b] * s_in[b]
            continue
        block = work[rows]
        a_row, a_scale = (placed_at[b], placed_scale[b]) if a < 0 else (a, 1.0)
        work[a_row] = a_scale * (lo_taps @ block)
        work[placed_at[c]] = placed_scale[c] * (hi_taps @ block)
    out = np.full_like(x_side, np.nan)
    per_band = (schedule.synthesis.shape[1] - 3) // 2
    for target, to_output, parity, *rows in schedule.synthesis:
        taps_at = parity + 2 * np.arange(per_band)
        c = np.where(taps_at < len(rlo), rlo[np.minimum(taps_at, len(rlo) - 1)], 0)
        e = np.where(taps_at < len(rhi), rhi[np.minimum(taps_at, len(rhi) - 1)], 0)
        value = c @ work[rows[:per_band]] + e @ work[rows[per_band:]]
        if to_output:
            out[target] = s_out[target] * value
        else:
            work[target] = value
    return out


@pytest.mark.parametrize("n, levels, length", [(64, 3, 6), (256, 8, 6), (37, 2, 13), (33, 3, 5), (16, 3, 2),
                                               (100, 4, 8), (40, 1, 7)])
@pytest.mark.parametrize("loads", [True, False])
def test_schedule_gives_the_layer_s_map(n, levels, length, loads):
    engine.manual_seed(n + length)
    layer = WaveletLinear(n, levels, length, init="random", dtype=np.float64)
    rng = np.random.default_rng(n)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    x = rng.standard_normal((5, n))
    schedule = S.sideways_schedule(n, length, levels, loads)
    got = _run_schedule(schedule, layer, x.T.copy()).T
    np.testing.assert_allclose(got, layer(engine.Tensor(x)).data, rtol=1e-12, atol=1e-12)


def test_schedule_keeps_a_few_rows_a_level_whatever_the_length():
    # the point of the cascade: besides the zero row, the coefficient store and (without loads) the
    # input block, the work array holds a ring a level, as long for n = 256 as for n = 4096
    def ring_rows(n, loads):
        schedule = S.sideways_schedule(n, 6, 8, loads)
        store = schedule.analysis.shape[0] and (schedule.work_rows - schedule.store_at - (0 if loads else n))
        return schedule.store_at - 1, store
    rings, store = ring_rows(256, True)
    assert ring_rows(4096, True)[0] == ring_rows(4096, False)[0] == rings == 8 * 8 + 7 * 4
    assert store == 289                                  # 256 samples' packed coefficients at 8 levels
    schedule = S.sideways_schedule(256, 6, 8, False)
    assert schedule.block_at + 256 == schedule.work_rows
    assert not (schedule.analysis[:, 0] == S.LOAD).any()
    assert (S.sideways_schedule(256, 6, 8, True).analysis[:, 0] == S.LOAD).sum() == 256
