"""Tests of train.py's validation split in the run loop: log columns, metrics.json, --valid-size, --select."""
import json
import math
import signal

import numpy as np
import pytest

import train
from engine import io as engine_io
from layers import Linear
from tasks.base import SyntheticSequenceTask
from tests.test_train import TINY, diagonal_registered  # noqa: F401  (a fixture)
from tests.test_train_distill import tiny_mnist
from training.loop import Run
from training.selection import BEST_PREFIX, Selection

# no schedule: a run of N epochs is then the first N epochs of a longer one
STEADY = ["--lr-schedule", "none"]


def run(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return train.main([*TINY, *STEADY, "--out", str(out), *extra]), out


def read_metrics(out):
    return json.loads((out / "metrics.json").read_text())


def model_weights(path):
    arrays, meta = engine_io.load(str(path))
    return {k: v for k, v in arrays.items() if k.startswith("model/")}, arrays, meta


@pytest.fixture
def scripted(monkeypatch):
    """Scripts the headline metric train.py sees: script["valid"][k] (or script["test"][k]) replaces the
    metric of the evaluation made after the k-th epoch of the run (counted from 0 over both phases);
    later evaluations (the final report) are real. Records every run and every test-split evaluation."""
    script = {"valid": [], "test": [], "runs": [], "test_evaluations": 0}
    original_setup = Run.setup

    def setup(self):
        original_setup(self)
        script["runs"].append(self)
        task, real = self.task, self.task.evaluate

        def evaluate(model, batch_size=256, split="test"):
            result = real(model, batch_size, split)
            if split == "test":
                script["test_evaluations"] += 1
            k = len(self.history)
            if k < len(script[split]):
                result = dict(result, **{task.metric_name: script[split][k]})
            return result

        task.evaluate = evaluate

    monkeypatch.setattr(Run, "setup", setup)
    return script


def record_finalize(monkeypatch):
    """A list that receives a copy of the weights each run hands to the compressor's finalize step."""
    finalized = []
    real_finalize = Run.finalize

    def finalize(self, model):
        finalized.append({k: np.array(v) for k, v in model.state_dict().items()})
        return real_finalize(self, model)

    monkeypatch.setattr(Run, "finalize", finalize)
    return finalized


# ---- log.csv, metrics.json, the epoch line ---------------------------------------------------------
def test_log_and_metrics_hold_valid_and_test_per_epoch(tmp_path, capsys):
    code, out = run(tmp_path)
    assert code == 0
    header, *rows = (out / "log.csv").read_text().splitlines()
    assert header.startswith("phase,epoch,step,train_loss,extra_loss,test_loss,metric,valid_loss,valid_metric,lr,")
    assert len(rows) == 2
    metrics = read_metrics(out)
    assert set(metrics["valid"]) == set(metrics["test"]) and metrics["valid"] != metrics["test"]
    history = metrics["history"]
    assert [(r["phase"], r["epoch"]) for r in history] == [("train", 1), ("train", 2)]
    for row in history:
        assert math.isfinite(row["valid_metric"]) and math.isfinite(row["metric"])
        assert row["valid_loss"] == row["valid_metric"] and row["test_loss"] == row["metric"]   # mse = loss
    # the final model is the last epoch's: its evaluations are that epoch's logged ones
    assert metrics["valid"]["mse"] == history[-1]["valid_metric"]
    assert metrics["test"]["mse"] == history[-1]["metric"] == metrics["metric"]["value"]
    assert metrics["selection"] == {"rule": "last", "split": None, "phase": "train", "epoch": 2}
    epoch_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train epoch")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        assert "valid mse" in line and "test" not in line


def test_valid_size_zero_trains_on_everything(tmp_path, capsys):
    tiny_mnist(tmp_path / "mnist")      # 32 training images: by default the last 2 (a twelfth) are held out
    common = ["--task", "mnist", "--data-dir", str(tmp_path / "mnist"), "--model", "lenet300", "--epochs", "1",
              "--batch-size", "10", "--no-progress", "--log-every", "0"]
    assert train.main([*common, "--out", str(tmp_path / "held")]) == 0
    assert train.main([*common, "--valid-size", "0", "--out", str(tmp_path / "all")]) == 0
    held, everything = read_metrics(tmp_path / "held"), read_metrics(tmp_path / "all")
    assert held["task_config"]["valid_size"] == 2 and held["steps_per_epoch"] == 3
    assert everything["task_config"]["valid_size"] == 0 and everything["steps_per_epoch"] == 4
    assert set(held["valid"]) == set(held["test"])
    assert everything["valid"] is None
    assert everything["history"][0]["valid_metric"] is None
    assert "train,1,4," in (tmp_path / "all" / "log.csv").read_text()
    capsys.readouterr()
    code = train.main([*common, "--valid-size", "0", "--select", "best-valid", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--select best-valid" in err and "--valid-size 0" in err and "Traceback" not in err


@pytest.mark.parametrize("task", ["ptb", "text"])
def test_valid_size_is_refused_for_fixed_splits(tmp_path, capsys, task):
    code = train.main(["--task", task, "--data-dir", str(tmp_path), "--data-file", str(tmp_path / "t.txt"),
                       "--valid-size", "10", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"task {task!r} has a fixed validation split" in err and "adding, copy, mnist" in err
    assert "Traceback" not in err


# ---- --select best-valid ---------------------------------------------------------------------------
def test_best_valid_reports_the_best_epoch_and_restores_its_weights(tmp_path, scripted):
    scripted["valid"] = [0.5, 0.1, 0.3, 0.2]          # mse: lower is better, so epoch 2
    code, out = run(tmp_path, "--epochs", "4", "--select", "best-valid", "--quantize-bits", "8")
    assert code == 0
    metrics = read_metrics(out)
    selection = metrics["selection"]
    assert (selection["rule"], selection["split"], selection["phase"], selection["epoch"]) == (
        "best-valid", "valid", "train", 2)
    assert selection["valid_value"] == 0.1
    history = metrics["history"]
    assert [r["valid_metric"] for r in history] == [0.5, 0.1, 0.3, 0.2]
    # the final, real evaluations are those of epoch 2's weights
    assert metrics["test"]["mse"] == history[1]["metric"] != history[-1]["metric"]
    assert metrics["valid"]["mse"] == history[1]["valid_loss"]
    assert set(metrics["quantized"]["valid"]) == set(metrics["quantized"]["test"]) == set(metrics["test"])
    # ... and those weights are what a 2-epoch run ends with
    assert run(tmp_path, "--epochs", "2", name="two")[0] == 0
    best, arrays, _ = model_weights(out / "checkpoint.npz")
    two, _, _ = model_weights(tmp_path / "two" / "checkpoint.npz")
    assert best.keys() == two.keys()
    for key in best:
        np.testing.assert_array_equal(best[key], two[key], err_msg=key)
        np.testing.assert_array_equal(arrays[BEST_PREFIX + key[len("model/"):]], two[key], err_msg=key)


def test_choosing_never_reads_the_test_split(tmp_path, monkeypatch, scripted):
    scripted["valid"] = [0.5, 0.1, 0.3]
    scripted["test"] = [0.9, 0.8, 0.001]        # the test split would pick epoch 3
    choosing, offered = [], []
    real_batches = SyntheticSequenceTask.split_batches

    def split_batches(self, batch_size, split):
        if split == "test" and choosing:
            raise AssertionError("the test split was read while choosing an epoch")
        return real_batches(self, batch_size, split)

    def watched(method, log=None):
        def wrapper(self, *args, **kwargs):
            choosing.append(method.__name__)
            try:
                if log is not None:
                    log.append(args[2])         # offer(phase, epoch, value, model, compressor)
                return method(self, *args, **kwargs)
            finally:
                choosing.pop()
        return wrapper

    monkeypatch.setattr(SyntheticSequenceTask, "split_batches", split_batches)
    monkeypatch.setattr(Selection, "offer", watched(Selection.offer, offered))
    monkeypatch.setattr(Selection, "restore_best", watched(Selection.restore_best))
    code, out = run(tmp_path, "--epochs", "3", "--select", "best-valid")
    assert code == 0
    assert offered == [0.5, 0.1, 0.3]
    assert read_metrics(out)["selection"]["epoch"] == 2
    # best-valid reads the test split no more than a plain run: once per epoch (the log), once at the end
    assert scripted["test_evaluations"] == 3 + 1


def test_best_valid_with_finetuning_chooses_within_each_phase(tmp_path, monkeypatch, scripted,
                                                             diagonal_registered):  # noqa: F811
    scripted["valid"] = [0.3, 0.1, 0.2, 0.5, 0.4, 0.45]     # train epochs 1-3, finetune epochs 1-3
    finalized = record_finalize(monkeypatch)
    extra = ["--compress", "diagonal", "--epochs", "3", "--finetune-epochs", "3", "--select", "best-valid"]
    code, out = run(tmp_path, *extra)
    assert code == 0
    metrics = read_metrics(out)
    selection = metrics["selection"]
    assert (selection["phase"], selection["epoch"]) == ("finetune", 2)
    assert selection["phases"] == {"train": {"epoch": 2, "valid_value": 0.1},
                                   "finetune": {"epoch": 2, "valid_value": 0.4}}
    assert metrics["test"]["mse"] == metrics["history"][4]["metric"]
    # finalize was given train epoch 2's weights, not the last train epoch's
    assert run(tmp_path, "--compress", "diagonal", "--epochs", "2", name="two")[0] == 0
    two, _, _ = model_weights(tmp_path / "two" / "trained.npz")
    assert finalized[0].keys() == {k[len("model/"):] for k in two}
    for key, value in finalized[0].items():
        np.testing.assert_array_equal(value, two["model/" + key], err_msg=key)


def test_best_valid_survives_interrupt_and_resume(tmp_path, monkeypatch, scripted):
    scripted["valid"] = [0.3, 0.1, 0.2, 0.25]
    extra = ["--epochs", "4", "--select", "best-valid"]
    assert run(tmp_path, *extra, name="whole")[0] == 0

    real_step = Run.train_step

    def interrupting_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        if self.global_step == 7:              # step 1 of epoch 3 done (3 steps an epoch)
            self.guard.received = signal.SIGINT
        return result

    monkeypatch.setattr(Run, "train_step", interrupting_step)
    code, out = run(tmp_path, *extra, name="split")
    assert code == 130
    _, arrays, meta = model_weights(out / "checkpoint.npz")
    assert (meta["epoch"], meta["best"]["epoch"], meta["best"]["value"]) == (2, 2, 0.1)
    assert any(k.startswith(BEST_PREFIX) for k in arrays)
    monkeypatch.setattr(Run, "train_step", real_step)
    assert train.main(["--resume", str(out), "--no-progress"]) == 0
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(out)
    assert split["selection"] == whole["selection"] and split["selection"]["epoch"] == 2
    assert split["test"] == whole["test"] and split["valid"] == whole["valid"]
    a, _, _ = model_weights(tmp_path / "whole" / "checkpoint.npz")
    b, _, _ = model_weights(out / "checkpoint.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_best_valid_resumes_in_the_finetune_phase(tmp_path, monkeypatch, scripted,
                                                   diagonal_registered):  # noqa: F811
    scripted["valid"] = [0.1, 0.3, 0.5, 0.2, 0.4]         # train epoch 1, then finetune epoch 2
    extra = ["--compress", "diagonal", "--epochs", "2", "--finetune-epochs", "3", "--select", "best-valid"]
    finalized = record_finalize(monkeypatch)
    assert run(tmp_path, *extra, name="whole")[0] == 0
    real_step = Run.train_step

    def interrupting_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        if self.global_step == 10:             # step 1 of finetune epoch 2
            self.guard.received = signal.SIGINT
        return result

    monkeypatch.setattr(Run, "train_step", interrupting_step)
    code, out = run(tmp_path, *extra, name="split")
    assert code == 130
    monkeypatch.setattr(Run, "train_step", real_step)
    assert train.main(["--resume", str(out), "--no-progress"]) == 0
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(out)
    assert whole["selection"]["phases"] == {"train": {"epoch": 1, "valid_value": 0.1},
                                            "finetune": {"epoch": 2, "valid_value": 0.2}}
    assert split["selection"] == whole["selection"]
    assert split["test"] == whole["test"] == {**split["test"], "mse": whole["history"][3]["metric"]}
    a, _, _ = model_weights(tmp_path / "whole" / "checkpoint.npz")
    b, _, _ = model_weights(out / "checkpoint.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the resumed run rebuilt the finetuned model from train epoch 1's weights, as the whole run did
    assert len(finalized) == 3
    for key, value in finalized[0].items():
        np.testing.assert_array_equal(finalized[2][key], value, err_msg=key)


# ---- Selection on its own -------------------------------------------------------------------------
@pytest.mark.parametrize("higher, values, best", [
    (True, [0.90, 0.97, 0.95, 0.97], 2),            # accuracy: the highest; a tie keeps the earlier
    (False, [2.0, 1.5, float("nan"), 1.7], 2),      # perplexity: the lowest; NaN never wins
    (False, [float("nan"), float("inf")], None),    # nothing finite: nothing kept
])
def test_selection_direction_ties_and_non_finite(higher, values, best):
    model = Linear(2, 1)
    selection = Selection("best-valid", higher_is_better=higher)
    kept = {}
    for epoch, value in enumerate(values, start=1):
        model.weight.data = model.weight.data + 1.0
        if selection.offer("train", epoch, value, model, compressor=None):
            kept[epoch] = np.array(model.weight.data)
    assert selection.epoch == best
    model.weight.data = model.weight.data * 0
    assert selection.restore_best("train", model, compressor=None) == best
    if best is not None:
        np.testing.assert_array_equal(model.weight.data, kept[best])


def test_selection_phases_and_checkpoint_round_trip():
    model = Linear(2, 1)
    selection = Selection("best-valid", higher_is_better=True)
    selection.offer("train", 1, 0.5, model, None)
    selection.offer("finetune", 1, 0.2, model, None)          # a new phase starts afresh: 0.2 is kept
    assert (selection.phase, selection.epoch) == ("finetune", 1)
    assert selection.earlier == {"train": {"epoch": 1, "value": 0.5}}
    assert selection.restore_best("train", model, None) is None   # another phase's weights never load
    again = Selection("best-valid", higher_is_better=True)
    again.load(json.loads(json.dumps(selection.meta())), selection.arrays())
    assert again.report([], "accuracy") == selection.report([], "accuracy")
    assert again.weights.keys() == selection.weights.keys()
    last = Selection("last", higher_is_better=True)
    assert not last.offer("train", 1, 0.9, model, None) and last.meta() is None and last.arrays() == {}
    with pytest.raises(ValueError, match="--select"):
        Selection("best-test", higher_is_better=True)
