"""Timing helpers for the benchmarks: thread pinning, warm-up, median of repeats."""
import os
import statistics
import time


def pin_threads(n):
    """Ask every BLAS/OpenMP pool for `n` threads; call before NumPy does heavy work."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def median_seconds(fn, repeats=7, warmup=2, min_time=0.05):
    """Median wall time of fn() over `repeats` runs after `warmup` calls.

    Each timed sample loops fn() until at least `min_time` seconds pass, so fast
    calls are not dominated by timer resolution.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples)
