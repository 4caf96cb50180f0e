"""Optimisers against their update formulas written out in NumPy (PyTorch's forms), schedules, clipping."""
import math

import numpy as np
import pytest

import engine
from engine import optim
from tests.engine._helpers import leaf

STEPS = 4


def _problem(rng):
    """A parameter and a fixed quadratic loss whose gradient is A p - b (so the test can compute it)."""
    a = rng.standard_normal((3, 3))
    a = a @ a.T + np.eye(3)
    b = rng.standard_normal(3)
    p0 = rng.standard_normal(3)

    def grad(p):
        return a @ p - b

    return p0, grad, a, b


def _run(opt_cls, p0, a, b, steps=STEPS, **hyper):
    p = leaf(p0)
    opt = opt_cls([p], **hyper)
    at, bt = engine.Tensor(a), engine.Tensor(b)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (p * (at @ p)).sum() - (p * bt).sum()
        loss.backward()
        opt.step()
    return p.data, opt


def _reference(update, p0, grad, steps=STEPS):
    p, state = p0.copy(), {}
    for t in range(1, steps + 1):
        p = update(p, grad(p), state, t)
    return p


def _sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    def update(p, g, state, t):
        g = g + weight_decay * p
        if momentum:
            state["buf"] = g.copy() if t == 1 else momentum * state["buf"] + g
            g = g + momentum * state["buf"] if nesterov else state["buf"]
        return p - lr * g
    return update


@pytest.mark.parametrize("hyper", [dict(lr=0.1), dict(lr=0.05, momentum=0.9),
                                   dict(lr=0.05, momentum=0.9, nesterov=True),
                                   dict(lr=0.1, weight_decay=0.1), dict(lr=0.05, momentum=0.5, weight_decay=0.01)],
                         ids=str)
def test_sgd_matches_formula(hyper, rng):
    p0, grad, a, b = _problem(rng)
    got, _ = _run(optim.SGD, p0, a, b, **hyper)
    np.testing.assert_allclose(got, _reference(_sgd(**hyper), p0, grad), rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_rmsprop_matches_formula(momentum, rng):
    lr, alpha, eps = 0.01, 0.9, 1e-8

    def update(p, g, state, t):
        state["sq"] = alpha * state.get("sq", 0.0) + (1 - alpha) * g * g
        step = g / (np.sqrt(state["sq"]) + eps)
        if momentum:
            state["buf"] = momentum * state.get("buf", 0.0) + step
            step = state["buf"]
        return p - lr * step

    p0, grad, a, b = _problem(rng)
    got, _ = _run(optim.RMSprop, p0, a, b, lr=lr, alpha=alpha, momentum=momentum)
    np.testing.assert_allclose(got, _reference(update, p0, grad), rtol=1e-10)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_formula(weight_decay, rng):
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8

    def update(p, g, state, t):
        g = g + weight_decay * p
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        m_hat = state["m"] / (1 - b1 ** t)
        v_hat = state["v"] / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    p0, grad, a, b = _problem(rng)
    got, _ = _run(optim.Adam, p0, a, b, lr=lr, betas=(b1, b2), weight_decay=weight_decay)
    np.testing.assert_allclose(got, _reference(update, p0, grad), rtol=1e-10)


def test_adadelta_matches_formula(rng):
    lr, rho, eps = 1.0, 0.9, 1e-6

    def update(p, g, state, t):
        state["sq"] = rho * state.get("sq", 0.0) + (1 - rho) * g * g
        delta = np.sqrt(state.get("acc", 0.0) + eps) / np.sqrt(state["sq"] + eps) * g
        state["acc"] = rho * state.get("acc", 0.0) + (1 - rho) * delta * delta
        return p - lr * delta

    p0, grad, a, b = _problem(rng)
    got, _ = _run(optim.Adadelta, p0, a, b, lr=lr, rho=rho)
    np.testing.assert_allclose(got, _reference(update, p0, grad), rtol=1e-10)


@pytest.mark.parametrize("cls,hyper", [(optim.SGD, dict(lr=0.1, momentum=0.9)), (optim.RMSprop, dict(lr=0.01)),
                                       (optim.Adam, dict(lr=0.01)), (optim.Adadelta, dict())], ids=str)
def test_every_optimizer_lowers_the_loss(cls, hyper, rng):
    p0, grad, a, b = _problem(rng)
    loss = lambda p: 0.5 * p @ a @ p - b @ p   # noqa: E731
    got, _ = _run(cls, p0, a, b, steps=30, **hyper)
    assert loss(got) < loss(p0)


def test_state_dict_round_trip_continues_identically(rng):
    p0, grad, a, b = _problem(rng)
    straight, _ = _run(optim.Adam, p0, a, b, steps=6, lr=0.05)
    half, opt = _run(optim.Adam, p0, a, b, steps=3, lr=0.05)
    saved = opt.state_dict()
    p = leaf(half)
    fresh = optim.Adam([p], lr=0.05)
    fresh.load_state_dict(saved)
    at, bt = engine.Tensor(a), engine.Tensor(b)
    for _ in range(3):
        fresh.zero_grad()
        (0.5 * (p * (at @ p)).sum() - (p * bt).sum()).backward()
        fresh.step()
    np.testing.assert_allclose(p.data, straight, rtol=1e-12)
    assert fresh.step_count == 6


def test_param_groups_have_their_own_lr():
    p, q = leaf([1.0]), leaf([1.0])
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    p.grad, q.grad = np.ones(1), np.ones(1)
    opt.step()
    np.testing.assert_allclose([p.data[0], q.data[0]], [0.9, 0.5])


def test_parameters_without_gradient_are_skipped():
    p, q = leaf([1.0]), leaf([2.0])
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = np.ones(1)
    opt.step()
    assert q.data[0] == 2.0 and p.data[0] != 1.0


def test_step_hook_runs_after_each_step():
    p = leaf([1.0])
    opt = optim.SGD([p], lr=0.5)
    seen = []
    remove = opt.register_step_hook(lambda o: seen.append((o.step_count, float(p.data[0]))))
    for _ in range(2):
        p.grad = np.ones(1)
        opt.step()
    remove()
    p.grad = np.ones(1)
    opt.step()
    assert seen == [(1, 0.5), (2, 0.0)]   # hook saw the already-updated parameter


def test_bad_options():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="unknown option 'momentun'"):
        optim.SGD([leaf([1.0])], lr=0.1, momentun=0.9)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([leaf([1.0])], lr=-1)


