"""Timing helpers for the benchmarks: the machine's description, thread pinning, warm-up, median of repeats."""
import importlib
import os
import platform
import statistics
import time

GIB = 1 << 30


def _first_field(path, key):
    """The value after 'key:' on the first line of /proc's `path` that starts with key, or None."""
    try:
        with open(path) as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(key)), None)
    except OSError:
        return None


def usable_cores():
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def blas_description():
    """NumPy's BLAS as threadpoolctl reads it, e.g. 'openblas 0.3.31 (SkylakeX kernels)' (every BLAS
    loaded where none lies in NumPy's folder); '' without threadpoolctl. The kernels chosen for the
    CPU decide a product's speed as much as the CPU does."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    importlib.import_module("numpy")  # loads the BLAS that threadpool_info then finds
    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    # other packages (onnxruntime, SciPy) may load a BLAS of their own; NumPy's lies beside it
    own = [pool for pool in pools if "numpy" in os.path.basename(os.path.dirname(pool.get("filepath", "")))]
    parts = []
    for pool in own or pools:
        arch = f" ({pool['architecture']} kernels)" if pool.get("architecture") else ""
        parts.append(f"{pool.get('internal_api', '?')} {pool.get('version') or ''}".strip() + arch)
    return ", ".join(parts)


def machine_description():
    """CPU model, usable cores, memory and NumPy's BLAS, for a benchmark's record.

    Ratios against an anchor move with the host: on the AMD EPYC of the seventh to ninth sessions
    NumPy's OpenBLAS products ran faster than PyTorch's MKL ones, on the Intel Xeon of the tenth
    slower, so each record names the CPU it ran on."""
    cpu = _first_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    memory = _first_field("/proc/meminfo", "MemTotal")
    text = f"{cpu}, {usable_cores()} cores"
    if memory and memory.split()[0].isdigit():
        text += f", {int(memory.split()[0]) * 1024 / GIB:.0f} GiB RAM"
    blas = blas_description()
    return text + (f"; NumPy BLAS: {blas}" if blas else "")


def pin_threads(n):
    """Ask every BLAS/OpenMP pool for `n` threads; call before NumPy does heavy work."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def _sample(fn, min_time):
    """Seconds per call of fn(), looping until at least `min_time` seconds pass."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n


def median_seconds(fn, repeats=7, warmup=2, min_time=0.05, settle=0.3):
    """Median wall time of fn() over `repeats` runs after `warmup` calls.

    Each timed sample loops fn() until at least `min_time` seconds pass, so fast
    calls are not dominated by timer resolution. `settle` seconds of sleep first let
    the thread pools of whatever ran before (OpenBLAS, OpenMP) stop spinning.
    """
    time.sleep(settle)
    return paired_median_seconds([fn], repeats, warmup, min_time)[0]


def paired_median_seconds(fns, repeats=7, warmup=2, min_time=0.05):
    """Median wall time of each of fns, sampled in turn (a, b, a, b, ...).

    Interleaving makes a burst of load on a shared machine hit every side of a
    comparison alike, so the ratio of the medians is steadier than timing one
    side after the other. Use it only when all sides share one set of thread pools
    (e.g. ours against ours, or NumPy-based anchors): switching between two runtimes'
    pools every sample leaves one runtime's idle threads spinning while the other
    computes (measured: PyTorch's LeNet-300-100 step went from 1.4 to 3.5 ms when
    interleaved with ours), which is why the PyTorch and PyWavelets rows time one
    side after the other with median_seconds.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, store in zip(fns, samples):
            store.append(_sample(fn, min_time))
    return [statistics.median(s) for s in samples]


def rounds_median_seconds(fns, repeats=9, rounds=3, warmup=1, min_time=0.05, settle=0.3):
    """Median wall time of each of fns, timed in `rounds` alternating blocks (a a a, b b b, a a a, ...).

    For sides with their own thread pools (ours against PyTorch): switching every sample leaves one
    runtime's idle threads spinning while the other computes (see paired_median_seconds), while timing
    one whole side after the other lets a change in the machine's load land on one side only. Blocks
    keep both effects small: each block starts after `settle` seconds of sleep and `warmup` untimed
    samples (each at least `min_time` long, so the core is back at speed and the caches hold the
    side's data however short one call is), and every side gets `repeats` samples spread over the
    whole measurement.
    """
    per_round = max(1, -(-repeats // rounds))
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for fn, store in zip(fns, samples):
            time.sleep(settle)
            for _ in range(warmup):
                _sample(fn, min_time)
            store.extend(_sample(fn, min_time) for _ in range(per_round))
    return [statistics.median(s) for s in samples]
