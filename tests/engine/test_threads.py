"""engine/threads.py: run-time thread limits take effect and are restored; a missing extra is named."""
import sys

import numpy as np
import pytest

from engine import threads
from engine.kernels import im2col

threadpoolctl = pytest.importorskip("threadpoolctl", reason="the 'threads' extra (threadpoolctl) is not installed")


def _blas_threads():
    return {info["user_api"]: info["num_threads"] for info in threadpoolctl.threadpool_info()}


def test_limit_threads_sets_every_pool_and_restores_it():
    np.ones((64, 64)) @ np.ones((64, 64))   # BLAS loaded
    im2col.numba_enabled()                   # Numba loaded when it is installed
    numba = threads._numba()
    numba_before = numba.get_num_threads() if numba is not None else None   # starts its pool
    before = _blas_threads()
    with threads.limit_threads(1) as limits:
        assert isinstance(limits, threads.limit_threads)
        assert all(n == 1 for n in _blas_threads().values())
        assert all(pool["threads"] == 1 for pool in threads.thread_pools())
        if numba is not None:
            assert numba.get_num_threads() == 1
    assert _blas_threads() == before
    if numba is not None:
        assert numba.get_num_threads() == numba_before


def test_a_plain_call_lasts_until_restore():
    np.ones((64, 64)) @ np.ones((64, 64))
    before = _blas_threads()
    limits = threads.limit_threads(1)
    assert all(n == 1 for n in _blas_threads().values())
    limits.restore()
    assert _blas_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_count_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="positive int"):
        threads.limit_threads(bad)


def test_missing_threadpoolctl_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    with pytest.raises(ImportError, match=r"compactnet\[threads\]"):
        threads.limit_threads(1)
    with pytest.raises(ImportError, match=r"compactnet\[threads\]"):
        threads.thread_pools()
