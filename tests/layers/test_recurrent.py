"""GRU/LSTM cells and layers: NumPy reference equations, gradient checks, fast vs slow path, errors, FLOPs."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import FunctionHook
from layers import GRU, GRUCell, LSTM, LSTMCell, Dense, Module, Parameter
from tests.conftest import leaf
from tests.layers._helpers import gradcheck_module, hooked_flops


@pytest.fixture(autouse=True)
def seeded():
    engine.manual_seed(0)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def hh_numpy(m, h):
    return h @ m.weight.data + (m.bias.data if m.bias is not None else 0.0)


def gru_reference(cells, x, h0=None):
    """PyTorch's GRU equations in plain NumPy: x (B, T, n_in) -> (outputs, h_n)."""
    batch, steps, _ = x.shape
    finals, inputs = [], x
    for layer, cell in enumerate(cells):
        H = cell.hidden
        h = np.zeros((batch, H)) if h0 is None else h0[layer]
        w, b = cell.ih.weight.data, cell.ih.bias.data
        outs = []
        for t in range(steps):
            gi = inputs[:, t] @ w + b
            r = sigmoid(gi[:, :H] + hh_numpy(cell.hh_reset, h))
            z = sigmoid(gi[:, H:2 * H] + hh_numpy(cell.hh_update, h))
            n = np.tanh(gi[:, 2 * H:] + r * hh_numpy(cell.hh_state, h))
            h = (1 - z) * n + z * h
            outs.append(h)
        inputs = np.stack(outs, axis=1)
        finals.append(h)
    return inputs, np.stack(finals)


def lstm_reference(cells, x, state=None):
    batch, steps, _ = x.shape
    hs, cs, inputs = [], [], x
    for layer, cell in enumerate(cells):
        H = cell.hidden
        h = np.zeros((batch, H)) if state is None else state[0][layer]
        c = np.zeros((batch, H)) if state is None else state[1][layer]
        w, b = cell.ih.weight.data, cell.ih.bias.data
        outs = []
        for t in range(steps):
            gi = inputs[:, t] @ w + b
            i = sigmoid(gi[:, :H] + hh_numpy(cell.hh_input, h))
            f = sigmoid(gi[:, H:2 * H] + hh_numpy(cell.hh_forget, h))
            g = np.tanh(gi[:, 2 * H:3 * H] + hh_numpy(cell.hh_cell, h))
            o = sigmoid(gi[:, 3 * H:] + hh_numpy(cell.hh_output, h))
            c = f * c + i * g
            h = o * np.tanh(c)
            outs.append(h)
        inputs = np.stack(outs, axis=1)
        hs.append(h)
        cs.append(c)
    return inputs, np.stack(hs), np.stack(cs)


class Scaled(Module):
    """A custom hidden-to-hidden transform: h -> scale * (h W); not a Dense, so the slow path runs."""

    def __init__(self, dense, scale):
        super().__init__()
        self.weight = Parameter(dense.weight.data.copy())
        self.scale = scale
        self.calls = 0

    def forward(self, h):
        self.calls += 1
        return F.matmul(h, self.weight) * self.scale


@pytest.mark.parametrize("num_layers,hh_bias,with_state", [(1, True, False), (2, False, True),
                                                           (2, True, True)])
def test_gru_matches_numpy_reference(rng, num_layers, hh_bias, with_state):
    gru = GRU(3, 4, num_layers=num_layers, hh_bias=hh_bias).astype(np.float64)
    x = rng.standard_normal((2, 5, 3))
    h0 = rng.standard_normal((num_layers, 2, 4)) if with_state else None
    out, h_n = gru(x, h0)
    ref_out, ref_h = gru_reference(gru.cells, x, h0)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n.data, ref_h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_layers,hh_bias,with_state", [(1, True, False), (2, False, True),
                                                           (2, True, True)])
