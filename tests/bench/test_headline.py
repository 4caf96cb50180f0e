"""bench/headline.py: candidates compared on validation only, the chosen one run over seeds, one JSON."""
import json
import os

import pytest

from bench import headline, seeds
from tests.bench.scripted import scripted_metrics

# candidate flags -> (valid, test): test would pick candidate 0, validation picks candidate 1
SCRIPT = {"--lr 1e-3": (0.90, 0.99), "--lr 1e-2": (0.95, 0.91)}


def _fake_train(calls):
    def run_train(command, out, threads, seed):
        flags = " ".join(command[-2:])
        valid, test = SCRIPT[flags]
        calls.append((flags, seed))
        os.makedirs(out, exist_ok=True)
        metrics = scripted_metrics(test + seed / 100, valid)
        metrics["command"] = "python train.py " + " ".join(seeds.train_arguments(command, out, threads, seed))
        with open(os.path.join(out, "metrics.json"), "w") as fh:
            json.dump(metrics, fh)
        return 0
    return run_train


def test_choice_on_validation_then_seeds(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(headline, "run_train", _fake_train(calls))
    status = headline.main(["--name", "row", "--root", str(tmp_path / "runs"), "--results", str(tmp_path),
                            "--candidate", "--lr 1e-3", "--candidate", "--lr 1e-2", "--", "--task", "mnist"])
    assert status == 0
    result = json.loads((tmp_path / "row.json").read_text())
    assert result["chosen"] == 1 and [c["valid"] for c in result["candidates"]] == [0.90, 0.95]
    # the candidates ran with seed 0, then only the chosen one with seeds 1 and 2
    assert calls == [("--lr 1e-3", 0), ("--lr 1e-2", 0), ("--lr 1e-2", 1), ("--lr 1e-2", 2)]
    assert result["test"]["n"] == 3 and abs(result["test"]["mean"] - 0.92) < 1e-9
    assert "--lr 1e-2" in result["command"]


def test_finished_runs_are_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(headline, "run_train", _fake_train(calls))
    argv = ["--name", "row", "--root", str(tmp_path / "runs"), "--results", str(tmp_path),
            "--candidate", "--lr 1e-3", "--candidate", "--lr 1e-2", "--", "--task", "mnist"]
    headline.main(argv)
    calls.clear()
    assert headline.main(argv) == 0 and calls == []


def test_a_folder_left_by_other_flags_is_run_again(tmp_path, monkeypatch):
    """Candidates changed between two calls: candidate-0 and the chosen seeds' folders hold runs of other
    flags, so they run again instead of being read as this setting's results."""
    calls = []
    monkeypatch.setattr(headline, "run_train", _fake_train(calls))
    root, results = str(tmp_path / "runs"), str(tmp_path)
    headline.main(["--name", "row", "--root", root, "--results", results, "--candidate", "--lr 1e-3",
                   "--", "--task", "mnist"])
    calls.clear()
    assert headline.main(["--name", "row", "--root", root, "--results", results, "--candidate", "--lr 1e-2",
                          "--", "--task", "mnist"]) == 0
    assert calls == [("--lr 1e-2", 0), ("--lr 1e-2", 1), ("--lr 1e-2", 2)]
    assert json.loads((tmp_path / "row.json").read_text())["test"]["mean"] == pytest.approx(0.92)
