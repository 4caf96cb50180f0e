"""bench/structured_floor.py: the floor of wavelet-compressed models, standalone and recurrent."""
import copy

import numpy as np
import pytest

from bench import structured_floor


def test_gather_seconds_times_the_permutation():
    seconds, how = structured_floor.gather_seconds(8, np.random.default_rng(0).permutation(64), np.float32,
                                                   repeats=3)
    assert seconds > 0 and how in ("NumPy take", "compiled loop")


def test_floor_of_a_wavelet_linear_is_its_flops_at_the_dense_rate_plus_the_gather(monkeypatch):
    import engine
    from compressors import wavelet
    from layers import Dense
    engine.manual_seed(0)
    dense = Dense(64, 64)
    small = wavelet.wavelet_from_dense(dense)
    monkeypatch.setattr(structured_floor, "gather_seconds", lambda rows, perm, dtype, repeats: (0.5, "stub"))
    monkeypatch.setattr(structured_floor, "implementation_seconds", lambda layer, rows, repeats: {"a": 0.4, "b": 0.8})
    x = np.zeros((4, 64), np.float32)
    flops_dense = 2 * 64 * 64 + 64
    floor = structured_floor.wavelet_floor(dense, small, x, whole_dense_seconds=2.0,
                                           flops_dense_per_example=flops_dense, repeats=1)
    rate = flops_dense * 4 / 2.0
    want = small.flops(None, np.empty((4, 64))) / rate + 0.5
    assert floor["floor_seconds"] == pytest.approx(want)
    assert floor["floor_speedup"] == pytest.approx(2.0 / want)
    assert floor["flop_rate"] == pytest.approx(rate) and "stub" in floor["parts"]
    assert floor["implementation_floor_seconds"] == 0.4 and floor["implementation_floor_speedup"] == pytest.approx(5.0)


def test_floor_of_a_wavelet_gru_replaces_only_the_compressed_gates(monkeypatch):
    import engine
    from compressors import wavelet
    from layers.models import sequence_model
    engine.manual_seed(0)
    dense = sequence_model("gru", n_in=2, hidden=16).eval()
    small = copy.deepcopy(dense)
    wavelet.compress_recurrent(small, which="state_reset")
    timed = []
    monkeypatch.setattr(structured_floor, "_median_seconds", lambda fn, repeats: timed.append(fn()) or 1e-3)
    monkeypatch.setattr(structured_floor, "gather_seconds", lambda rows, perm, dtype, repeats: (2e-4, "stub"))
    measured = {"ours": 3e-4, "other": 1e-4}
    monkeypatch.setattr(structured_floor, "implementation_seconds",
                        lambda layer, rows, repeats, on_side=False: dict(measured))
    x = np.zeros((3, 5, 2), np.float32)                 # 5 time steps
    floor = structured_floor.wavelet_floor(dense, small, x, whole_dense_seconds=1.0,
                                           flops_dense_per_example=1.0, repeats=1)
    # the full hidden product (3, 16) @ (16, 48) and the kept update gate's (3, 16) @ (16, 16), timed
    assert [a.shape for a in timed] == [(3, 48), (3, 16)]
    rate = 2 * 3 * 16 * 48 / 1e-3
    layers = [m for m in small.modules() if isinstance(m, wavelet.WaveletLinear)]
    assert len(layers) == 2
    wavelet_seconds = sum(m.flops(None, np.empty((3, 16))) / rate + 2e-4 for m in layers)
    assert floor["floor_seconds"] == pytest.approx(1.0 - 5 * 1e-3 + 5 * 1e-3 + 5 * wavelet_seconds)
    assert floor["floor_speedup"] == pytest.approx(1.0 / floor["floor_seconds"])
    # the implementation floor: each wavelet layer at the fastest implementation measured, every step
    assert floor["implementation_floor_seconds"] == pytest.approx(1.0 - 5 * 1e-3 + 5 * 1e-3 + 5 * 2 * 1e-4)
    assert floor["implementation_floor_speedup"] == pytest.approx(1.0 / floor["implementation_floor_seconds"])
    assert floor["implementation_seconds_per_step"] == pytest.approx({"ours": 6e-4, "other": 2e-4})


def test_implementation_seconds_times_the_layer_and_the_installed_libraries():
    import importlib.util
    import engine
    from compressors import wavelet
    engine.manual_seed(0)
    layer = wavelet.WaveletLinear(32, levels=3, filter_length=4)
    found = structured_floor.implementation_seconds(layer, rows=4, repeats=1)
    expected = {"engine (whole layer)"}
    if importlib.util.find_spec("pywt"):
        expected.add("PyWavelets (transforms only)")
    if importlib.util.find_spec("torch"):
        expected.add("PyTorch conv1d (transforms only)")
    assert set(found) == expected and all(v > 0 for v in found.values())


def test_implementation_seconds_in_a_gru_times_the_layer_on_its_side():
    from engine.ops import recurrent_sideways
    from compressors import wavelet
    from layers.recurrent import GRU_MIN_BATCH_ON_SIDE
    if not recurrent_sideways.available(np.zeros(1, np.float32)):
        pytest.skip("numba not importable or disabled: the sideways loop is Numba's")
    layer = wavelet.WaveletLinear(32, levels=3, filter_length=4)
    found = structured_floor.implementation_seconds(layer, rows=GRU_MIN_BATCH_ON_SIDE, repeats=1, on_side=True)
    assert found["engine (on its side, as a GRU runs it)"] > 0
    fewer = structured_floor.implementation_seconds(layer, rows=GRU_MIN_BATCH_ON_SIDE - 1, repeats=1, on_side=True)
    assert "engine (on its side, as a GRU runs it)" not in fewer


def test_no_floor_without_wavelet_layers():
    from layers import Dense
    assert structured_floor.wavelet_floor(Dense(4, 4), Dense(4, 4), np.zeros((2, 4)), 1.0, 1.0) is None
