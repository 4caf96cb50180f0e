"""Run-time thread limits for the BLAS/OpenMP pools (threadpoolctl, extra "threads") and Numba's pool.

The thread variables (OMP_NUM_THREADS and the like) are read once, when each library loads; these
calls change the count of an already running process, e.g. when other work starts competing for
the cores. Optional: threadpoolctl is imported on first use only.
"""
import sys

from .kernels import numba_disabled

EXTRA_MESSAGE = ("thread control needs threadpoolctl: pip install 'compactnet[threads]' "
                 "(or pip install threadpoolctl)")


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        raise ImportError(EXTRA_MESSAGE) from None
    return threadpoolctl


def _numba():
    """The numba module when it is already loaded by our kernels (never loads it just for this)."""
    return None if numba_disabled() else sys.modules.get("numba")


class limit_threads:
    """Limit every BLAS/OpenMP pool and Numba's pool (in this thread) to `n` threads, at once.

    Usable as a context manager (the previous limits come back on exit) or as a plain call whose
    limits last until restore(). Numba cannot grow past the count it started with
    (NUMBA_NUM_THREADS), so its limit is min(n, that count).
    """

    def __init__(self, n):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"limit_threads: n must be a positive int, got {n!r}")
        self._blas = _threadpoolctl().threadpool_limits(limits=n)
        numba = _numba()
        self._numba_before = None
        if numba is not None:
            self._numba_before = numba.get_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        self._pools = loaded_pools()

    def covers(self):
        """Whether the pools loaded now are the ones this limit was applied to. A pool that loads later
        (Numba and its OpenMP runtime load with the first kernel call) runs at its own default."""
        return loaded_pools() == self._pools

    def restore(self):
        """Put back the limits in force before this call."""
        self._blas.restore_original_limits()
        numba = _numba()
        if numba is not None and self._numba_before is not None:
            numba.set_num_threads(self._numba_before)
            self._numba_before = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()


def loaded_pools():
    """The thread pools loaded in this process, as a comparable tuple (libraries' paths, and Numba)."""
    paths = sorted(info.get("filepath", "") for info in _threadpoolctl().threadpool_info())
    return tuple(paths) + (("numba",) if _numba() is not None else ())


def thread_pools():
    """[{"library", "api", "threads"}] for every thread pool loaded in this process."""
    pools = [{"library": info.get("internal_api", ""), "api": info["user_api"],
              "threads": info["num_threads"]} for info in _threadpoolctl().threadpool_info()]
    numba = _numba()
    if numba is not None:
        pools.append({"library": "numba", "api": numba.config.THREADING_LAYER,
                      "threads": numba.get_num_threads()})
    return pools