def test_lstm_matches_numpy_reference(rng, num_layers, hh_bias, with_state):
    lstm = LSTM(3, 4, num_layers=num_layers, hh_bias=hh_bias).astype(np.float64)
    x = rng.standard_normal((2, 5, 3))
    state = (rng.standard_normal((num_layers, 2, 4)),
             rng.standard_normal((num_layers, 2, 4))) if with_state else None
    out, (h_n, c_n) = lstm(x, state)
    ref_out, ref_h, ref_c = lstm_reference(lstm.cells, x, state)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n.data, ref_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_n.data, ref_c, rtol=1e-12, atol=1e-12)


def test_cells_alone_match_one_reference_step(rng):
    gru_cell = GRUCell(3, 4).astype(np.float64)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    np.testing.assert_allclose(gru_cell(x, h).data,
                               gru_reference([gru_cell], x[:, None], h[None])[0][:, 0], rtol=1e-12)
    lstm_cell = LSTMCell(3, 4).astype(np.float64)
    c = rng.standard_normal((2, 4))
    h1, c1 = lstm_cell(x, (h, c))
    _, ref_h, ref_c = lstm_reference([lstm_cell], x[:, None], (h[None], c[None]))
    np.testing.assert_allclose(h1.data, ref_h[0], rtol=1e-12)
    np.testing.assert_allclose(c1.data, ref_c[0], rtol=1e-12)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_recurrent_gradcheck_stacked_with_initial_state(rng, cls):
    rnn = cls(2, 3, num_layers=2, hh_bias=True)
    x = leaf(rng.standard_normal((2, 3, 2)))
    h0 = leaf(rng.standard_normal((2, 2, 3)))
    if cls is GRU:
        call = lambda a, s: rnn(a, s)[0] * 1.0 + F.sum(rnn(a, s)[1]) * 0.5  # noqa: E731
        assert gradcheck_module(rnn, x, h0, call=call)
    else:
        c0 = leaf(rng.standard_normal((2, 2, 3)))

        def call(a, s, c):
            out, (h_n, c_n) = rnn(a, (s, c))
            return F.sum(out) + F.sum(h_n * 0.3) + F.sum(c_n * 0.7)
        assert gradcheck_module(rnn, x, h0, c0, call=call)


