"""Gradient checks and NumPy comparisons for sum/mean/max/min and softmax/log_softmax."""
import numpy as np
import pytest

import engine.ops as F
from tests.engine._helpers import leaf, check, distinct

AXES = [((3,), None), ((3,), 0), ((2, 3), 1), ((2, 3), -1), ((2, 3, 4), (0, 2)), ((1, 3, 1), (0, 2)),
        ((2, 3), ()), ((), None)]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape,axis", AXES, ids=str)
def test_reductions(name, keepdims, shape, axis, rng):
    op, reference = getattr(F, name), getattr(np, name)
    x = distinct(rng, shape)  # no ties, so max/min are differentiable
    np.testing.assert_allclose(op(leaf(x), axis, keepdims).data, reference(x, axis=axis, keepdims=keepdims),
                               rtol=1e-12)
    assert check(lambda t: op(t, axis=axis, keepdims=keepdims), x)


def test_reduction_methods(rng):
    x = rng.standard_normal((2, 3))
    t = leaf(x)
    np.testing.assert_allclose(t.sum(axis=0).data, x.sum(0))
    np.testing.assert_allclose(t.mean(1, True).data, x.mean(1, keepdims=True))
    np.testing.assert_allclose(t.max().data, x.max())
    np.testing.assert_allclose(t.min(axis=-1).data, x.min(-1))


def test_max_ties_share_the_gradient():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    F.max(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_bad_axis_is_a_clear_error():
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.sum(leaf(np.ones((2, 2))), axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        F.mean(leaf(np.ones((2, 2))), axis=(0, 0))


def test_reductions_keep_float32():
    x = leaf(np.ones((2, 3))).astype("float32")
    for op in (F.sum, F.mean, F.max, F.min):
        assert op(x).dtype == np.float32
        assert op(x, axis=0).dtype == np.float32


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape,axis", [((4,), -1), ((2, 3), -1), ((2, 3), 0), ((2, 1, 3), 1),
                                        ((2, 3, 2), 1)], ids=str)
def test_softmax_and_log_softmax(shape, axis, rng):
    x = rng.standard_normal(shape) * 2
    np.testing.assert_allclose(F.softmax(leaf(x), axis).data, _np_softmax(x, axis), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(leaf(x), axis).data, np.log(_np_softmax(x, axis)), rtol=1e-10)
    assert check(lambda t: F.softmax(t, axis), x)
    assert check(lambda t: F.log_softmax(t, axis), x)


def test_softmax_is_stable_for_huge_logits():
    x = leaf([[1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(F.softmax(x).data, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(F.log_softmax(x).data, [[0.0, -1000.0, -2000.0]])
