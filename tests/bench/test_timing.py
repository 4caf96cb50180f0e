"""bench/timing.py: the block order of rounds_median_seconds, the medians it returns, the machine's description."""
import sys

import pytest

from bench import timing


def test_rounds_alternate_blocks_with_warm_up_and_return_each_sides_median(monkeypatch):
    calls = []
    # each block: one warm-up sample (discarded, here 100.0), then three timed ones
    seconds = {"a": iter([100.0, 5.0, 1.0, 3.0, 100.0, 2.0, 4.0, 9.0]),
               "b": iter([100.0, 7.0, 8.0, 6.0, 100.0, 1.0, 2.0, 3.0])}
    monkeypatch.setattr(timing, "_sample", lambda fn, min_time: (fn(), next(seconds[fn.__name__]))[1])
    monkeypatch.setattr(timing.time, "sleep", lambda s: calls.append("sleep"))

    def a():
        calls.append("a")

    def b():
        calls.append("b")
    medians = timing.rounds_median_seconds([a, b], repeats=5, rounds=2, warmup=1, min_time=0)
    # 3 samples per round (5 over 2 rounds, rounded up), each block after a sleep and one warm-up sample
    block_a, block_b = ["sleep", "a", "a", "a", "a"], ["sleep", "b", "b", "b", "b"]
    assert calls == block_a + block_b + block_a + block_b
    assert medians == [3.5, 4.5]


def test_machine_description_names_the_cores_and_numpys_blas():
    text = timing.machine_description()
    assert f"{timing.usable_cores()} cores" in text
    pytest.importorskip("threadpoolctl", reason="NumPy's BLAS is read through threadpoolctl")
    blas = timing.blas_description()
    assert blas and f"NumPy BLAS: {blas}" in text


def test_blas_description_is_empty_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)   # import then raises ImportError
    assert timing.blas_description() == ""
