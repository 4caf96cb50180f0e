"""bench/speed_runs.py: a target holds only when every run meets it; unreadable runs exit 2."""
import json

import pytest

from bench import speed_runs


def _run(folder, label, lenet5_ratio, load=0.5, machine="cpu A"):
    rows = [{"what": "LeNet-5 train step, batch 128, SGD", "ours": "engine", "ratio": lenet5_ratio},
            {"what": "FWT + IFWT, batch 128, n=512, L=6, J=8, zero mode", "ours": "kernel (numba)", "ratio": 0.4}]
    (folder / f"speed-{label}.json").write_text(json.dumps({"meta": {"load_1min": load, "machine": machine}, "rows": rows}))


def _line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_a_target_holds_only_in_every_run(tmp_path):
    _run(tmp_path, "a", 0.75)
    _run(tmp_path, "b", 0.85)
    runs = [speed_runs.load_run(str(tmp_path), label) for label in ("a", "b")]
    text = speed_runs.table(runs, ["a", "b"])
    assert _line(text, "| LeNet-5 train step") == "| LeNet-5 train step, batch 128, SGD | 0.75 | 0.85 | <= 0.8 | NO |"
    assert _line(text, "| FWT + IFWT").endswith("| 0.40 | 0.40 | <= 0.5 | yes |")
    assert _line(text, "| LSTM train step").endswith("| - | - | <= 1 | NO |")     # not measured: not met
    assert "a 0.50, b 0.50" in text
    assert _line(text, "Machine") == "Machine: cpu A."
    _run(tmp_path, "c", 0.75, machine="cpu A; NumPy BLAS: openblas")   # the same CPU, its BLAS named
    text = speed_runs.table([speed_runs.load_run(str(tmp_path), label) for label in "ac"], ["a", "c"])
    assert _line(text, "Machine") == "Machine: cpu A; NumPy BLAS: openblas."


def test_runs_from_different_machines_are_named_each(tmp_path):
    _run(tmp_path, "a", 0.75)
    _run(tmp_path, "b", 0.75, machine="cpu B; NumPy BLAS: x")
    runs = [speed_runs.load_run(str(tmp_path), label) for label in ("a", "b")]
    text = speed_runs.table(runs, ["a", "b"])
    assert "not consecutive runs of one: a: cpu A; b: cpu B; NumPy BLAS: x." in text
    assert not any(line.startswith("Machine") for line in text.splitlines())


def test_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        speed_runs.main(["nothing", "--results", str(tmp_path)])
    assert stop.value.code == 2
    assert "speed-nothing.json" in capsys.readouterr().err
