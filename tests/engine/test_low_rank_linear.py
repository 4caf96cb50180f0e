"""F.low_rank_linear, (x @ u) @ v + b as one op: gradients, agreement with two linear ops, errors."""
import numpy as np
import pytest

import engine
import engine.ops as F
from tests.engine._helpers import check, leaf


@pytest.mark.parametrize("x_shape", [(5, 6), (2, 3, 6), (6,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_float64_gradcheck(x_shape, with_bias, rng):
    arrays = [rng.standard_normal(x_shape), rng.standard_normal((6, 2)), rng.standard_normal((2, 4))]
    if with_bias:
        arrays.append(rng.standard_normal(4))
    assert check(lambda *t: F.low_rank_linear(*t), *arrays)


@pytest.mark.parametrize("x_needs_grad", [True, False])
def test_values_and_gradients_equal_two_linear_ops(x_needs_grad, rng):
    """float32, wide enough (r = 20 -> 300) that the second product carries its bias in the product."""
    data = [rng.standard_normal(s).astype(np.float32) for s in ((16, 30), (30, 20), (20, 300), (300,))]
    fused = [engine.Tensor(a.copy(), requires_grad=k > 0 or x_needs_grad) for k, a in enumerate(data)]
    split = [engine.Tensor(a.copy(), requires_grad=k > 0 or x_needs_grad) for k, a in enumerate(data)]
    y = F.low_rank_linear(*fused)
    y_ref = F.linear(F.linear(split[0], split[1]), split[2], split[3])
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-5, atol=1e-5)
    weights = rng.standard_normal(y.shape).astype(np.float32)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    for a, b in zip(fused, split):
        if b.grad is None:
            assert a.grad is None and not x_needs_grad
            continue
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_without_a_graph_nothing_is_kept_for_backward(rng):
    x, u, v = (rng.standard_normal(s) for s in ((4, 5), (5, 2), (2, 3)))
    with engine.no_grad():
        y = F.low_rank_linear(x, u, v)
    assert y.creator is None
    np.testing.assert_allclose(y.data, x @ u @ v, rtol=1e-12)
    recorded = F.low_rank_linear(leaf(x), leaf(u), leaf(v))
    assert recorded.creator.middle.shape == (4, 2)


@pytest.mark.parametrize("shapes, message", [
    (((4, 5), (6, 2), (2, 3)), "do not chain"),
    (((4, 5), (5, 2), (3, 3)), "do not chain"),
    (((4, 5), (5, 2, 1), (2, 3)), "do not chain"),
])
def test_shapes_that_do_not_chain_are_one_line_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        F.low_rank_linear(*(np.zeros(s) for s in shapes))


def test_a_bias_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match=r"bias shape \(2,\) must be \(3,\)"):
        F.low_rank_linear(np.zeros((4, 5)), np.zeros((5, 2)), np.zeros((2, 3)), np.zeros(2))
