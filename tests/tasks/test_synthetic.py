"""Adding and copy-memory problems: shapes, markers, targets, baselines, metrics, determinism."""
import math

import numpy as np
import pytest

import engine
from tasks import get_task
from tasks.adding import TOLERANCE, adding_batch
from tasks.copy_memory import copy_batch

from .helpers import FixedOutput


# ---- adding -----------------------------------------------------------------
def test_adding_batch_structure():
    T = 11
    x, y = adding_batch(np.random.default_rng(3), 64, T)
    assert x.shape == (64, T, 2) and x.dtype == np.float32
    assert y.shape == (64, 1) and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :T // 2].sum(axis=1) == 1)      # one marker in each half
    assert np.all(markers[:, T // 2:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_epoch_length_and_determinism():
    task = get_task("adding", T=8, train_size_per_epoch=100)
    assert task.steps_per_epoch(32) == 4
    first = list(task.train_batches(32, np.random.default_rng(5)))
    again = list(task.train_batches(32, np.random.default_rng(5)))
    other = list(task.train_batches(32, np.random.default_rng(6)))
    assert len(first) == 4
    for (a, b), (c, d) in zip(first, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert not np.array_equal(first[0][0], other[0][0])


def test_adding_test_set_is_fixed_and_complete():
    a = get_task("adding", T=6, test_size=50, seed=7)
    b = get_task("adding", T=6, test_size=50, seed=7)
    batches_a = list(a.test_batches(16))
    assert [len(y) for _, y in batches_a] == [16, 16, 16, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches_a]),
                                  np.concatenate([x for x, _ in b.test_batches(50)]))
    c = get_task("adding", T=6, test_size=50, seed=8)
    assert not np.array_equal(a.test_set()[0], c.test_set()[0])


def test_adding_baseline_matches_simulation():
    task = get_task("adding", T=20)
    _, y = adding_batch(np.random.default_rng(0), 200_000, 20)
    err = 1.0 - y[:, 0].astype(np.float64)
    base = task.trivial_baseline()
    # standard error of the mean of err^2 is about 0.15/sqrt(2e5) ~ 3.4e-4
    assert abs(np.mean(err ** 2) - base["mse"]) < 2e-3
    assert abs(np.mean(np.abs(err) < TOLERANCE) - base["accuracy"]) < 3e-3
    assert abs(base["mse"] - 1 / 6) < 1e-12


def test_adding_metrics_on_hand_made_outputs():
    task = get_task("adding", T=4)
    targets = np.array([[1.0], [0.5], [1.5], [0.2]], dtype=np.float32)
    outputs = engine.Tensor(targets.astype(np.float64) + np.array([[0.0], [0.1], [-0.02], [0.5]]))
    m = task.metrics(outputs, targets)
    assert m["count"] == 4 and m["correct"] == 2
    assert m["squared_error"] == pytest.approx(0.01 + 0.0004 + 0.25, rel=1e-5)
    s = task.summarize(m)
    assert s["mse"] == pytest.approx((0.01 + 0.0004 + 0.25) / 4, rel=1e-5) and s["accuracy"] == 0.5


def test_adding_loss_is_mse_with_gradient():
    task = get_task("adding", T=4)
    targets = np.array([[1.0], [0.0]], dtype=np.float32)
    out = engine.Tensor(np.array([[0.5], [1.0]]), requires_grad=True)
    loss = task.loss(out, targets)
    assert float(loss.data) == pytest.approx((0.25 + 1.0) / 2)
    loss.backward()
    np.testing.assert_allclose(out.grad, [[-0.5], [1.0]])
    with pytest.raises(ValueError, match=r"adding task.*\(2, 1\).*\(2,\)"):
        task.loss(engine.Tensor(np.zeros(2)), targets)


def test_adding_evaluate_constant_predictor():
    task = get_task("adding", T=10, test_size=300)
    model = FixedOutput(lambda x: np.ones((len(x), 1)))
    model.train()
    result = task.evaluate(model, batch_size=128)
    y = task.test_set()[1].astype(np.float64)
    assert result["mse"] == pytest.approx(np.mean((y - 1) ** 2), rel=1e-6)
    assert result["loss"] == result["mse"]
    assert model.seen_training == [False, False, False] and model.training   # eval, then restored


@pytest.mark.parametrize("options, message", [
    ({"T": 1}, "T must be >= 2"), ({"T": 0}, "T must be >= 2"), ({"test_size": 0}, "test_size"),
    ({"train_size_per_epoch": -1}, "train_size_per_epoch"), ({"valid_size": -1}, "valid_size must be >= 0")])
def test_adding_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        get_task("adding", **options)


def test_bad_batch_size_and_split():
    task = get_task("adding", T=4)
    with pytest.raises(ValueError, match="adding task: batch_size must be >= 1, got 0"):
        task.steps_per_epoch(0)
    with pytest.raises(ValueError, match="unknown split 'train'"):
        list(task.split_batches(4, "train"))
    no_valid = get_task("adding", T=4, valid_size=0)
    assert no_valid.splits == ("test",)
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        no_valid.evaluate(FixedOutput(lambda x: np.ones((len(x), 1))), split="valid")
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        task.steps_per_epoch(2.5)


# ---- copy -------------------------------------------------------------------
def test_copy_batch_structure():
    T = 7
    x, y = copy_batch(np.random.default_rng(1), 16, T)
    assert x.shape == (16, T + 20, 10) and x.dtype == np.float32
    assert y.shape == (16, T + 20) and y.dtype == np.int64
    np.testing.assert_array_equal(x.sum(axis=2), 1)                       # one-hot
    codes = x.argmax(axis=2)
    symbols = codes[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    np.testing.assert_array_equal(codes[:, 10:10 + T - 1], 0)
    np.testing.assert_array_equal(codes[:, 10 + T - 1], 9)                # the marker
    np.testing.assert_array_equal(codes[:, -10:], 0)
    np.testing.assert_array_equal(y[:, :-10], 0)
    np.testing.assert_array_equal(y[:, -10:], symbols)


def test_copy_baseline_matches_ideal_chance_predictor():
    T = 5
    task = get_task("copy", T=T, test_size=64)
    x, y = task.test_set()
    logits = np.full(y.shape + (10,), -1e9)
    logits[:, :-10, 0] = 0.0               # blanks predicted with certainty
    logits[:, -10:, 1:9] = 0.0             # uniform over the 8 symbols at recall time
    base = task.trivial_baseline()
    model = FixedOutput(lambda inp: logits[:len(inp)])
    result = task.evaluate(model, batch_size=64)
    assert result["cross_entropy"] == pytest.approx(base["cross_entropy"], rel=1e-9)
    assert base["cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20))
    # random guesses among 8 symbols recall about 1/8 of them
    guesses = np.random.default_rng(0).integers(1, 9, size=(20000, 10))
    _, y_big = copy_batch(np.random.default_rng(1), 20000, T)
    assert abs(np.mean(guesses == y_big[:, -10:]) - base["accuracy"]) < 0.01


def test_copy_metrics_on_hand_made_outputs():
    task = get_task("copy", T=1)
    targets = np.zeros((2, 21), dtype=np.int64)
    targets[:, -10:] = np.arange(1, 11) % 8 + 1
    logits = np.zeros((2, 21, 10))
    logits[np.arange(2)[:, None], np.arange(21)[None], targets] = 5.0   # every step right...
    logits[0, -1] = 0.0
    logits[0, -1, 9] = 5.0                                             # ...except one recall step
    m = task.metrics(engine.Tensor(logits), targets)
    assert m["correct"] == 19 and m["recall_count"] == 20 and m["ce_count"] == 42
    p_right = np.exp(5) / (np.exp(5) + 9)
    expected = -41 * np.log(p_right) - np.log(1 / (np.exp(5) + 9))
    assert m["ce_sum"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match=r"copy task: model output must have shape \(2, 21, 10\)"):
        task.metrics(engine.Tensor(logits[..., :9]), targets)


def test_copy_determinism_and_errors():
    task = get_task("copy", T=3, train_size_per_epoch=10)
    a = list(task.train_batches(4, np.random.default_rng(2)))
    b = list(task.train_batches(4, np.random.default_rng(2)))
    assert len(a) == task.steps_per_epoch(4) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
    assert task.model_kwargs() == {"n_in": 10, "n_out": 10, "output": "all"}
    with pytest.raises(ValueError, match="copy task: T must be >= 1, got 0"):
        get_task("copy", T=0)
