"""bench/two_core_probe.py: the summary of scripted sample pairs, and a quick run end to end."""
import pytest

from bench import two_core_probe


def test_summary_counts_pairs_with_two_cores_changes_and_windows():
    # (seconds since start, 1-thread s, 2-thread s): fast, fast, slow, fast in the first window, slow in the next
    pairs = [(0.0, 2.0, 1.2), (1.0, 2.0, 1.6), (2.0, 2.0, 2.2), (3.0, 2.0, 1.4), (6.0, 2.0, 2.0)]
    summary = two_core_probe.summarise(pairs, window=5.0)
    assert summary["pairs"] == 5
    assert summary["two_core_share"] == pytest.approx(3 / 5)
    assert summary["changes"] == 3
    assert summary["one_thread_median_s"] == 2.0 and summary["two_thread_median_s"] == 1.6
    assert summary["windows"] == [{"from_s": 0.0, "pairs": 4, "two_core_share": 0.75},
                                  {"from_s": 5.0, "pairs": 1, "two_core_share": 0.0}]
    text = two_core_probe.to_markdown(summary, {"machine": "m", "load_before": 0.5, "date": "d", "command": "c",
                                                "sample_time": 0.1})
    assert "two cores at work): 60%; changes between the two states: 3." in text
    assert "| 0 | 4 | 75% |" in text and "| 5 | 1 | 0% |" in text


def test_summary_without_pairs_says_so():
    with pytest.raises(ValueError, match="no samples"):
        two_core_probe.summarise([])


def test_quick_run_times_both_thread_counts(tmp_path, capsys):
    pytest.importorskip("threadpoolctl", reason="the probe switches BLAS threads with threadpoolctl")
    two_core_probe.main(["--quick", "--sample-time", "0.01", "--out", str(tmp_path)])
    assert "| from (s) | pairs | two cores at work |" in capsys.readouterr().out
    assert (tmp_path / "two_core_probe.md").exists() and (tmp_path / "two_core_probe.json").exists()
