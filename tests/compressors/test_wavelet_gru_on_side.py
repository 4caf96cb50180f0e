"""A wavelet GRU without a graph keeps its state on its side (layers/recurrent.py GRU._on_side): the same
values as with its wavelet layers made dense, and the rule that chooses that loop."""
import numpy as np
import pytest

import engine
import layers.recurrent as R
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


def _spy(monkeypatch):
    calls = []
    forward = recurrent_sideways.GRUSequenceSideways.forward
    monkeypatch.setattr(recurrent_sideways.GRUSequenceSideways, "forward",
                        lambda self, *a: calls.append(1) or forward(self, *a))
    return calls


@pytest.mark.parametrize("which, n_in, num_layers, hh_bias, outputs", [
    ("state_reset", 2, 1, False, False), ("state", 2, 1, True, True), ("update", 6, 1, True, True),
    ("full", 3, 2, True, True), ("gates", 2, 2, False, False)])
def test_on_its_side_equals_the_dense_form(monkeypatch, which, n_in, num_layers, hh_bias, outputs):
    # a second layer reads 24 features: its projection is one product a step, not formed in the step
    gru = _wavelet_gru(which, n_in, num_layers, hh_bias)
    rng = np.random.default_rng(1)
    batch = R.GRU_MIN_BATCH_ON_SIDE + 3
    x = rng.standard_normal((batch, 6, n_in)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((num_layers, batch, 24))).astype(np.float32)
    calls = _spy(monkeypatch)
    with engine.no_grad():
        got_out, got_h = gru(x, h0, outputs=outputs)
    assert len(calls) == num_layers
    monkeypatch.setattr(R, "GRU_MIN_BATCH_ON_SIDE", 10 ** 9)
    with engine.no_grad():
        want_out, want_h = gru(x, h0, outputs=outputs)
    assert len(calls) == num_layers
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
    assert not runs_on_side(GRU(2, 24), x)                       # nothing to run on its side
    assert not runs_on_side(_wavelet_gru("state", 2, 1, True, dtype=np.float64), x.astype(np.float64))
    remove = gru.cells[0].hh_state.register_forward_hook(lambda *a: None)
    assert not runs_on_side(gru, x)                              # a hook must see the layer's calls
    remove()
    assert runs_on_side(gru, x)