@pytest.mark.parametrize("cls", [GRUCell, LSTMCell])
def test_cell_gradcheck_slow_path(rng, cls):
    cell = cls(2, 3, hh_bias=False)
    first = cell.gate_names[0]
    setattr(cell, first, Scaled(getattr(cell, first), 0.5))
    x = leaf(rng.standard_normal((2, 2)))
    h = leaf(rng.standard_normal((2, 3)))
    if cls is GRUCell:
        assert gradcheck_module(cell, x, h)
    else:
        assert gradcheck_module(cell, x, h, call=lambda a, s: F.concat(list(cell(a, (s, s * 0.5))), 1))


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_fast_and_slow_paths_agree(rng, cls):
    rnn = cls(3, 4, num_layers=2).astype(np.float64)
    x = rng.standard_normal((2, 4, 3))
    assert rnn.cells[0].fused_hh() is not None
    fast_out = rnn(x)[0]
    F.sum(fast_out * fast_out).backward()
    fast_grads = {k: p.grad.copy() for k, p in rnn.named_parameters()}
    rnn.zero_grad()
    # a do-nothing hook makes every hh_* a "hooked" Dense, which forces the slow path
    removers = [m.register_forward_hook(lambda *a: None)
                for cell in rnn.cells for m in cell.hh_modules()]
    assert rnn.cells[0].fused_hh() is None
    slow_out = rnn(x)[0]
    F.sum(slow_out * slow_out).backward()
    for remove in removers:
        remove()
    np.testing.assert_allclose(fast_out.data, slow_out.data, rtol=1e-12, atol=1e-14)
    for k, p in rnn.named_parameters():
        np.testing.assert_allclose(p.grad, fast_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_whole_sequence_op_and_per_step_cells_agree(rng, cls):
    # no hooks: one lstm/gru_sequence op per layer; a hook on the cell: a cell call per step
    rnn = cls(3, 4, num_layers=2).astype(np.float64)
    x = rng.standard_normal((2, 5, 3))
    state = rng.standard_normal((2, 2, 4))
    state = (state, state * 0.5) if cls is LSTM else state
    runs = []
    for hooked in (False, True):
        rnn.zero_grad()
        removers = [cell.register_forward_hook(lambda *a: None) for cell in rnn.cells] if hooked else []
        ops = []

        class Names(FunctionHook):
            def forward_postprocess(self, function, inputs, outputs):
                ops.append(function.name)
        with Names():
            out, final = rnn(x, state)
        for remove in removers:
            remove()
        finals = final if isinstance(final, tuple) else (final,)
        (F.sum(out * out) + sum(F.sum(f * f) for f in finals)).backward()
        runs.append((out.data, [f.data for f in finals], {k: p.grad.copy() for k, p in rnn.named_parameters()},
                     ops))
    (fast_out, fast_finals, fast_grads, fast_ops), (slow_out, slow_finals, slow_grads, slow_ops) = runs
    assert sum(name.endswith("Sequence") for name in fast_ops) == 2
    assert not any(name.endswith("Sequence") for name in slow_ops)
    np.testing.assert_allclose(fast_out, slow_out, rtol=1e-12, atol=1e-14)
    for a, b in zip(fast_finals, slow_finals):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for k in fast_grads:
        np.testing.assert_allclose(fast_grads[k], slow_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("hh_bias", [True, False])
def test_lstm_input_bias_joins_the_hidden_bias_in_the_sequence_op(rng, hh_bias):
    # the whole-sequence path projects without ih's bias and adds it inside the op with the hidden
    # bias; outputs and every gradient (ih.bias included) equal the per-step cells', which add it apart
    rnn = LSTM(3, 4, hh_bias=hh_bias).astype(np.float64)
    x = rng.standard_normal((2, 5, 3))
    runs = []
    for hooked in (False, True):
        rnn.zero_grad()
        remove = rnn.cells[0].register_forward_hook(lambda *a: None) if hooked else None
        linear_inputs = []

        class Inputs(FunctionHook):
            def forward_postprocess(self, function, inputs, outputs):
                if function.name == "Linear":
                    linear_inputs.append(len(inputs))
        with Inputs():
            out, (h_n, c_n) = rnn(x)
        if remove:
            remove()
        (F.sum(out * out) + F.sum(c_n)).backward()
        runs.append((out.data, linear_inputs, {k: p.grad.copy() for k, p in rnn.named_parameters()}))
    (fast_out, fast_linear, fast_grads), (slow_out, slow_linear, slow_grads) = runs
    assert fast_linear == [2] and slow_linear[0] == 3    # the slow path: ih with its bias, then hh per step
    np.testing.assert_allclose(fast_out, slow_out, rtol=1e-12, atol=1e-14)
    assert "cells.0.ih.bias" in fast_grads
    for k in fast_grads:
        np.testing.assert_allclose(fast_grads[k], slow_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_replaced_hh_module_is_honoured(rng):
    gru = GRU(3, 4, hh_bias=False).astype(np.float64)
    x = rng.standard_normal((2, 5, 3))
    cell = gru.cells[0]
    original = cell.hh_state.weight.data.copy()
    cell.hh_state = Scaled(cell.hh_state, 0.25)
    out = gru(x)[0]
    assert cell.hh_state.calls == 5  # once per step
    # the reference with hh_state's weight scaled by 0.25 is the same computation
    cell_ref = GRUCell(3, 4, hh_bias=False).astype(np.float64)
    cell_ref.load_state_dict({**{k: v for k, v in cell.state_dict().items()},
                              "hh_state.weight": original * 0.25})
    np.testing.assert_allclose(out.data, gru_reference([cell_ref], x)[0], rtol=1e-12)
    assert "cells.0.hh_state.weight" in dict(gru.named_parameters())


def test_parameter_layout_and_init(rng):
    gru = GRU(2, 512, hh_bias=False)
    cell = gru.cells[0]
    assert cell.ih.weight.shape == (2, 1536) and cell.ih.bias.shape == (1536,)
    assert cell.hh_reset.bias is None and cell.hh_state.weight.shape == (512, 512)
    assert gru.num_parameters() == 2 * 1536 + 1536 + 3 * 512 * 512
    bound = 1 / np.sqrt(512)
    assert all(np.abs(p.data).max() <= bound for p in gru.parameters())
    assert np.abs(cell.ih.weight.data).max() > 0.5 * bound  # PyTorch's bound, not 1/sqrt(n_in)
    lstm = LSTM(3, 4, forget_bias=1.0)
    b = lstm.cells[0].ih.bias.data
    assert b[4:8].min() > 0.5 and np.abs(b[:4]).max() <= 0.5
    assert len(LSTM(3, 4, num_layers=3).cells) == 3


def test_dropout_between_layers_only_in_training(rng):
    gru = GRU(3, 4, num_layers=2, dropout=0.5).astype(np.float64)
    x = rng.standard_normal((2, 3, 3))
    engine.manual_seed(1)
    a = gru(x)[0].data
    engine.manual_seed(2)
    b = gru(x)[0].data
    assert not np.allclose(a, b)
    gru.eval()
    np.testing.assert_allclose(gru(x)[0].data, gru_reference(gru.cells, x)[0], rtol=1e-12)


def test_flops_fast_path_equals_slow_path_count(rng):
    H, B, T, n_in = 4, 2, 3, 3
    gru = GRU(n_in, H, hh_bias=False)
    x = rng.standard_normal((B, T, n_in)).astype(np.float32)
    expected = B * T * (3 * H * 2 * n_in + 3 * H) + T * (B * 3 * H * 2 * H + 10 * B * H)
    assert hooked_flops(gru, x) == expected  # hooks on hh_* -> slow path, each Dense counts itself
    cell = gru.cells[0]
    assert hooked_flops(gru, x, only=[cell, cell.ih]) == expected  # fast path: the cell counts them
    lstm = LSTM(n_in, H)
    expected = B * T * (4 * H * 2 * n_in + 4 * H) + T * (B * 4 * H * (2 * H + 1) + 13 * B * H)
    assert hooked_flops(lstm, x) == expected


def test_bad_inputs_name_layer_expected_actual(rng):
    gru = GRU(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"GRU.*size 3.*\(2, 5, 2\)"):
        gru(np.ones((2, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"GRU.*3-D.*\(5, 3\)"):
        gru(np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRU.*h0.*\(2, 2, 4\).*\(1, 2, 4\)"):
        gru(np.ones((2, 5, 3), np.float32), np.zeros((1, 2, 4), np.float32))
    lstm = LSTM(3, 4)
    with pytest.raises(ValueError, match=r"LSTM.*\(h0, c0\)"):
        lstm(np.ones((2, 5, 3), np.float32), np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell.*cell state c.*\(2, 4\).*\(2, 5\)"):
        LSTMCell(3, 4)(np.ones((2, 3), np.float32), (None, np.zeros((2, 5), np.float32)))
    cell = GRUCell(3, 4)
    cell.hh_update = Dense(4, 2)  # maps (B, 4) -> (B, 2): the wrong shape
    with pytest.raises(ValueError, match=r"GRUCell: hh_update must map \(2, 4\) -> \(2, 4\).*\(2, 2\)"):
        cell(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="GRU: num_layers"):
        GRU(3, 4, num_layers=0)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_orthogonal_hh_init(cls):
    rnn = cls(3, 6, num_layers=2, hh_init="orthogonal").astype(np.float64)
    for cell in rnn.cells:
        for m in cell.hh_modules():
            w = m.weight.data
            np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-6)
        assert np.abs(cell.ih.weight.data).max() <= 1 / np.sqrt(6)   # input weights keep the uniform init
    assert "hh_init='orthogonal'" in repr(rnn.cells[0])
    uniform = cls(3, 6)
    w = uniform.cells[0].hh_modules()[0].weight.data
    assert np.abs(w.T @ w - np.eye(6)).max() > 0.1
    with pytest.raises(ValueError, match="hh_init must be one of"):
        cls(3, 6, hh_init="identity")
