"""Choosing on validation only: bench.selection and compare.py's choices never read a test value."""
import argparse
import os

from bench import compare, selection

from .scripted import ReadLog, scripted_metrics


def logged(pairs, log, **kw):
    """Scripted candidates from (valid, test) pairs, each logging its test reads under its index."""
    return [ReadLog(scripted_metrics(test=t, valid=v, **kw), log, i) for i, (v, t) in enumerate(pairs)]


def test_choose_on_validation_where_test_would_pick_another():
    log = []
    candidates = logged([(0.97, 0.99), (0.98, 0.96), (0.95, 0.995)], log)
    assert selection.choose(candidates)[0] == 1        # test would pick 2 (or 0)
    assert log == []


def test_lower_is_better_ties_and_missing_validation():
    log = []
    candidates = logged([(0.30, 0.10), (0.20, 0.50), (0.20, 0.05)], log, name="mse", higher_is_better=False)
    assert selection.choose(candidates)[0] == 1        # lowest valid; the first of the tie
    no_valid = [ReadLog(scripted_metrics(test=t), log, i) for i, t in enumerate((0.9, 0.8))]
    assert selection.choose(no_valid) == (None, "no validation metric to choose on")
    some_valid = no_valid[:1] + logged([(0.5, 0.1)], log)
    assert selection.choose(some_valid)[0] == 1
    assert selection.choose(logged([(None, 0.7)], log)) == (0, "the only setting")
    assert selection.choose([]) == (None, "no finished run")
    assert log == []


def test_choose_per_group_keeps_groups_apart():
    log = []
    a = logged([(0.90, 0.99), (0.95, 0.90)], log)
    b = logged([(0.80, 0.70)], log)
    chosen = selection.choose_per_group([("a", a[0]), ("b", b[0]), ("a", a[1])])
    assert {g: i for g, (i, _) in chosen.items()} == {"a": 2, "b": 1}
    assert log == []


def compare_rows(log):
    """Two candidate lrs at one Tucker ratio (test prefers the first, valid the second) and a dense run."""
    rows = []
    for index, (method, setting, variant, valid, test) in enumerate((
            ("dense", "dense", "", 0.985, 0.980),
            ("tucker", "R=10", "lr 0.001", 0.970, 0.990),
            ("tucker", "R=10", "lr 0.01", 0.975, 0.960))):
        metrics = ReadLog(scripted_metrics(test=test, valid=valid), log, index)
        rows.append({"model": "lenet5", "method": method, "setting": setting, "variant": variant,
                     "run": f"runs/{index}", "status": 0, "params": 100, "learnable": 90, "flops": 10,
                     "seconds": 1.0, "valid": valid, "metrics": metrics})
    return rows


def test_compare_reads_test_once_and_only_for_the_chosen_candidate():
    log = []
    rows = compare.apply_choices(compare_rows(log))
    assert [("chosen" in r) for r in rows] == [True, False, True]
    assert sorted(log) == [(0, "test"), (2, "test")]           # one read per chosen setting
    assert rows[2]["accuracy"] == 0.960 and "accuracy" not in rows[1]
    assert rows[1]["not_chosen"] == "another candidate"


def test_compare_table_shows_valid_for_all_and_test_for_the_chosen(tmp_path):
    rows = compare.add_dense_ratios(compare.apply_choices(compare_rows([])))
    args = argparse.Namespace(quick=False, argv=[], epochs=1, steps=None, seed=0, lowrank_tau=[1e-3],
                              finetune_epochs=1, models=["lenet5"])
    text = open(compare.write_table(rows, args, str(tmp_path / "t.md"))).read()
    assert "| tucker | R=10 | lr 0.001 | 100 | 1.0x | 90 | 10 | 97.00% | not read (another candidate) |" in text
    assert "| tucker | R=10 | lr 0.01 | 100 | 1.0x | 90 | 10 | 97.50% | 96.00% |" in text


def test_basis_starts_from_the_dense_run_chosen_on_validation():
    log = []
    rows = [{"model": "lenet5", "method": "dense", "run": f"runs/d{i}", "metrics": m}
            for i, m in enumerate(logged([(0.97, 0.995), (0.99, 0.97)], log))]
    rows.append({"model": "lenet5", "method": "dense", "run": "runs/failed"})
    assert compare.chosen_dense_checkpoint(rows, "lenet5") == os.path.join("runs/d1", "checkpoint.npz")
    assert compare.chosen_dense_checkpoint(rows, "lenet300") is None
    assert log == []


def test_plan_makes_lrs_and_taus_candidates_of_one_setting():
    args = compare.parse_args(["--models", "lenet300", "--methods", "lowrank", "--ratios", "10",
                               "--lrs", "0.001,0.01", "--lowrank-tau", "1e-3,1e-2"])
    runs = compare.plan(args)
    lowrank = [r for r in runs if r["method"] == "lowrank"]
    assert len(lowrank) == 4 and len({r["setting"] for r in lowrank}) == 1
    names = {compare.run_name(r["model"], r["method"], r["setting"], r["variant"]) for r in runs}
    assert len(names) == len(runs) == 6                          # every candidate its own folder
