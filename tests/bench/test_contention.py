"""bench/contention.py: the summary of scripted timings, the target column, and the auto-threads step wrapper."""
import pytest

from bench import contention


def _result(model, busy, framework, threads, ms):
    return {"model": model, "busy": busy, "framework": framework, "threads": threads, "seconds": ms / 1e3}


RESULTS = [_result("lenet300", 2, "ours", "default", 6.0), _result("lenet300", 2, "ours", 1, 5.0),
           _result("lenet300", 2, "ours", 2, 70.0), _result("lenet300", 2, "torch", "default", 68.0),
           _result("lenet300", 2, "torch", 1, 6.5), _result("lenet300", 2, "torch", 2, 75.0)]


def test_summary_picks_default_and_best_and_the_target_ratios():
    (row,) = contention.summarise(RESULTS, ["lenet300"], [2])
    assert row["ours"] == {"default_s": 0.006, "best_s": 0.005, "best_threads": 1}
    assert row["torch"]["best_threads"] == 1
    assert row["ours_default_over_best"] == pytest.approx(1.2)
    assert row["ours_default_over_torch_default"] == pytest.approx(6.0 / 68.0)
    meta = {"machine": "m", "load_before": 0.1, "load_after": 0.2, "numba": "x", "torch": "y", "date": "d",
            "command": "c", "repeats": 9}
    text = contention.to_markdown([row], RESULTS, meta)
    assert "| lenet300 | 2 | 6.00 | 5.00 (1) | 1.20 |" in text and text.splitlines()[7].endswith("| yes |")


def test_the_target_fails_when_default_is_far_from_best():
    slow = [dict(r, seconds=0.07) if (r["framework"], r["threads"]) == ("ours", "default") else r for r in RESULTS]
    (row,) = contention.summarise(slow, ["lenet300"], [2])
    assert "| no |" in contention.to_markdown([row], slow, {"machine": "m", "load_before": 0, "load_after": 0,
                                                          "numba": "", "torch": "", "date": "", "command": "",
                                                          "repeats": 1})


def test_default_step_checks_auto_threads_before_every_step(monkeypatch):
    calls = []

    class FakeAuto:
        every = 0.0

        def check(self):
            calls.append("check")

    monkeypatch.setattr("training.threads.AutoThreads", FakeAuto)
    step = contention._with_auto_threads(lambda: calls.append("step"))
    step()
    step()
    assert calls == ["check", "check", "step", "check", "step"]


def test_each_setting_counts_with_the_median_of_its_rounds():
    """A setting measured in three rounds counts with its median, so one slow or fast worker process
    does not decide the default's ratio to the best."""
    rounds = {("ours", "default"): [6.0, 9.0, 5.5], ("ours", 1): [5.0, 4.0, 100.0], ("ours", 2): [70.0, 3.0, 80.0],
              ("torch", "default"): [60.0, 68.0, 64.0], ("torch", 1): [6.5, 7.0, 6.0], ("torch", 2): [75.0, 70.0, 80.0]}
    results = [dict(_result("lenet300", 2, framework, threads, ms), round=k)
               for (framework, threads), times in rounds.items() for k, ms in enumerate(times)]
    (row,) = contention.summarise(results, ["lenet300"], [2])
    assert row["ours"] == {"default_s": 0.006, "best_s": 0.005, "best_threads": 1}
    assert row["torch"] == {"default_s": 0.064, "best_s": 0.0065, "best_threads": 1}
    assert row["ours_default_over_best"] == pytest.approx(1.2)
    text = contention.to_markdown([row], results, {"machine": "m", "load_before": 0, "load_after": 0, "numba": "",
                                                   "torch": "", "date": "", "command": "", "repeats": 9, "rounds": 3})
    assert "in each of 3 round(s)" in text and "| lenet300 | 2 | 2 | ours | 1 | 100.00 |" in text


def test_rounds_must_be_positive():
    with pytest.raises(SystemExit):
        contention.main(["--rounds", "0"])
