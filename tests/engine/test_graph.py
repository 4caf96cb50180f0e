"""Graph semantics: gradient accumulation, generation order, retain_graph, no_grad, hooks, walk, anomalies."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor
from engine.function import Function
from engine.hooks import FunctionHook, TimerHook
from tests.engine._helpers import leaf


def test_tensor_used_twice_sums_gradients():
    x = leaf([3.0, -2.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, -4.0])
    y = leaf([1.0, 2.0])
    (y + y).sum().backward()
    np.testing.assert_allclose(y.grad, [2.0, 2.0])


def test_diamond_graph_runs_the_shared_node_once_with_the_summed_gradient():
    calls = []

    class Double(Function):
        def forward(self, x):
            return 2 * x

        def backward(self, gy):
            calls.append(gy.copy())
            return 2 * gy

    x = leaf([1.0, 2.0])
    a = Double()(x)          # shared intermediate
    b, c = F.exp(a), a * 3   # two branches of different depth
    d = b + c * c
    d.sum().backward()
    # the shared node ran once, after both branches delivered their parts
    assert len(calls) == 1
    expected = np.exp(2 * x.data) + 2 * 9 * (2 * x.data)
    np.testing.assert_allclose(calls[0], expected)
    np.testing.assert_allclose(x.grad, 2 * expected)


def test_generation_order_deep_and_shallow_paths():
    x = leaf([0.5])
    y = x
    for _ in range(5):
        y = F.tanh(y)
    z = y + x * 2   # x feeds the last op directly and the deep chain
    nodes = engine.walk(z)
    assert [n["op"] for n in nodes][0] == "Add" and len(nodes) == 7
    gens = [n["generation"] for n in nodes]
    assert gens == sorted(gens, reverse=True) and gens[0] == 5
    z.backward()
    deep = 1.0
    v = 0.5
    for _ in range(5):
        v = np.tanh(v)
        deep *= 1 - v ** 2
    np.testing.assert_allclose(x.grad, [deep + 2])


def test_backward_twice_needs_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * x.data)  # accumulated over the two passes
    with pytest.raises(RuntimeError, match="second time.*retain_graph"):
        y.backward()


def test_forward_knows_whether_it_records_and_relu_keeps_no_mask_without_a_graph():
    from engine.ops.math import ReLU
    x = leaf([-1.0, 2.0, -np.inf])
    with engine.no_grad():
        f = ReLU()
        y = f(x)
    assert not f.recording and not hasattr(f, "mask")
    np.testing.assert_array_equal(y.data, [0.0, 2.0, 0.0])
    f = ReLU()
    z = f(Tensor(np.array([-1.0, 2.0])))            # no input requires a gradient: nothing recorded
    assert not f.recording and not hasattr(f, "mask") and z.creator is None
    f = ReLU()
    w = f(x)
    assert f.recording and w.creator is f
    w.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


def test_no_grad_records_nothing_and_enable_grad_inside():
    x = leaf([1.0])
    with engine.no_grad():
        y = x * 2
        assert not engine.is_grad_enabled()
        with engine.enable_grad():
            z = x * 2
    assert engine.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    assert z.creator is not None and z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_detach_cuts_the_graph():
    x = leaf([2.0])
    d = (x * 3).detach()
    assert d.is_leaf and not d.requires_grad
    y = x * d
    y.backward()
    np.testing.assert_allclose(x.grad, [6.0])   # d is a constant: dy/dx = d
    np.testing.assert_array_equal(d.data, [6.0])


def test_register_hook_sees_and_replaces_gradients():
    x = leaf([1.0, 2.0])
    seen = []
    h = x * 3
    h.register_hook(lambda g: seen.append(("h", g.copy())))
    handle = h.register_hook(lambda g: g * 10)        # replaces the intermediate gradient
    x.register_hook(lambda g: seen.append(("x", g.copy())))
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0][1], 2 * h.data)
    np.testing.assert_allclose(seen[1][1], 10 * 2 * h.data * 3)
    np.testing.assert_allclose(x.grad, 10 * 2 * h.data * 3)
    handle.remove()
    x.grad = None
    h2 = x * 3
    (h2 * h2).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * h2.data * 3)


def test_leaf_hook_may_replace_gradient_and_sees_the_total():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.copy()) or np.zeros_like(g))
    (x * x + x).sum().backward()   # two contributions, one hook call with their sum
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * x.data + 1)
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_hook_on_constant_is_an_error():
    with pytest.raises(RuntimeError, match="register_hook"):
        Tensor(np.ones(2)).register_hook(lambda g: g)


def test_retain_grad_keeps_intermediate_gradients():
    x = leaf([1.0, 2.0])
    h = (x * 2).retain_grad()
    k = x * 5
    (h * h + k).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    assert k.grad is None   # not retained


def test_walk_and_format_graph_list_ops_and_shapes():
    x = leaf(np.ones((2, 3)))
    w = leaf(np.ones((3, 4)))
    y = F.relu(x @ w).sum()
    nodes = engine.walk(y)
    assert [n["op"] for n in nodes] == ["Sum", "ReLU", "MatMul"]
    assert nodes[2]["inputs"] == [(2, 3), (3, 4)] and nodes[2]["outputs"] == [(2, 4)]
    text = engine.format_graph(y).splitlines()
    assert len(text) == 3
    assert text[2].startswith("MatMul") and "(2, 3), (3, 4) -> (2, 4)" in text[2]
    assert engine.walk(x) == []


def test_detect_anomaly_in_forward_names_the_op():
    x = leaf([-1.0, 1.0])
    with engine.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Log produced NaN in forward.*all its inputs were finite"):
            with np.errstate(invalid="ignore"):
                F.log(x)
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.log(x).data[0])  # outside the context nothing is checked


def test_detect_anomaly_in_backward_names_the_op():
    x = leaf([0.0, 4.0])
    y = F.sqrt(x).sum()   # forward finite, gradient 1/(2*sqrt(0)) is Inf
    with engine.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Sqrt produced Inf in backward"):
            with np.errstate(divide="ignore"):
                y.backward()


def test_function_hook_sees_forward_and_backward():
    events = []

    class Recorder(FunctionHook):
        def forward_postprocess(self, function, inputs, outputs):
            events.append(("forward", function.name, [o.shape for o in outputs]))

        def backward_postprocess(self, function, grad_outputs, grad_inputs):
            events.append(("backward", function.name, [None if g is None else g.shape for g in grad_inputs]))

    x = leaf(np.ones((2, 2)))
    with Recorder():
        F.exp(x).sum().backward()
    F.exp(x)  # after the block: not recorded
    assert events == [("forward", "Exp", [(2, 2)]), ("forward", "Sum", [()]),
                      ("backward", "Sum", [(2, 2)]), ("backward", "Exp", [(2, 2)])]


def test_timer_hook_counts_calls():
    x = leaf(np.ones((3, 3)))
    with TimerHook() as timer:
        for _ in range(3):
            F.tanh(x @ x).sum().backward()
    assert timer.calls == {"MatMul": 3, "Tanh": 3, "Sum": 3}
    assert all(t >= 0 for t in timer.forward_seconds.values())
    assert set(timer.backward_seconds) == {"MatMul", "Tanh", "Sum"}
    assert timer.summary().count("\n") == 2


def test_tensor_basics():
    t = engine.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.dtype == np.float32 and t.shape == (1, 2) and t.ndim == 2 and t.size == 2
    assert t.sum().item() == 3.0 and t.tolist() == [[1.0, 2.0]]
    assert "requires_grad=True" in repr(t) and "grad_fn=Sum" in repr(t.sum())
    with pytest.raises(ValueError, match="item"):
        t.item()
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(RuntimeError, match="non-scalar"):
        (t * 2).backward()
    with pytest.raises(ValueError, match="grad shape"):
        (t * 2).backward(np.ones(3))


def test_backward_with_explicit_gradient_and_on_a_leaf():
    x = leaf([1.0, 2.0])
    (x * 3).backward(np.array([1.0, -1.0]))
    np.testing.assert_allclose(x.grad, [3.0, -3.0])
    y = leaf([1.0])
    y.backward()
    np.testing.assert_allclose(y.grad, [1.0])


def test_numpy_array_on_the_left_defers_to_tensor():
    x = leaf([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


def test_detect_anomaly_says_when_the_input_was_already_bad():
    x = leaf([np.inf, 1.0])
    with engine.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Exp produced Inf.*inputs \[0\] were already non-finite"):
            F.exp(x)
