"""Gradient checks and reference values for cross-entropy, MSE, dropout and embedding."""
import numpy as np
import pytest

import engine
import engine.ops as F
from tests.engine._helpers import leaf, check


def _np_cross_entropy(logits, labels, ignore_index=None):
    """Per-element -log softmax(logits)[label], 0 where the label is ignored."""
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    safe = np.where(labels == ignore_index, 0, labels) if ignore_index is not None else labels
    picked = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    return picked if ignore_index is None else np.where(labels == ignore_index, 0.0, picked)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (1, 2)], ids=str)
@pytest.mark.parametrize("ignore_index", [None, -100, 1])
def test_cross_entropy(reduction, shape, ignore_index, rng):
    logits = rng.standard_normal(shape) * 2
    labels = rng.integers(0, shape[-1], shape[:-1])
    if ignore_index is not None:
        labels.reshape(-1)[0] = ignore_index
    per = _np_cross_entropy(logits, labels, ignore_index)
    count = per.size if ignore_index is None else int((labels != ignore_index).sum())
    expected = {"none": per, "sum": per.sum(), "mean": per.sum() / max(count, 1)}[reduction]
    loss = F.cross_entropy(leaf(logits), labels, reduction=reduction, ignore_index=ignore_index)
    np.testing.assert_allclose(loss.data, expected, rtol=1e-12)
    assert check(lambda t: F.cross_entropy(t, labels, reduction=reduction, ignore_index=ignore_index), logits)


def test_cross_entropy_ignored_entries_get_no_gradient(rng):
    logits = leaf(rng.standard_normal((3, 4)))
    F.cross_entropy(logits, np.array([1, -1, 2]), ignore_index=-1).backward()
    np.testing.assert_array_equal(logits.grad[1], np.zeros(4))
    assert np.abs(logits.grad[0]).sum() > 0


@pytest.mark.parametrize("ignore_index", [None, 2])
def test_cross_entropy_without_a_graph_works_in_row_blocks_with_the_same_values(ignore_index, rng, monkeypatch):
    from engine.ops import loss as loss_module
    logits = rng.standard_normal((5, 7, 4)) * 3
    labels = rng.integers(0, 4, (5, 7))
    shapes = []
    whole_rows = loss_module._log_softmax_picked

    def recorded(x, labels, kernels):
        shapes.append(x.shape)
        return whole_rows(x, labels, kernels)
    monkeypatch.setattr(loss_module, "NO_GRAD_BLOCK_ELEMENTS", 9)     # 2 rows of 4 classes; 35 rows in all
    monkeypatch.setattr(loss_module, "_log_softmax_picked", recorded)
    for reduction in ("none", "sum", "mean"):
        recording = leaf(logits)
        graph = F.cross_entropy(recording, labels, reduction=reduction, ignore_index=ignore_index)
        assert shapes.pop() == (35, 4)
        with engine.no_grad():
            blocked = F.cross_entropy(leaf(logits), labels, reduction=reduction, ignore_index=ignore_index)
        assert shapes == [(2, 4)] * 17 + [(1, 4)]
        shapes.clear()
        np.testing.assert_array_equal(blocked.data, graph.data)
        graph.sum().backward()
        flat_labels = labels.reshape(-1)
        exp = np.exp(logits - logits.max(-1, keepdims=True)).reshape(-1, 4)
        softmax = exp / exp.sum(-1, keepdims=True)
        softmax[np.arange(35), flat_labels] -= 1
        if ignore_index is not None:
            softmax[flat_labels == ignore_index] = 0
        if reduction == "mean":
            softmax /= 35 if ignore_index is None else int((flat_labels != ignore_index).sum())
        np.testing.assert_allclose(recording.grad.reshape(-1, 4), softmax, rtol=1e-10, atol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    loss = F.cross_entropy(leaf([[1000.0, -1000.0]]), np.array([1]))
    np.testing.assert_allclose(loss.data, 2000.0)


def test_cross_entropy_of_integer_logits_is_a_float():
    # found by the fuzz tests: without a graph the picked log-probabilities took the logits' integer
    # dtype, so log(1/2) came back as 0
    loss = F.cross_entropy(engine.Tensor(np.array([[0, 0], [3, 1]], dtype=np.int64)), np.array([0, 1]), "none")
    want = -np.log(np.exp([0.0, 1.0]) / np.exp([[0.0, 0.0], [3.0, 1.0]]).sum(axis=1))
    assert loss.dtype.kind == "f"
    np.testing.assert_allclose(loss.data, want, rtol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda: F.cross_entropy(leaf(np.zeros((2, 3))), np.array([0, 3])), r"labels must lie in \[0, 3\)"),
    (lambda: F.cross_entropy(leaf(np.zeros((2, 3))), np.array([0.0, 1.0])), "integers"),
    (lambda: F.cross_entropy(leaf(np.zeros((2, 3))), np.array([0, 1, 2])), r"labels shape \(3,\)"),
    (lambda: F.cross_entropy(leaf(np.zeros((2, 3))), np.array([0, 1]), reduction="avg"), "reduction"),
])
def test_cross_entropy_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 1)], ids=str)
def test_mse(reduction, shape, rng):
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    sq = (pred - target) ** 2
    expected = {"none": sq, "sum": sq.sum(), "mean": sq.mean()}[reduction]
    np.testing.assert_allclose(F.mse_loss(leaf(pred), leaf(target), reduction).data, expected, rtol=1e-12)
    assert check(lambda p, t: F.mse_loss(p, t, reduction), pred, target)


def test_mse_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"mse_loss.*\(2,\).*\(3,\)"):
        F.mse_loss(leaf(np.ones(2)), leaf(np.ones(3)))


def _fixed_dropout(t, p, seed=3):
    engine.manual_seed(seed)  # the same mask on every call, so finite differences see one function
    return F.dropout(t, p, training=True)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout(p, rng):
    x = rng.standard_normal((4, 50))
    y = _fixed_dropout(leaf(x), p).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p))
    assert 0.3 < kept.mean() / (1 - p) < 1.7
    assert check(lambda t: _fixed_dropout(t, p), x[:2, :5])


def test_dropout_identity_in_eval_and_bad_p(rng):
    x = leaf(rng.standard_normal(5))
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.0)


def test_dropout_scaling_keeps_the_mean():
    engine.manual_seed(0)
    y = F.dropout(engine.Tensor(np.ones(200_000)), 0.3)
    assert abs(float(y.data.mean()) - 1.0) < 0.01


@pytest.mark.parametrize("index_shape", [(5,), (2, 3), ()], ids=str)
def test_embedding(index_shape, rng):
    weight = rng.standard_normal((4, 3))
    indices = rng.integers(0, 4, index_shape)
    np.testing.assert_array_equal(F.embedding(indices, leaf(weight)).data, weight[indices])
    assert check(lambda w: F.embedding(indices, w), weight)


def test_embedding_repeated_rows_sum():
    w = leaf(np.zeros((3, 2)))
    F.embedding(np.array([[2, 2], [0, 2]]), w).sum().backward()
    np.testing.assert_array_equal(w.grad, [[1, 1], [0, 0], [3, 3]])


def test_embedding_bad_input():
    w = leaf(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"embedding.*\[0, 3\)"):
        F.embedding(np.array([3]), w)
    with pytest.raises(TypeError, match="embedding.*integers"):
        F.embedding(np.array([0.0]), w)
