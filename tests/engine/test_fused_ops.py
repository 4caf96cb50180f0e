"""Gradient checks for the fused ops: linear, GRU/LSTM gate steps and whole sequences, unstack."""
import numpy as np
import pytest

import engine.ops as F
from engine import Tensor, gradcheck
from engine.kernels import recurrent as recurrent_kernels
from tests.conftest import leaf

from .recurrent_reference import per_step_layer


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 5, 3), (3,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck_and_forward(x_shape, bias):
    rng = np.random.default_rng(1)
    x, w, b = leaf(rng.standard_normal(x_shape)), leaf(rng.standard_normal((3, 2))), leaf(rng.standard_normal(2))
    args = (x, w, b) if bias else (x, w)
    assert gradcheck(lambda *a: F.linear(*a), *args)
    expected = x.data @ w.data + (b.data if bias else 0)
    np.testing.assert_allclose(F.linear(*args).data, expected, rtol=1e-12)


def _gru_reference(gi, h, gh):
    hidden = h.shape[1]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    r = sig(gi[:, :hidden] + gh[:, :hidden])
    z = sig(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    return (1 - z) * n + z * h


@pytest.mark.parametrize("split", [False, True])
def test_gru_gates(split):
    rng = np.random.default_rng(2)
    b, hidden = 3, 4
    gi, h, gh = (leaf(rng.standard_normal(s)) for s in [(b, 3 * hidden), (b, hidden), (b, 3 * hidden)])
    parts = [leaf(gh.data[:, k * hidden:(k + 1) * hidden].copy()) for k in range(3)] if split else [gh]
    out = F.gru_gates(gi, h, *parts)
    np.testing.assert_allclose(out.data, _gru_reference(gi.data, h.data, gh.data), rtol=1e-12)
    assert gradcheck(lambda *a: F.gru_gates(*a), gi, h, *parts)


@pytest.mark.parametrize("split", [False, True])
def test_lstm_gates(split):
    rng = np.random.default_rng(3)
    b, hidden = 2, 3
    gi, c, gh = (leaf(rng.standard_normal(s)) for s in [(b, 4 * hidden), (b, hidden), (b, 4 * hidden)])
    parts = [leaf(gh.data[:, k * hidden:(k + 1) * hidden].copy()) for k in range(4)] if split else [gh]
    h_new, c_new = F.lstm_gates(gi, c, *parts)
    a = gi.data + gh.data
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f = sig(a[:, :hidden]), sig(a[:, hidden:2 * hidden])
    g, o = np.tanh(a[:, 2 * hidden:3 * hidden]), sig(a[:, 3 * hidden:])
    np.testing.assert_allclose(c_new.data, f * c.data + i * g, rtol=1e-12)
    np.testing.assert_allclose(h_new.data, o * np.tanh(f * c.data + i * g), rtol=1e-12)
    # both outputs feed the checked scalar, and each one alone (the other gets a zero gradient)
    assert gradcheck(lambda *a: F.lstm_gates(*a)[0] * 2 + F.lstm_gates(*a)[1], gi, c, *parts)
    assert gradcheck(lambda *a: F.lstm_gates(*a)[0], gi, c, *parts)


def test_unstack_round_trip_and_gradcheck():
    rng = np.random.default_rng(4)
    x = leaf(rng.standard_normal((2, 3, 4)))
    parts = F.unstack(x, axis=1)
    assert len(parts) == 3 and parts[0].shape == (2, 4)
    np.testing.assert_array_equal(parts[2].data, x.data[:, 2])
    assert gradcheck(lambda t: F.unstack(t, axis=1)[0] * 3 + F.unstack(t, axis=1)[2], x)


def _per_step(kind, gi, w, b, h0, c0):
    """The same layer as a loop of per-step gate ops (the reference for the sequence ops)."""
    return per_step_layer(kind, gi, lambda h: F.linear(h, w, b), h0, c0)


@pytest.mark.parametrize("impl", recurrent_kernels.available_implementations())
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_sequence_op_matches_per_step_ops_and_gradcheck(kind, bias, impl):
    rng = np.random.default_rng(5)
    batch, steps, hidden = 3, 4, 2
    k = 4 if kind == "lstm" else 3
    gi, w = leaf(rng.standard_normal((batch, steps, k * hidden))), leaf(rng.standard_normal((hidden, k * hidden)))
    b = leaf(rng.standard_normal(k * hidden)) if bias else None
    h0, c0 = leaf(rng.standard_normal((batch, hidden))), leaf(rng.standard_normal((batch, hidden)))
    if kind == "lstm":
        out, h_last, c_last = F.lstm_sequence(gi, w, b, h0, c0, impl=impl)
    else:
        (out, h_last), c_last = F.gru_sequence(gi, w, b, h0, impl=impl), None
    ref_out, ref_h, ref_c = _per_step(kind, gi, w, b, h0, c0)
    np.testing.assert_allclose(out.data, ref_out.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_last.data, ref_h.data, rtol=1e-12, atol=1e-14)
    if kind == "lstm":
        np.testing.assert_allclose(c_last.data, ref_c.data, rtol=1e-12, atol=1e-14)
    args = [a for a in (gi, w, b, h0, c0 if kind == "lstm" else None) if a is not None]

    def loss(*a):
        a = list(a)
        gi_, w_ = a[:2]
        b_ = a[2] if bias else None
        rest = a[3:] if bias else a[2:]
        op = F.lstm_sequence if kind == "lstm" else F.gru_sequence
        outs = op(gi_, w_, b_, *rest, impl=impl)
        # every output feeds the scalar, with different weights, so each backward path is checked
        return sum(F.sum(o * o) * (k + 1) for k, o in enumerate(outs))
    assert gradcheck(loss, *args)


@pytest.mark.parametrize("impl", recurrent_kernels.available_implementations())
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("steps", [1, 4, 5])
def test_sequence_op_without_a_graph_matches_the_per_step_ops(kind, steps, impl):
    """Without a graph one gate workspace serves every step (the LSTM's cell state two, in turn):
    the outputs and last states, at odd and even lengths, are those of the per-step ops."""
    import engine
    rng = np.random.default_rng(6)
    batch, hidden = 3, 2
    k = 4 if kind == "lstm" else 3
    gi, w = rng.standard_normal((batch, steps, k * hidden)), rng.standard_normal((hidden, k * hidden))
    b, h0, c0 = rng.standard_normal(k * hidden), rng.standard_normal((batch, hidden)), rng.standard_normal((batch, hidden))
    with engine.no_grad():
        if kind == "lstm":
            outs = F.lstm_sequence(gi, w, b, h0, c0, impl=impl)
        else:
            outs = F.gru_sequence(gi, w, b, h0, impl=impl)
    assert outs[0].creator is None
    refs = _per_step(kind, *(Tensor(a) for a in (gi, w, b, h0, c0)))
    for ours, ref in zip(outs, refs):
        np.testing.assert_allclose(ours.data, ref.data, rtol=1e-12, atol=1e-14)


def test_sequence_op_zero_initial_state_and_bad_shapes():
    rng = np.random.default_rng(6)
    gi, w = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 8))
    out, h, c = F.lstm_sequence(gi, w)
    ref = _per_step("lstm", leaf(gi), leaf(w), None, leaf(np.zeros((2, 2))), leaf(np.zeros((2, 2))))
    np.testing.assert_allclose(out.data, ref[0].data, rtol=1e-12)
    with pytest.raises(ValueError, match=r"lstm_sequence: hidden weight must be \(2, 8\), got \(8, 2\)"):
        F.lstm_sequence(gi, w.T)
    with pytest.raises(ValueError, match=r"gru_sequence: projected input must be \(batch, steps, 3 \* hidden\)"):
        F.gru_sequence(gi, w)
    with pytest.raises(ValueError, match=r"lstm_sequence: c0 must be \(2, 2\), got \(3, 2\)"):
        F.lstm_sequence(gi, w, None, None, np.zeros((3, 2)))


