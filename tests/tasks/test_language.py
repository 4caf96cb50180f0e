"""PTB (word and char) and text-file language modelling: vocabulary, <eos>, windows, metrics."""
import math

import numpy as np
import pytest

import engine
from tasks import MissingDataError, get_task
from tasks.language import batchify

from ..conftest import SHARED_DATA
from .helpers import FixedOutput

TRAIN = [" the cat sat on the mat ", " the dog sat ", " a <unk> ran on the mat "] * 4
VALID = [" the cat ran ", " a matte sat "]          # "matte" is unseen: becomes <unk>
TEST = [" the dog ran on a mat "]


@pytest.fixture
def ptb_dir(tmp_path):
    for split, lines in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        (tmp_path / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_word_vocabulary_and_streams(ptb_dir):
    task = get_task("ptb", data_dir=ptb_dir, bptt=3)
    words = [w for line in TRAIN for w in line.split()]
    assert set(task.itos) == set(words) | {"<eos>"}
    assert len(task.streams["train"]) == len(words) + len(TRAIN)
    expected = []
    for line in TRAIN:
        expected += line.split() + ["<eos>"]
    assert task.decode(task.streams["train"]) == expected
    assert task.decode(task.streams["valid"]) == ["the", "cat", "ran", "<eos>", "a", "<unk>", "sat", "<eos>"]
    assert task.model_kwargs() == {"vocab": len(task.itos)}
    assert task.metric_name == "perplexity" and task.name == "ptb" and not task.higher_is_better


def test_char_level_tokens(ptb_dir):
    task = get_task("ptb_char", data_dir=ptb_dir, bptt=5)
    assert task.name == "ptb_char" and task.metric_name == "bpc"
    assert "".join(t if t != "<eos>" else "|" for t in task.decode(task.streams["test"])) == \
        "the_dog_ran_on_a_mat|"
    with pytest.raises(ValueError, match="token 'z' is not in the training vocabulary"):
        (ptb_dir / "ptb.test.txt").write_text(" zebra \n")
        get_task("ptb", data_dir=ptb_dir, level="char")


def test_training_windows_are_contiguous_and_shifted(ptb_dir):
    task = get_task("ptb", data_dir=ptb_dir, bptt=3)
    B = 4
    rows = task.rows("train", B)
    np.testing.assert_array_equal(rows, batchify(task.streams["train"], B))
    assert rows.shape == (B, len(task.streams["train"]) // B)
    starts = set()
    for seed in range(20):
        batches = list(task.train_batches(B, np.random.default_rng(seed)))
        assert len(batches) == task.steps_per_epoch(B) == (rows.shape[1] - 3) // 3
        for x, y in batches:
            assert x.shape == y.shape == (B, 3) and x.dtype == np.int64
            np.testing.assert_array_equal(x[:, 1:], y[:, :-1])          # targets shifted by one
        for (x0, y0), (x1, _) in zip(batches, batches[1:]):
            np.testing.assert_array_equal(x1[:, 0], y0[:, -1])          # windows follow each other
        first = batches[0][0]
        offset = [s for s in range(rows.shape[1] - 2) if np.array_equal(rows[:, s:s + 3], first)]
        starts.add(offset[0])
        again = list(task.train_batches(B, np.random.default_rng(seed)))
        np.testing.assert_array_equal(again[0][0], first)                # same rng, same epoch
    assert len(starts) > 1 and all(0 <= s < 3 for s in starts)            # random start offsets


def test_evaluation_scores_every_token_once(ptb_dir):
    task = get_task("ptb", data_dir=ptb_dir, bptt=4)
    rows = task.rows("valid", 2)
    batches = list(task.split_batches(2, "valid"))
    inputs = np.concatenate([x for x, _ in batches], axis=1)
    targets = np.concatenate([y for _, y in batches], axis=1)
    np.testing.assert_array_equal(inputs, rows[:, :-1])
    np.testing.assert_array_equal(targets, rows[:, 1:])


def test_metrics_uniform_logits(ptb_dir):
    for name, metric, expected in (("ptb", "perplexity", lambda v: v), ("ptb_char", "bpc", math.log2)):
        task = get_task(name, data_dir=ptb_dir, bptt=4)
        V = task.vocab_size
        model = FixedOutput(lambda x: np.zeros(x.shape + (V,)))
        result = task.evaluate(model, batch_size=2, split="test")
        assert result[metric] == pytest.approx(expected(V), rel=1e-9)
        assert result["loss"] == pytest.approx(math.log(V), rel=1e-9)


def test_loss_and_hand_made_metrics(ptb_dir):
    task = get_task("ptb", data_dir=ptb_dir, bptt=2)
    V = task.vocab_size
    targets = np.array([[0, 1]])
    logits = np.zeros((1, 2, V))
    logits[0, 0, 0] = math.log(3 * (V - 1))      # p(target) = 3/4 at the first step
    out = engine.Tensor(logits, requires_grad=True)
    loss = task.loss(out, targets)
    assert float(loss.data) == pytest.approx((-math.log(0.75) + math.log(V)) / 2)
    loss.backward()
    assert out.grad.shape == logits.shape
    summary = task.summarize(task.metrics(out, targets))
    assert summary["perplexity"] == pytest.approx(math.exp(float(loss.data)))
    with pytest.raises(ValueError, match=r"ptb task: model output must have shape \(1, 2, \d+\)"):
        task.loss(engine.Tensor(np.zeros((1, 2, 3))), targets)


def test_unigram_baseline(ptb_dir):
    task = get_task("ptb", data_dir=ptb_dir)
    counts = np.bincount(task.streams["train"], minlength=task.vocab_size) + 1.0
    p = counts / counts.sum()
    expected = math.exp(-np.mean(np.log(p[task.streams["test"]])))
    assert task.trivial_baseline()["perplexity"] == pytest.approx(expected)


def test_ptb_errors(ptb_dir, tmp_path_factory):
    with pytest.raises(ValueError, match="unknown level 'byte'"):
        get_task("ptb", data_dir=ptb_dir, level="byte")
    with pytest.raises(ValueError, match="bptt must be >= 1, got 0"):
        get_task("ptb", data_dir=ptb_dir, bptt=0)
    task = get_task("ptb", data_dir=ptb_dir, bptt=30)
    with pytest.raises(ValueError, match="too short for bptt 30"):
        task.steps_per_epoch(4)
    with pytest.raises(ValueError, match="too short for batch_size 100"):
        list(task.split_batches(100, "test"))
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(MissingDataError) as info:
        get_task("ptb", data_dir=empty)
    looked, missing, fix = str(info.value).splitlines()      # three lines: where, what, how
    assert str(empty) in looked and missing == "missing: ptb.train.txt, ptb.valid.txt, ptb.test.txt"
    assert "--data-dir" in fix


def test_text_task(tmp_path):
    path = tmp_path / "book.txt"
    text = "héllo wörld, " * 20
    path.write_text(text, encoding="utf-8")
    task = get_task("text", data_file=path, bptt=5)
    assert task.itos == sorted(set(text)) and task.metric_name == "bpc"
    assert [len(task.streams[s]) for s in ("train", "valid", "test")] == [234, 13, 13]   # 90/5/5 of 260
    parts = [task.streams[s] for s in ("train", "valid", "test")]
    assert "".join(task.decode(np.concatenate(parts))) == text                    # in order, no overlap
    x, y = next(task.train_batches(2, np.random.default_rng(0)))
    assert x.shape == (2, 5)
    assert task.evaluate(FixedOutput(lambda x: np.zeros(x.shape + (task.vocab_size,))), 2)["bpc"] == \
        pytest.approx(math.log2(task.vocab_size))


def test_text_errors(tmp_path):
    with pytest.raises(ValueError, match="data_file is required"):
        get_task("text")
    with pytest.raises(MissingDataError, match="nope.txt does not exist"):
        get_task("text", data_file=tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty or too short"):
        get_task("text", data_file=tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        get_task("text", data_file=tmp_path / "bin.txt")


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown task 'mnits'; valid tasks: adding, copy, mnist"):
        get_task("mnits")
    with pytest.raises(ValueError, match="does not take option.* bptt; it accepts: T,"):
        get_task("adding", bptt=3)
    assert get_task("adding", T=5, bptt=None).T == 5        # None options are left at defaults


@pytest.mark.data
@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason=f"real PTB not found in {SHARED_DATA}")
def test_real_ptb():
    task = get_task("ptb", data_dir=SHARED_DATA / "ptb")
    assert {k: len(v) for k, v in task.streams.items()} == {"train": 929589, "valid": 73760, "test": 82430}
    assert task.vocab_size == 10000 and "<eos>" in task.itos and "<unk>" in task.itos
    assert task.trivial_baseline()["perplexity"] < 10000
