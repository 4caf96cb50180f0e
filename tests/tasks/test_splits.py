"""Validation splits of every task: disjoint from train and test, deterministic, reached by evaluate."""
import numpy as np
import pytest

from tasks import get_task
from tasks.base import SyntheticSequenceTask

from .helpers import FixedOutput
from .test_language import TEST, TRAIN, VALID
from .test_mnist import N_TRAIN, fixture_arrays, write_fixture


def rows_of(task):
    return {split: set(rows) for split, rows in task.split_rows.items()}


def assert_disjoint(parts):
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not parts[a] & parts[b], f"{a} and {b} share items"


# ---- mnist ------------------------------------------------------------------
@pytest.mark.parametrize("options, n_valid", [({}, N_TRAIN // 12), ({"valid_size": 5}, 5),
                                              ({"valid_size": 5, "subset": 7}, 5)])
def test_mnist_valid_is_the_end_of_the_training_file(tmp_path, options, n_valid):
    arrays = fixture_arrays()
    folder = write_fixture(tmp_path, arrays, False)
    task = get_task("mnist", data_dir=folder, **options)
    rows = rows_of(task)
    assert_disjoint(rows)
    assert rows["valid"] == set(range(N_TRAIN - n_valid, N_TRAIN)) and task.valid_size == n_valid
    assert rows["train"] == set(range(options.get("subset", N_TRAIN - n_valid)))
    for split in ("train", "valid"):
        index = list(task.split_rows[split])
        np.testing.assert_array_equal(task.data[split][0], arrays["train_images"][index])
        np.testing.assert_array_equal(task.data[split][1], arrays["train_labels"][index])
    np.testing.assert_array_equal(task.data["test"][1], arrays["test_labels"])
    again = get_task("mnist", data_dir=folder, **options)
    assert again.split_rows == task.split_rows
    np.testing.assert_array_equal(again.data["valid"][0], task.data["valid"][0])


def test_mnist_valid_size_zero_trains_on_everything(tmp_path):
    task = get_task("mnist", data_dir=write_fixture(tmp_path, fixture_arrays(), False), valid_size=0)
    assert "valid" not in task.splits and len(task.data["train"][1]) == N_TRAIN
    assert task.config()["valid_size"] == 0
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        list(task.split_batches(4, "valid"))
    with pytest.raises(ValueError, match=f"valid_size must be <= {N_TRAIN - 1}"):
        get_task("mnist", data_dir=tmp_path, valid_size=N_TRAIN)


def test_mnist_evaluate_reads_the_valid_images(tmp_path):
    arrays = fixture_arrays()
    task = get_task("mnist", data_dir=write_fixture(tmp_path, arrays, False), valid_size=6)
    valid_labels = arrays["train_labels"][-6:].astype(np.int64)
    knows_valid = FixedOutput(lambda x: np.eye(10)[valid_labels[:len(x)]])
    assert task.evaluate(knows_valid, batch_size=6, split="valid")["accuracy"] == 1.0
    batches = list(task.split_batches(4, "valid"))
    assert [len(y) for _, y in batches] == [4, 2]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), valid_labels)


# ---- ptb and text -----------------------------------------------------------
def test_ptb_valid_is_the_valid_file(tmp_path):
    for split, lines in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        (tmp_path / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = get_task("ptb", data_dir=tmp_path, bptt=3)
    assert task.splits == ("train", "valid", "test")
    expected = []
    for line in VALID:
        expected += [w if w in task.itos else "<unk>" for w in line.split()] + ["<eos>"]
    assert task.decode(task.streams["valid"]) == expected
    again = get_task("ptb", data_dir=tmp_path, bptt=3)
    for split in task.splits:
        np.testing.assert_array_equal(again.streams[split], task.streams[split])
    uniform = FixedOutput(lambda x: np.zeros(x.shape + (task.vocab_size,)))
    assert task.evaluate(uniform, batch_size=2, split="valid")["perplexity"] == \
        pytest.approx(task.vocab_size, rel=1e-9)


@pytest.mark.parametrize("length", [40, 260, 1001])
def test_text_split_is_90_5_5_in_order(tmp_path, length):
    text = ("abcdefghij" * 101)[:length]
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    task = get_task("text", data_file=path, bptt=2)
    rows = rows_of(task)
    assert_disjoint(rows)
    assert set().union(*rows.values()) == set(range(length))
    train, valid, test = (task.split_rows[s] for s in ("train", "valid", "test"))
    assert train.stop == valid.start and valid.stop == test.start             # in order
    assert len(train) == length * 9 // 10 and len(valid) >= 2 and len(test) >= 2
    assert abs(len(valid) - length / 20) < 1 and abs(len(test) - length / 20) < 2
    for split, r in task.split_rows.items():
        assert "".join(task.decode(task.streams[split])) == text[r.start:r.stop]
    assert get_task("text", data_file=path, bptt=2).split_rows == task.split_rows


# ---- adding and copy --------------------------------------------------------
@pytest.mark.parametrize("name", ["adding", "copy"])
def test_synthetic_valid_set_is_fixed_and_apart_from_test(name):
    task = get_task(name, T=6, test_size=40, valid_size=30, seed=3)
    assert task.splits == ("valid", "test")
    valid_x, valid_y = task.valid_set()
    assert len(valid_x) == len(valid_y) == 30
    test_rows = {row.tobytes() for row in task.test_set()[0]}
    assert not any(row.tobytes() in test_rows for row in valid_x)
    again = get_task(name, T=6, test_size=40, valid_size=30, seed=3)
    np.testing.assert_array_equal(again.valid_set()[0], valid_x)
    # its own seed: the test size does not move it, another task seed does
    bigger_test = get_task(name, T=6, test_size=80, valid_size=30, seed=3)
    np.testing.assert_array_equal(bigger_test.valid_set()[0], valid_x)
    assert not np.array_equal(get_task(name, T=6, test_size=40, valid_size=30, seed=4).valid_set()[0],
                              valid_x)
    batches = list(task.split_batches(16, "valid"))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), valid_x)


def test_adding_evaluate_on_valid_uses_the_valid_set():
    task = get_task("adding", T=5, test_size=20, valid_size=25)
    result = task.evaluate(FixedOutput(lambda x: np.ones((len(x), 1))), batch_size=8, split="valid")
    y = task.valid_set()[1].astype(np.float64)
    assert result["mse"] == pytest.approx(np.mean((y - 1) ** 2), rel=1e-6)


class TinySpace(SyntheticSequenceTask):
    """Sequences of two bits: only four distinct inputs, so a valid draw often repeats a test one."""

    name = "tiny"

    def make_batch(self, rng, batch_size, T):
        x = rng.integers(0, 2, size=(batch_size, 2)).astype(np.float32)
        return x, x.sum(axis=1, keepdims=True)


def test_valid_draws_that_repeat_a_test_sequence_are_replaced():
    task = TinySpace(T=2, test_size=2, valid_size=50, seed=0)
    test_rows = {row.tobytes() for row in task.test_set()[0]}
    valid_x, valid_y = task.valid_set()
    assert len(valid_x) == 50 and len(test_rows) <= 2
    assert not any(row.tobytes() in test_rows for row in valid_x)
    np.testing.assert_array_equal(valid_y[:, 0], valid_x.sum(axis=1))