@pytest.mark.skipif("numba" not in recurrent_kernels.available_implementations(),
                    reason="numba is not installed or COMPACTNET_DISABLE_NUMBA=1")
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_numba_and_numpy_agree_in_float32(kind):
    rng = np.random.default_rng(7)
    k = 4 if kind == "lstm" else 3
    gi = rng.standard_normal((5, 6, k * 8)).astype(np.float32)
    w = (rng.standard_normal((8, k * 8)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(k * 8) * 0.3).astype(np.float32)
    grads, outs = {}, {}
    for impl in ("numpy", "numba"):
        a, b = Tensor(gi.copy(), requires_grad=True), Tensor(w.copy(), requires_grad=True)
        op = F.lstm_sequence if kind == "lstm" else F.gru_sequence
        results = op(a, b, Tensor(bias), impl=impl)
        out = results[0]
        F.sum(out * out).backward()
        assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32 and out.dtype == np.float32
        grads[impl] = (a.grad, b.grad)
        outs[impl] = [r.data for r in results]
    # the forward steps: Numba's sigmoid is 0.5 tanh(0.5 x) + 0.5, NumPy's 1 / (1 + exp(-x))
    for x, y in zip(outs["numpy"], outs["numba"]):
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)
    for x, y in zip(grads["numpy"], grads["numba"]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif("numba" not in recurrent_kernels.available_implementations(),
                    reason="compares the Numba GRU step with the NumPy one")
@pytest.mark.parametrize("with_scratch", [True, False])
def test_gru_forward_step_numba_matches_numpy_with_or_without_a_scratch(with_scratch):
    """The Numba step puts the tanh arguments in a contiguous scratch: the caller's, or one from the pool."""
    rng = np.random.default_rng(7)
    batch, steps, hidden = 4, 3, 5
    gi, b = rng.standard_normal((batch, steps, 3 * hidden)), rng.standard_normal(3 * hidden)
    gh, h_prev = rng.standard_normal((batch, 3 * hidden)), rng.standard_normal((batch, hidden))
    results = {}
    for impl in ("numpy", "numba"):
        a, gh_n, h = np.empty((batch, 3 * hidden)), np.empty((batch, hidden)), np.empty((batch, hidden))
        scratch = np.empty((batch, 3 * hidden)) if with_scratch and impl == "numba" else None
        recurrent_kernels.gru_forward_step(a, gh.copy(), gi, 1, b, gh_n, h_prev, h, impl, scratch)
        results[impl] = (a, gh_n, h)
    for ours, reference in zip(results["numba"], results["numpy"]):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)
