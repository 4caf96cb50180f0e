"""Cross-entropy's Numba passes (engine/kernels/cross_entropy_numba.py) against its NumPy path: values,
gradients, special values, label checks, and where the op declines them."""
import importlib
import importlib.util

import numpy as np
import pytest

import engine
import engine.ops as F
from tests.engine._helpers import check

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="the cross-entropy kernels are Numba's (numba is not installed)")


def leaf(array):
    """A leaf keeping the array's dtype (the float32 path is the one training runs)."""
    return engine.Tensor(np.array(array), requires_grad=True)


def _loss_and_grad(logits, labels, reduction, ignore_index):
    x = leaf(logits)
    loss = F.cross_entropy(x, labels, reduction=reduction, ignore_index=ignore_index)
    loss.sum().backward()
    return loss, x.grad


def _both_paths(monkeypatch, logits, labels, reduction="mean", ignore_index=None):
    """((loss, grad) through the kernels, (loss, grad) through NumPy), checking which path each took."""
    loss, grad = _loss_and_grad(logits, labels, reduction, ignore_index)
    assert loss.creator.kernels is not None
    with monkeypatch.context() as patch:
        patch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
        numpy_loss, numpy_grad = _loss_and_grad(logits, labels, reduction, ignore_index)
    return (loss.data, grad), (numpy_loss.data, numpy_grad)


@needs_numba
def test_the_kernels_import():
    module = importlib.import_module("engine.kernels.cross_entropy_numba")
    assert module.labels_in_range(np.array([0, 3, 2]), 4)
    assert not module.labels_in_range(np.array([0, 4]), 4)
    assert not module.labels_in_range(np.array([-1, 0], dtype=np.int32), 4)


@needs_numba
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (1, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_kernels_match_the_numpy_path(dtype, rtol, shape, reduction, ignore_index, rng, monkeypatch):
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    (loss, grad), (numpy_loss, numpy_grad) = _both_paths(monkeypatch, logits, labels, reduction, ignore_index)
    assert loss.dtype == numpy_loss.dtype and grad.dtype == numpy_grad.dtype == dtype
    np.testing.assert_allclose(loss, numpy_loss, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grad, numpy_grad, rtol=rtol, atol=rtol)


@needs_numba
def test_the_op_runs_the_kernels_and_passes_a_float64_gradcheck(rng):
    logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    loss = F.cross_entropy(leaf(logits), labels)
    assert loss.creator.kernels is not None
    for reduction in ("mean", "sum"):
        assert check(lambda t: F.cross_entropy(t, labels, reduction=reduction), logits)


@needs_numba
def test_special_values_match_the_numpy_path(monkeypatch):
    big = np.float32(3e38)
    logits = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0],
                       [-np.inf, -np.inf, -np.inf], [big, -big, 0.0], [1e-30, 0.0, -1e-30]], dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    with np.errstate(invalid="ignore", over="ignore"):
        (loss, grad), (numpy_loss, numpy_grad) = _both_paths(monkeypatch, logits, labels, "none")
    np.testing.assert_allclose(loss, numpy_loss, rtol=1e-6)      # NaN where NumPy's path has NaN
    np.testing.assert_allclose(grad, numpy_grad, rtol=1e-6, atol=1e-7)


@needs_numba
def test_without_a_graph_the_kernels_give_the_graph_values(rng):
    logits = rng.standard_normal((40, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 40)
    graph = F.cross_entropy(leaf(logits), labels, reduction="none")
    with engine.no_grad():
        plain = F.cross_entropy(engine.Tensor(logits), labels, reduction="none")
    np.testing.assert_array_equal(plain.data, graph.data)


@pytest.mark.parametrize("labels", [np.array([0, 5]), np.array([-1, 0], dtype=np.int32),
                                    np.array([0, 9], dtype=np.uint8)])
@pytest.mark.parametrize("numba_off", [False, True])
def test_labels_out_of_range_give_one_line_errors_on_both_paths(labels, numba_off, monkeypatch):
    if numba_off:
        monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\) for 5 classes, got values in "
                                         rf"\[{labels.min()}, {labels.max()}\]"):
        F.cross_entropy(leaf(np.zeros((2, 5))), labels)


@needs_numba
def test_the_op_declines_the_kernels_where_they_do_not_apply(rng):
    labels = rng.integers(0, 4, 5)
    strided = leaf(rng.standard_normal((4, 5)).T)          # not C-contiguous
    assert F.cross_entropy(strided, labels).creator.kernels is None
    integers = engine.Tensor(rng.integers(-3, 3, (5, 4)))
    loss = F.cross_entropy(integers, labels, reduction="none")       # log-softmax promotes to float64
    expected = F.cross_entropy(engine.Tensor(integers.data.astype(np.float64)), labels, reduction="none")
    np.testing.assert_allclose(loss.data, expected.data, rtol=1e-12)