def test_step_lr_and_cosine_lr():
    opt = optim.SGD([leaf([1.0])], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        sched.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    opt = optim.SGD([leaf([1.0])], lr=0.2)
    sched = optim.CosineLR(opt, total_epochs=4, min_factor=0.1)
    lrs = []
    for _ in range(5):
        sched.step()
        lrs.append(opt.lr)
    expected = [0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(e, 4) / 4))) for e in range(1, 6)]
    np.testing.assert_allclose(lrs, expected)
    assert lrs[3] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.02)


def test_clip_grad_norm(rng):
    p, q = leaf(np.zeros(2)), leaf(np.zeros(3))
    p.grad, q.grad = np.array([3.0, 0.0]), np.array([0.0, 4.0, 0.0])
    norm = optim.clip_grad_norm([p, q], 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt((p.grad ** 2).sum() + (q.grad ** 2).sum())
    assert total == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p.grad / q.grad[1], [0.75, 0.0])   # direction kept
    small = leaf(np.zeros(1))
    small.grad = np.array([0.5])
    assert optim.clip_grad_norm([small], 1.0) == 0.5 and small.grad[0] == 0.5
    assert optim.clip_grad_norm([leaf([1.0])], 1.0) == 0.0   # no gradients at all


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("numba_off", ["0", "1"])
def test_subtract_scaled_is_numpys_update_bit_for_bit(dtype, numba_off, rng, monkeypatch):
    """The one-pass Numba update and NumPy's p -= alpha * g round alike (alpha * g first, then the
    difference), so switching kernels never changes a training run."""
    from engine.kernels.elementwise import subtract_scaled
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", numba_off)
    p, g = (rng.standard_normal((37, 11)).astype(dtype) for _ in range(2))
    expected = p.copy()
    expected -= 0.0123 * g
    target = p.copy()
    assert subtract_scaled(target, g, 0.0123) is target
    np.testing.assert_array_equal(target, expected)


@pytest.mark.parametrize("make_step", [lambda g: g.T.copy().T, lambda g: g.astype(np.float64), lambda g: g[:1]],
                         ids=["strided", "other dtype", "broadcast row"])
def test_subtract_scaled_falls_back_to_numpy_where_the_kernel_does_not_apply(make_step, rng):
    from engine.kernels.elementwise import subtract_scaled
    p = rng.standard_normal((6, 6)).astype(np.float32)
    step = make_step(rng.standard_normal((6, 6)).astype(np.float32))
    expected = p.copy()
    expected -= 0.5 * step
    np.testing.assert_array_equal(subtract_scaled(p, step, 0.5), expected)
