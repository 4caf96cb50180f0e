"""bench/summary_table.py: rows read from results/*.json, targets judged on the test mean of the chosen setting."""
import json

from bench import summary_table


def _write(folder, name, test_mean, seeds=3, **figures):
    summary = {"seeds": list(range(seeds)), "test": {"n": seeds, "mean": test_mean, "std": 0.001, "min": test_mean},
               "figures": {k: {"mean": v} for k, v in figures.items()}, "command": f"python train.py --{name}"}
    (folder / f"{name}.json").write_text(json.dumps(summary))


def _row(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_rows_judge_their_targets(tmp_path):
    _write(tmp_path, "dense-lenet300", 0.9859)
    _write(tmp_path, "dense-lenet5", 0.9900)
    _write(tmp_path, "wavelet-cnn", 0.9920, params=36030)
    text = summary_table.table(str(tmp_path))
    assert "98.59% +- 0.10" in _row(text, "| dense LeNet-300-100") and "| yes |" in _row(text, "| dense LeNet-300-100")
    assert "| NO |" in _row(text, "| dense LeNet-5 ")
    assert "| yes |" in _row(text, "| wavelet CNN")
    assert "not re-run yet" in _row(text, "| adding")


def test_the_tucker_row_needs_both_ratio_and_gap(tmp_path):
    _write(tmp_path, "dense-lenet300-shift1", 0.9900)
    _write(tmp_path, "tucker-lenet300-234x", 0.9880, quantized_bytes_ratio=234.2, params_ratio=60.1)
    text = summary_table.table(str(tmp_path))
    assert "| yes |" in _row(text, "| ADA-Tucker LeNet-300-100")      # gap -0.20, ratio 234.2
    _write(tmp_path, "tucker-lenet300-234x", 0.9840, quantized_bytes_ratio=234.2, params_ratio=60.1)
    assert "| NO |" in _row(summary_table.table(str(tmp_path)), "| ADA-Tucker LeNet-300-100")


def test_fewer_than_three_seeds_are_flagged(tmp_path):
    _write(tmp_path, "dense-lenet300", 0.9859, seeds=2)
    assert "(2 seeds only)" in _row(summary_table.table(str(tmp_path)), "| dense LeNet-300-100")


def test_the_copy_row_reads_recall_beside_the_cross_entropy(tmp_path):
    _write(tmp_path, "copy-gru128-state_reset", 0.002)
    assert "recall not recorded" in _row(summary_table.table(str(tmp_path)), "| copy memory")
    summary = json.loads((tmp_path / "copy-gru128-state_reset.json").read_text())
    summary["test_other"] = {"accuracy": {"n": 3, "mean": 0.9931, "std": 0.002, "min": 0.991}}
    (tmp_path / "copy-gru128-state_reset.json").write_text(json.dumps(summary))
    row = _row(summary_table.table(str(tmp_path)), "| copy memory")
    assert "recall 99.31% +- 0.20" in row and "| yes |" in row
    summary["test_other"]["accuracy"]["mean"] = 0.985
    (tmp_path / "copy-gru128-state_reset.json").write_text(json.dumps(summary))
    assert "| NO |" in _row(summary_table.table(str(tmp_path)), "| copy memory")


def test_a_row_with_two_dense_runs_compares_with_the_stronger(tmp_path):
    start = "| SCADA-Tucker LeNet-300-100, the same ratio"
    _write(tmp_path, "scada-lenet300-r50-lr", 0.9860, params_ratio=50.9, params=5239)
    _write(tmp_path, "dense-lenet300-shift1-lr", 0.9879)
    _write(tmp_path, "dense-lenet300-shift1", 0.9904)
    row = _row(summary_table.table(str(tmp_path)), start)
    assert "dense 99.04% +- 0.10 (the stronger; also 98.79% +- 0.10); gap -0.44" in row and "| yes |" in row
    _write(tmp_path, "dense-lenet300-shift1-lr", 0.9915)        # now the grid's dense net is the stronger
    row = _row(summary_table.table(str(tmp_path)), start)
    assert "dense 99.15% +- 0.10 (the stronger; also 99.04% +- 0.10); gap -0.55" in row and "| NO |" in row
