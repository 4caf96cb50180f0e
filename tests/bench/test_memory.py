"""bench/memory.py: the summary and its ratios, bad input, and quick runs of ours (a child) and of the PyTorch side."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import memory
from tasks import mnist
from tasks.idx import write_idx
from tests.tasks.test_language import TEST, TRAIN, VALID


def _entry(model, framework, peak, baseline):
    return {"model": model, "framework": framework, "peak_mib": peak, "baseline_mib": baseline, "seconds": 1.0}


META = {"machine": "m", "load_before": 0.5, "load_after": 0.7, "threads": 1, "python": "3", "numpy": "n",
        "numba": "b", "torch": "t", "date": "d", "command": "c", "labels": {}}


def test_summary_ratios_of_peaks_and_of_what_lies_above_the_import_baseline():
    results = [_entry("lenet5", "ours", 300.0, 200.0), _entry("lenet5", "torch", 400.0, 350.0),
               _entry("ptb_lstm", "ours", 900.0, 200.0), _entry("ptb_lstm", "torch", 600.0, 350.0)]
    lenet, ptb = memory.summarise(results, ["lenet5", "ptb_lstm"])
    assert lenet["ours"]["above_mib"] == 100.0 and lenet["torch"]["above_mib"] == 50.0
    assert lenet["peak_ratio"] == pytest.approx(0.75) and lenet["above_ratio"] == pytest.approx(2.0)
    assert lenet["meets_target"] is True and ptb["meets_target"] is False
    text = memory.to_markdown([lenet, ptb], META)
    assert "| lenet5 | 300 | 400 | 0.75x | 100 | 50 | 2.00x | 200 | 350 | yes |" in text
    assert text.splitlines()[-1].endswith("| no |")


def test_a_failed_side_is_reported_not_compared():
    results = [_entry("lenet5", "ours", 300.0, 200.0),
               {"model": "lenet5", "framework": "torch", "error": "exited 1: ImportError"}]
    (row,) = memory.summarise(results, ["lenet5"])
    assert row["peak_ratio"] is None and row["meets_target"] is None
    assert "| lenet5 | 300 | exited 1: ImportError | missing |" in memory.to_markdown([row], META)


@pytest.mark.parametrize("argv, named", [(["--models", "vgg"], "'vgg'"), (["--frameworks", "jax"], "'jax'"),
                                         (["--data-root", "/nonexistent-folder"], "/nonexistent-folder")])
def test_bad_input_is_one_line_and_exit_2(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        memory.main(argv)
    error = capsys.readouterr().err
    assert stop.value.code == 2 and named in error and len(error.strip().splitlines()) == 1


@pytest.fixture
def data_root(tmp_path):
    """A small MNIST (400 training, 20 test images) and a tiny PTB, laid out as --data-root expects."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    arrays = {"train_images": rng.integers(0, 256, (400, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(400) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(20) % 10).astype(np.uint8)}
    for key, stem in mnist.FILES.items():
        write_idx(folder / (stem + ".gz"), arrays[key], compress=True)
    ptb = tmp_path / "ptb"
    ptb.mkdir()
    for split, lines in (("train", TRAIN * 40), ("valid", VALID), ("test", TEST)):
        (ptb / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_quick_run_of_ours_measures_a_positive_peak_above_its_baseline(data_root, tmp_path):
    out = tmp_path / "out"
    # its own process: a child's figure includes its parent's size at exec, and pytest's is large
    done = subprocess.run([sys.executable, memory.__file__, "--quick", "--models", "lenet5", "--frameworks", "ours",
                           "--data-root", str(data_root), "--out", str(out)], capture_output=True, text=True,
                          env=dict(os.environ, COMPACTNET_DISABLE_NUMBA="1"))     # no kernel compilation
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "memory.json").read_text())
    (run,) = saved["runs"]
    assert run["peak_mib"] > run["baseline_mib"] > 0, run
    assert saved["summary"][0]["torch"] == {"error": "not measured"}
    assert "--quick" in saved["meta"]["command"] and "| LeNet-5, MNIST" in (out / "memory.md").read_text()


def test_a_child_no_larger_than_its_parent_is_not_measurable(tmp_path):
    outcome = memory.run_child([sys.executable, "-c", "pass"], dict(os.environ), 60, tmp_path / "log")
    assert outcome["error"].startswith("not measurable"), outcome


@pytest.mark.parametrize("model", ["lenet5", "ptb_lstm"])
def test_the_pytorch_side_trains_and_evaluates_quickly(model, data_root, capsys):
    pytest.importorskip("torch", reason="the PyTorch side of bench/memory.py needs torch")
    from bench import memory_torch
    folder = str(data_root / memory.DATA[model])
    subset = ["--subset", "256", "--valid-size", "16"] if model == "lenet5" else []
    assert memory_torch.main(["--model", model, "--data-dir", folder, "--steps", "2", "--eval-batch-size", "2",
                              *subset]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["steps"] == 2 and set(printed["final"]) == {"valid", "test"}
    assert all(np.isfinite(v) for split in printed["final"].values() for v in split.values())
