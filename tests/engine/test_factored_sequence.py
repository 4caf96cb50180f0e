"""Whole-sequence GRU/LSTM ops with a low-rank hidden weight (factors a, c): the per-step composition
as reference, float64 gradient checks, shape errors, and a recurrent layer of LowRankDense gates
running as one op."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor, gradcheck
from engine.kernels import recurrent as recurrent_kernels
from engine.ops import recurrent_sequence
from tests.conftest import leaf

from .recurrent_reference import per_step_layer


def _per_step(kind, gi, a, c, b, h0, c0):
    """The same layer as per-step ops: each gate's hidden input is (h a_g) c_g, the gates side by side."""
    gates, rank, _ = c.shape

    def hidden_input(h):
        gh = F.concat([F.matmul(F.matmul(h, a[:, g * rank:(g + 1) * rank]), c[g]) for g in range(gates)], axis=1)
        return gh if b is None else gh + b
    return per_step_layer(kind, gi, hidden_input, h0, c0)


@pytest.mark.parametrize("impl", recurrent_kernels.available_implementations())
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_factored_sequence_matches_per_step_ops_and_gradcheck(kind, bias, impl):
    rng = np.random.default_rng(11)
    batch, steps, hidden, rank = 3, 4, 3, 2
    k = 4 if kind == "lstm" else 3
    gi = leaf(rng.standard_normal((batch, steps, k * hidden)))
    a, c = leaf(rng.standard_normal((hidden, k * rank))), leaf(rng.standard_normal((k, rank, hidden)) * 0.7)
    b = leaf(rng.standard_normal(k * hidden)) if bias else None
    h0, c0 = leaf(rng.standard_normal((batch, hidden))), leaf(rng.standard_normal((batch, hidden)))
    op = F.lstm_sequence if kind == "lstm" else F.gru_sequence
    states = (h0, c0) if kind == "lstm" else (h0,)
    outs = op(gi, (a, c), b, *states, impl=impl)
    ref = _per_step(kind, gi, a, c, b, h0, c0)
    for got, want in zip(outs, ref):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=1e-14)

    def loss(gi_, a_, c_, *rest):
        b_, rest = (rest[0], rest[1:]) if bias else (None, rest)
        # every output feeds the scalar with its own weight, so each backward path is checked
        return sum(F.sum(o * o) * (n + 1) for n, o in enumerate(op(gi_, (a_, c_), b_, *rest, impl=impl)))
    args = [gi, a, c] + ([b] if bias else []) + list(states)
    assert gradcheck(loss, *args)


def test_factored_weight_gradients_equal_the_per_step_composition():
    rng = np.random.default_rng(12)
    gi, a, c = (leaf(rng.standard_normal(s)) for s in ((2, 5, 6), (2, 3), (3, 1, 2)))
    F.sum(F.gru_sequence(gi, (a, c))[0] ** 2).backward()
    got = [gi.grad.copy(), a.grad.copy(), c.grad.copy()]
    for t in (gi, a, c):
        t.grad = None
    zeros = Tensor(np.zeros((2, 2)))
    F.sum(_per_step("gru", gi, a, c, None, zeros, None)[0] ** 2).backward()
    for g, t in zip(got, (gi, a, c)):
        np.testing.assert_allclose(g, t.grad, rtol=1e-12, atol=1e-14)


def test_factored_shapes_are_checked():
    gi = np.zeros((2, 3, 6))
    with pytest.raises(ValueError, match=r"gru_sequence: a factored hidden weight is a pair \(a, c\), got 3"):
        F.gru_sequence(gi, (np.zeros((2, 3)), np.zeros((3, 1, 2)), np.zeros(1)))
    with pytest.raises(ValueError, match=r"gru_sequence: second factors must be \(3, rank, 2\), got \(2, 1, 2\)"):
        F.gru_sequence(gi, (np.zeros((2, 2)), np.zeros((2, 1, 2))))
    with pytest.raises(ValueError, match=r"gru_sequence: first factors must be \(2, 3\), got \(2, 6\)"):
        F.gru_sequence(gi, (np.zeros((2, 6)), np.zeros((3, 1, 2))))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_low_rank_recurrent_layer_runs_as_one_op_and_matches_the_cell_calls(kind, monkeypatch):
    from compressors import lowrank
    from layers.models import sequence_model
    model = sequence_model(kind, n_in=2, hidden=6)
    lowrank.truncate(model, rank=2)
    x = np.random.default_rng(13).standard_normal((3, 5, 2)).astype(np.float32)
    op_class = recurrent_sequence.LSTMSequence if kind == "lstm" else recurrent_sequence.GRUSequence
    calls = []
    forward = op_class.forward
    monkeypatch.setattr(op_class, "forward", lambda self, *a: calls.append(len(a)) or forward(self, *a))
    with engine.no_grad():
        one_op = model(x).data
    # a GRU with 2 input features hands its input projection to the op (w_ih, b_ih after h0)
    state = ("c0",) if kind == "lstm" else ("w_ih", "b_ih")
    assert calls == [len(("gi", "b", "h0") + state + ("a", "c"))]
    cell = next(m for m in model.modules() if type(m).__name__ in ("GRUCell", "LSTMCell"))
    cell.register_forward_hook(lambda *args: None)      # a cell hook needs a call per step
    with engine.no_grad():
        per_step = model(x).data
    assert len(calls) == 1
    np.testing.assert_allclose(one_op, per_step, rtol=1e-5, atol=1e-6)


def test_a_hook_on_a_factor_keeps_the_per_step_path():
    from compressors.lowrank_layers import LowRankDense
    from layers import Dense
    low = LowRankDense.from_dense(Dense(4, 4), 2)
    assert low.as_factors() is not None
    low.second.register_forward_hook(lambda *args: None)
    assert low.as_factors() is None


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_an_empty_sequence_gives_zero_factor_gradients(kind):
    k = 4 if kind == "lstm" else 3
    a, c = leaf(np.ones((2, k))), leaf(np.ones((k, 1, 2)))
    op = F.lstm_sequence if kind == "lstm" else F.gru_sequence
    outs = op(leaf(np.zeros((2, 0, 2 * k))), (a, c))
    assert outs[0].shape == (2, 0, 2)
    F.sum(outs[1]).backward()
    np.testing.assert_array_equal(a.grad, np.zeros_like(a.data))
    np.testing.assert_array_equal(c.grad, np.zeros_like(c.data))
