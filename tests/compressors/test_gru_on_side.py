"""A GRU without a graph keeps its state on its side (layers/recurrent.py GRU._on_side): dense, low-rank and
wavelet GRUs give the values of the loop by rows (a wavelet GRU's layers made dense there), and the rule
that chooses that loop."""
import numpy as np
import pytest

import engine
import layers.recurrent as R
from compressors import lowrank
from compressors import wavelet as W
from engine.ops import recurrent_sideways
from layers import GRU

pytestmark = pytest.mark.skipif(not recurrent_sideways.available(np.zeros(1, np.float32)),
                                reason="numba not importable or disabled: the sideways loop is Numba's")


def _wavelet_gru(which, n_in, num_layers, hh_bias, dtype=np.float32, seed=0):
    gru = GRU(n_in, 24, num_layers=num_layers, hh_bias=hh_bias, dtype=dtype)
    W.compress_recurrent(gru, which, levels=2, filter_length=4, init="random")
    rng = np.random.default_rng(seed)
    for p in gru.parameters():     # every scale and bias away from its initial value
        p.data[...] = p.data + (0.2 * rng.standard_normal(p.shape)).astype(dtype)
    return gru


def _gru(kind, n_in, num_layers, hh_bias, seed=0):
    gru = GRU(n_in, 24, num_layers=num_layers, hh_bias=hh_bias)
    if kind == "low-rank":
        lowrank.truncate(gru, rank=5)
    rng = np.random.default_rng(seed)
    for p in gru.parameters():
        p.data[...] = p.data + (0.2 * rng.standard_normal(p.shape)).astype(p.dtype)
    return gru


def _spy(monkeypatch):
    calls = []
    forward = recurrent_sideways.GRUSequenceSideways.forward
    monkeypatch.setattr(recurrent_sideways.GRUSequenceSideways, "forward",
                        lambda self, *a: calls.append(1) or forward(self, *a))
    return calls


@pytest.mark.parametrize("which, n_in, num_layers, hh_bias, outputs", [
    ("state_reset", 2, 1, False, False), ("state", 2, 1, True, True), ("update", 6, 1, True, True),
    ("full", 3, 2, True, True), ("gates", 2, 2, False, False), ("dense", 2, 2, True, True),
    ("dense", 7, 1, False, False), ("low-rank", 2, 2, True, True), ("low-rank", 5, 1, False, False)])
def test_on_its_side_equals_the_loop_by_rows(monkeypatch, which, n_in, num_layers, hh_bias, outputs):
    # a second layer reads 24 features: its projection is one product a step, not formed in the step
    if which in ("dense", "low-rank"):
        gru = _gru(which, n_in, num_layers, hh_bias)
    else:
        gru = _wavelet_gru(which, n_in, num_layers, hh_bias)
    rng = np.random.default_rng(1)
    batch = 3 * R.GRU_ON_SIDE_MULTIPLE if which in ("dense", "low-rank") else R.GRU_MIN_BATCH_ON_SIDE + 3
    x = rng.standard_normal((batch, 6, n_in)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((num_layers, batch, 24))).astype(np.float32)
    calls = _spy(monkeypatch)
    with engine.no_grad():
        got_out, got_h = gru(x, h0, outputs=outputs)
    # truncation makes a second layer's 24 -> 72 projection low rank too: that layer runs by rows
    on_side = 1 if which == "low-rank" else num_layers
    assert len(calls) == on_side
    monkeypatch.setattr(R, "GRU_MIN_BATCH_ON_SIDE", 10 ** 9)
    with engine.no_grad():
        want_out, want_h = gru(x, h0, outputs=outputs)
    assert len(calls) == on_side
    np.testing.assert_allclose(got_h.data, want_h.data, rtol=1e-5, atol=1e-6)
    if outputs:
        np.testing.assert_allclose(got_out.data, want_out.data, rtol=1e-5, atol=1e-6)
    else:
        assert got_out is None and want_out is None


def test_the_rule(monkeypatch):
    calls = _spy(monkeypatch)
    batch = R.GRU_MIN_BATCH_ON_SIDE
    x = np.ones((batch, 3, 2), np.float32)

    def runs_on_side(model, inputs, grad=False):
        calls.clear()
        if grad:
            model(inputs)
        else:
            with engine.no_grad():
                model(inputs)
        return bool(calls)

    gru = _wavelet_gru("state_reset", 2, 1, True)
    assert runs_on_side(gru, x)
    assert not runs_on_side(gru, x[:-1])                         # fewer examples than the rule's
    assert not runs_on_side(gru, x, grad=True)                   # a graph is wanted
    assert R.GRU_MIN_BATCH_ON_SIDE % R.GRU_ON_SIDE_MULTIPLE == 0
    assert runs_on_side(GRU(2, 24), x)                           # dense, and low rank, on a multiple of 16
    assert runs_on_side(_gru("low-rank", 2, 1, True), x)
    odd = np.ones((batch + 1, 3, 2), np.float32)
    assert not runs_on_side(GRU(2, 24), odd) and not runs_on_side(_gru("low-rank", 2, 1, True), odd)
    assert runs_on_side(gru, odd)                                # a wavelet layer on any batch from 32
    assert not runs_on_side(_wavelet_gru("state", 2, 1, True, dtype=np.float64), x.astype(np.float64))
    remove = gru.cells[0].hh_state.register_forward_hook(lambda *a: None)
    assert not runs_on_side(gru, x)                              # a hook must see the layer's calls
    remove()
    assert runs_on_side(gru, x)


@pytest.mark.parametrize("steps, with_h0", [(1, False), (1, True), (2, True)])
def test_a_short_sequence_on_its_side(monkeypatch, steps, with_h0):
    # one or two steps: the weights and the state enter without a copy of their own
    gru = _gru("dense", 3, 1, True)
    rng = np.random.default_rng(4)
    batch = 2 * R.GRU_ON_SIDE_MULTIPLE + R.GRU_MIN_BATCH_ON_SIDE
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((1, batch, 24))).astype(np.float32) if with_h0 else None
    calls = _spy(monkeypatch)
    with engine.no_grad():
        got_out, got_h = gru(x, h0)
    monkeypatch.setattr(R, "GRU_MIN_BATCH_ON_SIDE", 10 ** 9)
    with engine.no_grad():
        want_out, want_h = gru(x, h0)
    assert len(calls) == 1
    np.testing.assert_allclose(got_out.data, want_out.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h.data, want_h.data, rtol=1e-5, atol=1e-6)
