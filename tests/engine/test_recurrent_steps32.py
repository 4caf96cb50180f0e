"""The float32 one-pass recurrent steps (their own tanh), the GRU op that projects its own input,
and the sequence ops without their per-step outputs."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import gradcheck
from engine.kernels import load_numba_module
from engine.kernels import recurrent as recurrent_kernels
from tests.conftest import leaf

needs_numba = pytest.mark.skipif("numba" not in recurrent_kernels.available_implementations(),
                                 reason="the float32 steps are Numba kernels (numba missing or disabled)")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _gru_step64(gh, gi_t, b, h_prev):
    """(r|z|n, gh_n, h) of one GRU step in float64 NumPy."""
    hidden = h_prev.shape[1]
    gh = gh + b
    rz = _sigmoid(gi_t[:, :2 * hidden] + gh[:, :2 * hidden])
    gh_n = gh[:, 2 * hidden:]
    n = np.tanh(gi_t[:, 2 * hidden:] + rz[:, :hidden] * gh_n)
    h = n + rz[:, hidden:] * (h_prev - n)
    return np.concatenate([rz, n], axis=1), gh_n, h


@needs_numba
def test_tanh32_error_bounds_and_special_values():
    kernels = load_numba_module("recurrent_numba")
    grid = np.concatenate([np.linspace(-20, 20, 400_001), np.logspace(-30, 1.5, 20_001),
                           -np.logspace(-30, 1.5, 20_001)]).astype(np.float32)
    ours = np.empty_like(grid)
    kernels.tanh_into(grid, ours)
    exact = np.tanh(grid.astype(np.float64))
    assert np.abs(ours - exact).max() <= 4e-7
    tiny = (np.abs(grid) < 1e-3) & (grid != 0)      # relative accuracy where tanh(x) ~ x
    assert np.abs(ours[tiny] / exact[tiny] - 1).max() <= 2.5e-7
    assert np.abs(ours).max() <= 1.0
    flipped = np.empty_like(grid)
    kernels.tanh_into(-grid, flipped)
    np.testing.assert_array_equal(flipped, -ours)    # odd, exactly
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 9.0, 1e30], np.float32)
    out = np.empty_like(special)
    kernels.tanh_into(special, out)
    assert np.isnan(out[0]) and out[1] == 1 and out[2] == -1 and out[5] == 1 and out[6] == 1
    assert out[3] == 0 and not np.signbit(out[3]) and np.signbit(out[4])


@needs_numba
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_step32_matches_float64(keep, bias):
    rng = np.random.default_rng(3)
    batch, steps, hidden = 5, 3, 7
    gi = rng.standard_normal((batch, steps, 3 * hidden)) * 2
    gh, h_prev = rng.standard_normal((batch, 3 * hidden)) * 2, rng.standard_normal((batch, hidden))
    b = rng.standard_normal(3 * hidden) if bias else None
    a, gh_n, h = (np.full(shape, np.nan, np.float32) for shape in ((batch, 3 * hidden), (batch, hidden), (batch, hidden)))
    f32 = lambda v: None if v is None else v.astype(np.float32)  # noqa: E731
    recurrent_kernels.gru_forward_step(a, f32(gh), f32(gi), 1, f32(b), gh_n, f32(h_prev), h, keep=keep)
    ref_a, ref_gh_n, ref_h = _gru_step64(gh, gi[:, 1], np.zeros(3 * hidden) if b is None else b, h_prev)
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=2e-6)
    if keep:
        np.testing.assert_allclose(a, ref_a, rtol=0, atol=2e-6)
        np.testing.assert_allclose(gh_n, ref_gh_n, rtol=1e-6, atol=1e-6)
    else:   # nothing kept for a backward that will not come
        assert np.isnan(a).all() and np.isnan(gh_n).all()


@needs_numba
def test_lstm_step32_matches_float64():
    rng = np.random.default_rng(4)
    batch, steps, hidden = 4, 2, 6
    gi, hw = rng.standard_normal((batch, steps, 4 * hidden)) * 2, rng.standard_normal((batch, 4 * hidden)) * 2
    b, c_prev = rng.standard_normal(4 * hidden), rng.standard_normal((batch, hidden))
    a = hw.astype(np.float32)
    c, tc, h = (np.empty((batch, hidden), np.float32) for _ in range(3))
    recurrent_kernels.lstm_forward_step(a, gi.astype(np.float32), 0, b.astype(np.float32),
                                        c_prev.astype(np.float32), c, tc, h)
    pre = hw + gi[:, 0] + b
    i, f, g, o = (pre[:, k * hidden:(k + 1) * hidden] for k in range(4))
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    ref_c = f * c_prev + i * g
    np.testing.assert_allclose(a, np.concatenate([i, f, g, o], axis=1), rtol=0, atol=2e-6)
    np.testing.assert_allclose(c, ref_c, rtol=0, atol=4e-6)
    np.testing.assert_allclose(tc, np.tanh(ref_c), rtol=0, atol=4e-6)
    np.testing.assert_allclose(h, o * np.tanh(ref_c), rtol=0, atol=4e-6)


@needs_numba
@pytest.mark.parametrize("with_bias", [True, False])
def test_gru_step_that_projects_matches_the_projected_step(with_bias):
    rng = np.random.default_rng(5)
    batch, steps, n_in, hidden = 4, 3, 2, 5
    x = rng.standard_normal((batch, steps, n_in)).astype(np.float32)
    w_ih = rng.standard_normal((n_in, 3 * hidden)).astype(np.float32)
    b_ih = rng.standard_normal(3 * hidden).astype(np.float32) if with_bias else None
    b = rng.standard_normal(3 * hidden).astype(np.float32)
    gh, h_prev = rng.standard_normal((batch, 3 * hidden)).astype(np.float32), rng.standard_normal((batch, hidden)).astype(np.float32)
    step = recurrent_kernels.gru_projecting_stepper(x, w_ih, b_ih, b)
    h = np.empty_like(h_prev)
    step(gh, 2, h_prev, h)
    gi = x @ w_ih + (0 if b_ih is None else b_ih)
    expected = np.empty_like(h_prev)
    recurrent_kernels.gru_forward_step(np.empty((batch, 3 * hidden), np.float32), gh.copy(), gi, 2, b,
                                       np.empty_like(h_prev), h_prev, expected, keep=False)
    np.testing.assert_allclose(h, expected, rtol=0, atol=1e-6)
    # where no kernel forms the projection, the op projects the whole sequence itself
    assert recurrent_kernels.gru_projecting_stepper(x.astype(np.float64), w_ih.astype(np.float64), None, None) is None
    assert recurrent_kernels.gru_projecting_stepper(x[:, ::-1], w_ih, None, None) is None
    assert recurrent_kernels.gru_projecting_stepper(x, w_ih, None, None, impl="numpy") is None
    # the kernel reads the first feature before its loop over the rest: with none, no kernel
    assert recurrent_kernels.gru_projecting_stepper(x[:, :, :0].copy(), w_ih[:0].copy(), b_ih, b) is None


@needs_numba
@pytest.mark.parametrize("n_in", [1, 3])
def test_gru_step_that_projects_takes_any_number_of_features(n_in):
    rng = np.random.default_rng(8)
    batch, steps, hidden = 3, 2, 4
    x = rng.standard_normal((batch, steps, n_in)).astype(np.float32)
    w_ih = rng.standard_normal((n_in, 3 * hidden)).astype(np.float32)
    b_ih, b = (rng.standard_normal(3 * hidden).astype(np.float32) for _ in range(2))
    gh, h_prev = rng.standard_normal((batch, 3 * hidden)).astype(np.float32), rng.standard_normal((batch, hidden)).astype(np.float32)
    h = np.empty_like(h_prev)
    recurrent_kernels.gru_projecting_stepper(x, w_ih, b_ih, b)(gh, 1, h_prev, h)
    expected = np.empty_like(h_prev)
    recurrent_kernels.gru_forward_step(np.empty((batch, 3 * hidden), np.float32), gh.copy(), x @ w_ih + b_ih, 1, b,
                                       np.empty_like(h_prev), h_prev, expected, keep=False)
    np.testing.assert_allclose(h, expected, rtol=0, atol=1e-6)


def _gru_inputs(rng, batch=3, steps=4, n_in=2, hidden=3, dtype=np.float64):
    """x, w_ih, b_ih, w, b, h0 as tensors that require gradients."""
    shapes = [(batch, steps, n_in), (n_in, 3 * hidden), (3 * hidden,), (hidden, 3 * hidden), (3 * hidden,), (batch, hidden)]
    return [engine.Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


@pytest.mark.parametrize("impl", recurrent_kernels.available_implementations())
@pytest.mark.parametrize("ih_bias", [True, False])
def test_gru_sequence_with_ih_equals_the_projected_form_and_gradchecks(impl, ih_bias):
    rng = np.random.default_rng(6)
    x, w_ih, b_ih, w, b, h0 = _gru_inputs(rng)
    b_ih = b_ih if ih_bias else None
    gi = F.linear(x, w_ih, b_ih)
    ref_out, ref_h = F.gru_sequence(gi, w, b, h0, impl=impl)
    out, h = F.gru_sequence(x, w, b, h0, impl=impl, ih=(w_ih, b_ih))
    np.testing.assert_allclose(out.data, ref_out.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.data, ref_h.data, rtol=1e-12, atol=1e-14)
    args = [a for a in (x, w_ih, b_ih, w, b, h0) if a is not None]

    def loss(*a):
        a = list(a)
        x_, wi = a[0], a[1]
        bi = a[2] if ih_bias else None
        w_, b_, h0_ = a[-3:]
        out_, h_ = F.gru_sequence(x_, w_, b_, h0_, impl=impl, ih=(wi, bi))
        return F.sum(out_ * out_) + 2 * F.sum(h_ * h_)
    assert gradcheck(loss, *args)


@pytest.mark.parametrize("impl", recurrent_kernels.available_implementations())
def test_gru_sequence_with_ih_without_a_graph_in_float32(impl):
    rng = np.random.default_rng(7)
    x, w_ih, b_ih, w, b, h0 = _gru_inputs(rng, batch=5, steps=6, n_in=3, hidden=8, dtype=np.float32)
    with engine.no_grad():
        ref_out, ref_h = F.gru_sequence(F.linear(x, w_ih, b_ih), w, b, h0, impl=impl)
        out, h = F.gru_sequence(x, w, b, h0, impl=impl, ih=(w_ih, b_ih))
        none, h_alone = F.gru_sequence(x, w, b, h0, impl=impl, ih=(w_ih, b_ih), outputs=False)
    assert out.dtype == np.float32 and none is None
    np.testing.assert_allclose(out.data, ref_out.data, rtol=0, atol=2e-6)
    np.testing.assert_allclose(h.data, ref_h.data, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(h_alone.data, h.data)


def test_gru_sequence_rejects_a_bad_ih():
    rng = np.random.default_rng(8)
    x, w_ih, b_ih, w, b, h0 = _gru_inputs(rng)
    with pytest.raises(ValueError, match=r"gru_sequence: ih must be a pair"):
        F.gru_sequence(x, w, b, ih=w_ih)
    with pytest.raises(ValueError, match=r"w_ih \(n_in, 3 \* hidden\), got \(3, 4, 2\) and \(3, 9\)"):
        F.gru_sequence(x, w, b, ih=(w_ih.data[:1].repeat(3, 0), None))
    with pytest.raises(ValueError, match=r"gru_sequence: b_ih must be \(9,\), got \(8,\)"):
        F.gru_sequence(x, w, b, ih=(w_ih, b_ih.data[:8]))
    with pytest.raises(ValueError, match=r"gru_sequence: hidden weight must be \(3, 9\)"):
        F.gru_sequence(x, w.data[:2], b, ih=(w_ih, b_ih))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_sequence_ops_without_outputs_give_the_same_states_and_gradients(kind):
    """outputs=False: (None, final states); backward through the final states alone equals
    backward through the full op's last output."""
    rng = np.random.default_rng(9)
    batch, steps, hidden = 3, 4, 2
    k = 4 if kind == "lstm" else 3
    gi, w = leaf(rng.standard_normal((batch, steps, k * hidden))), leaf(rng.standard_normal((hidden, k * hidden)))
    b, h0 = leaf(rng.standard_normal(k * hidden)), leaf(rng.standard_normal((batch, hidden)))
    op = F.lstm_sequence if kind == "lstm" else F.gru_sequence
    full = op(gi, w, b, h0)
    alone = op(gi, w, b, h0, outputs=False)
    assert alone[0] is None and len(alone) == len(full)
    for a, f in zip(alone[1:], full[1:]):
        np.testing.assert_array_equal(a.data, f.data)
    grads = []
    for last in (F.getitem(full[0], (slice(None), -1)), alone[1]):
        for t in (gi, w, b, h0):
            t.grad = None
        F.sum(last * last).backward()
        grads.append([t.grad.copy() for t in (gi, w, b, h0)])
    for g_full, g_alone in zip(*grads):
        np.testing.assert_allclose(g_alone, g_full, rtol=1e-12, atol=1e-14)

    def loss(*a):
        return F.sum(op(*a, outputs=False)[1] ** 2)
    assert gradcheck(loss, gi, w, b, h0)
