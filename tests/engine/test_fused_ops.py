"""Gradient checks for the fused ops: linear, GRU/LSTM gate steps, unstack."""
import numpy as np
import pytest

import engine.ops as F
from engine import gradcheck
from tests.conftest import leaf


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
