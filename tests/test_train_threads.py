"""The auto thread policy: free cores from /proc/stat, AutoThreads' re-checks, the policy choice, its record."""
import json

import pytest

import train
from tests.test_train import TINY
from training import threads
from training.threads import AUTO, AutoThreads, FreeCores, auto_applies, prepare_auto


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_free_cores_subtracts_our_own_time_from_the_busy_time(monkeypatch):
    """Busy time of the CPUs minus this process's CPU time, over the wall time, is the others' share."""
    clock = Clock()
    monitor = FreeCores(clock)
    monitor.cpus = [0, 1]
    monitor._last = (clock(), 10.0, 1.0)        # (time, CPU-busy seconds of the 2 CPUs, our CPU seconds)
    samples = iter([(101.0, 11.5, 1.5), (102.0, 13.5, 3.5)])
    monkeypatch.setattr(monitor, "_sample", lambda: next(samples))
    assert monitor.free() == 1        # 1.5 busy - 0.5 ours = 1 core taken by others
    assert monitor.free() == 2        # all 2.0 busy seconds were ours (our own spinning threads too)


def test_free_cores_is_at_least_one_and_all_cores_without_proc(monkeypatch):
    clock = Clock()
    monitor = FreeCores(clock)
    monitor.cpus = [0, 1]
    monitor._last = (clock(), 0.0, 0.0)
    monkeypatch.setattr(monitor, "_sample", lambda: (clock(), 9.0, 0.0))   # others kept 9 cores busy
    clock.now += 1.0
    assert monitor.free() == 1
    monkeypatch.setattr(monitor, "_sample", lambda: (clock(), None, 0.0))
    clock.now += 1.0
    assert monitor.free() == 2


def test_free_cores_reads_this_machine():
    """The real /proc/stat: a count between 1 and this process's CPUs."""
    assert 1 <= threads.free_cores(0.05) <= len(FreeCores().cpus)


class Limiter:
    def __init__(self, log, n):
        self.log, self.n = log, n
        log.append(("limit", n))

    def restore(self):
        self.log.append(("restore", self.n))


def test_auto_threads_rechecks_every_interval_and_limits_only_on_change():
    clock, log, looks = Clock(), [], iter([2, 1, 1, 2])
    auto = AutoThreads(every=1.0, measure=lambda: next(looks), clock=clock,
                       limit=lambda n: Limiter(log, n))
    assert auto.check() is None and log == []          # no interval measured yet
    clock.now += 1.0
    assert auto.check() == 2 and log == [("limit", 2)]
    clock.now += 0.5
    assert auto.check() == 2 and len(log) == 1          # within the interval: no new look
    clock.now += 0.5
    assert auto.check() == 1 and log[1:] == [("restore", 2), ("limit", 1)]
    clock.now += 1.0
    assert auto.check() == 1 and len(log) == 3          # unchanged: the limit stays as it is
    clock.now += 1.0
    assert auto.check() == 2 and auto.counts == [2, 1]
    auto.close()
    assert log[-1] == ("restore", 2)


def test_auto_threads_limits_again_when_a_pool_loads_after_the_limit():
    """Numba's pool (and its OpenMP runtime) loads with the first kernel call, after the first limit."""
    clock, log, loaded = Clock(), [], {"pools": 1}

    class Covering(Limiter):
        def __init__(self, log, n):
            super().__init__(log, n)
            self.pools = loaded["pools"]

        def covers(self):
            return loaded["pools"] == self.pools

    auto = AutoThreads(every=1.0, measure=lambda: 1, clock=clock, limit=lambda n: Covering(log, n))
    clock.now += 1.0
    assert auto.check() == 1 and log == [("limit", 1)]
    clock.now += 1.0
    assert auto.check() == 1 and len(log) == 1          # same count, same pools: nothing to do
    loaded["pools"] = 2
    clock.now += 1.0
    assert auto.check() == 1 and log[1:] == [("restore", 1), ("limit", 1)]
    assert auto.counts == [1]


def test_limit_threads_covers_only_the_pools_loaded_when_applied(monkeypatch):
    pytest.importorskip("threadpoolctl", reason="the extra 'threads' is not installed")
    from engine import threads as engine_threads
    limit = engine_threads.limit_threads(1)
    try:
        assert limit.covers()
        monkeypatch.setattr(engine_threads, "loaded_pools", lambda: ("a pool loaded later",))
        assert not limit.covers()
    finally:
        limit.restore()


def test_without_threadpoolctl_auto_threads_changes_nothing():
    clock = Clock()
    auto = AutoThreads(every=1.0, measure=lambda: 1, clock=clock, limit=None)
    auto.limit = None
    clock.now += 1.0
    assert auto.check() is None and auto.counts == []
    auto.close()


@pytest.mark.parametrize("threads_flag, environ, expected", [
    (None, {}, True), (AUTO, {}, True), (None, {"OMP_NUM_THREADS": "2"}, False),
    (AUTO, {"OMP_NUM_THREADS": "2"}, True), (3, {}, False)])
def test_auto_applies_unless_a_count_is_given(threads_flag, environ, expected):
    assert auto_applies(threads_flag, environ) is expected


def test_prepare_auto_sets_the_variables_only_without_threadpoolctl(monkeypatch):
    environ = {}
    monkeypatch.setattr(threads.importlib.util, "find_spec", lambda name: object())
    assert prepare_auto(environ) is None and environ == {}
    monkeypatch.setattr(threads.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    assert prepare_auto(environ) == 1
    assert all(environ[name] == "1" for name in threads.THREAD_VARIABLES)


@pytest.mark.parametrize("flags, policy", [(["--threads", "auto"], "auto"), (["--threads", "1"], "fixed")])
def test_metrics_record_the_policy(tmp_path, flags, policy):
    out = tmp_path / "run"
    assert train.main([*TINY, "--out", str(out), *flags]) == 0
    record = json.loads((out / "metrics.json").read_text())["threads"]
    assert record["policy"] == policy
    assert policy == "auto" or record["counts"] == [1]


def test_bad_threads_value_is_a_usage_error(tmp_path, capsys):
    assert train.main([*TINY, "--out", str(tmp_path / "x"), "--threads", "many"]) == 2
    assert "must be a positive integer or auto, got 'many'" in capsys.readouterr().err
