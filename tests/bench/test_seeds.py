"""bench/seeds.py: aggregation over seeds (scripted metrics), outputs, and a real two-seed run."""
import json
import math

import pytest

from bench import seeds

from .scripted import scripted_metrics

VALID = [0.981, 0.990, 0.975]
TEST = [0.979, 0.985, 0.970]


def sample_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def three_runs(**kw):
    return {seed: scripted_metrics(test=t, valid=v, **kw) for seed, (v, t) in enumerate(zip(VALID, TEST))}


def test_aggregate_mean_sample_std_and_min():
    summary = seeds.aggregate(three_runs())
    for split, values in (("valid", VALID), ("test", TEST)):
        stats = summary[split]
        assert stats["n"] == 3 and stats["min"] == min(values)
        assert stats["mean"] == pytest.approx(sum(values) / 3, rel=1e-12)
        assert stats["std"] == pytest.approx(sample_std(values), rel=1e-12)
        population = math.sqrt(sum((v - stats["mean"]) ** 2 for v in values) / 3)
        assert abs(stats["std"] - population) > 1e-4          # ddof=1, not the population std
    assert summary["seeds"] == [0, 1, 2] and "ddof=1" in summary["std"]
    assert summary["figures"]["params_ratio"]["mean"] == 10.0 and summary["figures"]["flops_ratio"]["mean"] == 2.0
    assert summary["figures"]["quantized_bytes_ratio"] is None and "quantized_test" not in summary
    row = seeds.markdown_row(summary, "lenet5 tucker")
    assert row.startswith("| lenet5 tucker | 3 |") and row.count("|") == seeds.MARKDOWN_HEADER.split("\n")[0].count("|")
    assert f"{100 * sum(TEST) / 3:.2f}% +- {100 * sample_std(TEST):.2f} (min {100 * min(TEST):.2f}%)" in row


def test_runs_without_validation_report_a_dash():
    runs = {s: scripted_metrics(test=t) for s, t in enumerate(TEST)}
    summary = seeds.aggregate(runs)
    assert summary["valid"] is None and summary["test"]["n"] == 3
    cells = [c.strip() for c in seeds.markdown_row(summary, "x").split("|")]
    assert cells[3] == "-" and cells[4].startswith(f"{100 * sum(TEST) / 3:.2f}%")


def test_one_seed_has_no_std_and_lower_is_better_metrics_print_plainly():
    summary = seeds.aggregate({7: scripted_metrics(test=0.0004, valid=0.0005, name="mse", higher_is_better=False)})
    assert summary["test"]["std"] is None and summary["seeds"] == [7] and not summary["higher_is_better"]
    row = seeds.markdown_row(summary, "adding")
    assert "+-" not in row and "0.0004 (min 0.0004)" in row


def test_quantized_figures_are_aggregated():
    runs = {s: scripted_metrics(test=t, valid=v, quantized={"ratio": 40.0 + s, "test": {"accuracy": t - 0.01}})
            for s, (v, t) in enumerate(zip(VALID, TEST))}
    summary = seeds.aggregate(runs)
    assert summary["figures"]["quantized_bytes_ratio"]["mean"] == pytest.approx(41.0)
    assert summary["quantized_test"]["mean"] == pytest.approx(sum(TEST) / 3 - 0.01)


def test_runs_of_different_commands_are_refused():
    runs = three_runs()
    runs[2] = scripted_metrics(test=0.9, valid=0.9, model="lenet300")
    with pytest.raises(ValueError, match="differ in model"):
        seeds.aggregate(runs)
    with pytest.raises(ValueError, match="no finished run"):
        seeds.aggregate({})


def test_arguments():
    args = seeds.parse_args(["--root", "r/x", "-n", "2", "--", "--task", "adding"])
    assert args.seeds == [0, 1] and args.command == ["--task", "adding"] and args.label == "x"
    assert seeds.parse_args(["--root", "r", "--seeds", "4,2", "--", "--task", "adding"]).seeds == [4, 2]
    assert seeds.parse_args(["--root", "r", "--", "--task", "adding"]).seeds == [0, 1, 2]
    for bad in (["--root", "r", "--", "--seed", "3"], ["--root", "r", "--", "--out=x"],
                ["--root", "r", "--seeds", "1,1", "--", "--task", "adding"], ["--root", "r", "-n", "0", "--", "x"],
                ["--root", "r"]):
        with pytest.raises(SystemExit):
            seeds.parse_args(bad)


def test_collect_only_writes_json_and_markdown(tmp_path, capsys):
    for seed, metrics in three_runs().items():
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "metrics.json").write_text(json.dumps(metrics))
    assert seeds.main(["--root", str(tmp_path), "--collect-only", "--label", "scripted"]) == 0
    saved = json.loads((tmp_path / "seeds.json").read_text())
    assert saved["test"]["mean"] == pytest.approx(sum(TEST) / 3) and saved["label"] == "scripted"
    table = (tmp_path / "seeds.md").read_text()
    assert table.startswith(seeds.MARKDOWN_HEADER) and "| scripted | 3 |" in table and "ddof=1" in table
    assert seeds.main(["--root", str(tmp_path), "--seeds", "0,5", "--collect-only"]) == 1   # seed 5 missing
    assert "seed(s) [5] failed" in capsys.readouterr().err


def test_two_real_seeds_of_a_tiny_run(tmp_path):
    command = ["--task", "adding", "--seq-len", "4", "--hidden", "4", "--batch-size", "8", "--steps", "2",
               "--epochs", "1", "--no-progress", "--log-every", "0"]
    assert seeds.main(["--root", str(tmp_path), "-n", "2", "--", *command]) == 0
    summary = json.loads((tmp_path / "seeds.json").read_text())
    values = [json.loads((tmp_path / f"seed-{s}" / "metrics.json").read_text())["test"]["mse"] for s in (0, 1)]
    assert [json.loads((tmp_path / f"seed-{s}" / "metrics.json").read_text())["seed"] for s in (0, 1)] == [0, 1]
    assert summary["test"]["mean"] == pytest.approx(sum(values) / 2) and summary["test"]["min"] == min(values)
    assert summary["test"]["std"] == pytest.approx(sample_std(values))


def test_seed_placeholder_is_replaced_in_every_word():
    command = ["--init-from", "runs/dense/chosen-seed-{seed}", "--lr", "1e-3", "--out-note", "{seed}{seed}"]
    assert seeds.with_seed(command, 2) == ["--init-from", "runs/dense/chosen-seed-2", "--lr", "1e-3", "--out-note", "22"]
    assert seeds.with_seed(["--lr", "1e-3"], 5) == ["--lr", "1e-3"]


def test_the_other_numbers_of_each_split_are_aggregated_too():
    """The copy task's headline metric is cross-entropy; its recall accuracy comes along beside it."""
    runs = {}
    for seed, (ce, recall) in enumerate([(0.002, 0.991), (0.001, 0.995), (0.003, 0.989)]):
        metrics = scripted_metrics(test=ce, valid=ce, name="cross_entropy", higher_is_better=False)
        metrics["test"]["accuracy"] = metrics["valid"]["accuracy"] = recall
        runs[seed] = metrics
    runs[2]["test"]["note"] = "text is not a number"
    summary = seeds.aggregate(runs)
    assert sorted(summary["test_other"]) == ["accuracy", "loss"]      # the headline metric is not repeated
    assert summary["test_other"]["accuracy"]["mean"] == pytest.approx((0.991 + 0.995 + 0.989) / 3)
    assert summary["test_other"]["accuracy"]["min"] == 0.989 and summary["valid_other"]["accuracy"]["n"] == 3
