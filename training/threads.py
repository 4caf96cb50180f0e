"""The thread count of a run: the auto policy (the cores other work leaves free, re-checked during the run),
its record in the checkpoint, and its restoration on --resume (a changed count only warns). No NumPy at
import: train.py runs this before NumPy loads."""
import importlib.util
import os
import sys
import time

# the variables train.py sets from --threads before NumPy loads (BLAS and OpenMP read them once, at import)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_RESTARTED = "COMPACTNET_THREADS_RESTORED"
AUTO = "auto"
RECHECK_SECONDS = 1.0


def _busy_seconds(cpus):
    """CPU seconds spent busy so far on the CPUs `cpus` (user, nice, system, irq, softirq and steal time
    from /proc/stat), or None where /proc/stat cannot tell."""
    try:
        busy = 0
        with open("/proc/stat") as fh:
            for line in fh:
                if not (line.startswith("cpu") and line[3].isdigit()):
                    continue
                fields = line.split()
                if int(fields[0][3:]) in cpus:
                    ticks = [int(v) for v in fields[1:9]]
                    busy += sum(ticks) - ticks[3] - ticks[4]      # all but idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class FreeCores:
    """free() is how many of this process's CPUs other processes left idle since the previous call:
    the CPUs' busy time (/proc/stat) minus this process's own CPU time, over the wall time between the
    two calls. Idle spinning of our own BLAS threads counts as ours, so it never reads as contention."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:       # not Linux
            self.cpus = list(range(os.cpu_count() or 1))
        self._last = self._sample()

    def _sample(self):
        times = os.times()
        return self.clock(), _busy_seconds(set(self.cpus)), times.user + times.system

    def free(self):
        """Cores left idle by others since the last call (at least 1); every core where /proc cannot tell."""
        now = self._sample()
        (t0, busy0, ours0), self._last = self._last, now
        cores, elapsed = len(self.cpus), now[0] - t0
        if busy0 is None or now[1] is None or elapsed <= 0:
            return cores
        others = max(0.0, (now[1] - busy0) - (now[2] - ours0)) / elapsed
        return max(1, min(cores, round(cores - others)))


def free_cores(seconds=0.2):
    """The cores other processes leave idle, measured over `seconds` (train.py's start-up look)."""
    monitor = FreeCores()
    time.sleep(seconds)
    return monitor.free()


def auto_applies(threads, environ=None):
    """Whether the auto policy sets this run's thread count: --threads auto, or neither --threads nor a
    thread variable in the environment (an MPI launch has them set by training.mpi_env.share_cores)."""
    environ = os.environ if environ is None else environ
    return threads == AUTO or (threads is None and not any(name in environ for name in THREAD_VARIABLES))


def prepare_auto(environ=None):
    """Before NumPy loads, under the auto policy: without threadpoolctl (the extra 'threads') the count
    cannot change once the pools exist, so they start at the cores free now; with it, they start at
    every core and AutoThreads limits them during the run. Returns the count set, or None."""
    environ = os.environ if environ is None else environ
    if importlib.util.find_spec("threadpoolctl") is not None:
        return None
    count = str(free_cores())
    for name in THREAD_VARIABLES:
        environ[name] = count
    return int(count)


class AutoThreads:
    """Keeps the BLAS/OpenMP pools at the cores other processes leave free, re-measured every `every`
    seconds (call check() between steps). BLAS threads that find no free core spin and slow everything
    down: a LeNet-300-100 train step beside 2 busy processes took 70-80 ms with 2 OpenBLAS threads and
    5-7 ms with 1, while 2 Numba threads did no harm (4.9 ms; measured on the 2-core machine,
    2026-12-02). `counts` holds every count used. Needs threadpoolctl (the extra 'threads') to change
    the pools of a running process; without it check() changes nothing."""

    def __init__(self, every=RECHECK_SECONDS, measure=None, clock=time.monotonic, limit=None):
        self.every, self.clock = every, clock
        self.measure = measure if measure is not None else FreeCores(clock).free
        self.limit = limit if limit is not None else _limit_threads()
        self.current, self.counts, self._limiter = None, [], None
        self._next = clock() + every      # the first look needs an interval to measure over

    def check(self):
        """Re-measure when `every` seconds have passed; returns the count in force."""
        now = self.clock()
        if now < self._next:
            return self.current
        self._next = now + self.every
        count = self.measure()
        covers = getattr(self._limiter, "covers", None)
        stale = covers is not None and not covers()     # a pool loaded after the limit was applied
        if (count != self.current or stale) and self.limit is not None:
            if self._limiter is not None:
                self._limiter.restore()
            self._limiter, self.current = self.limit(count), count
            if count not in self.counts:
                self.counts.append(count)
        return self.current

    def close(self):
        """Give the pools back the limits they had before."""
        if self._limiter is not None:
            self._limiter.restore()
            self._limiter = None


def _limit_threads():
    """engine.threads.limit_threads when threadpoolctl is installed, else None."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return None
    from engine.threads import limit_threads
    return limit_threads


def thread_count(args):
    """The BLAS/OpenMP thread count this process started with: --threads N, else OMP_NUM_THREADS, else
    None (the libraries' default: every core; also under --threads auto, whose count moves)."""
    if getattr(args, "threads", None) not in (None, AUTO):
        return int(args.threads)
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def restore_threads(args, owns_process):
    """On --resume: run with the thread count the checkpoint records (args.saved_threads).

    An explicit different --threads is kept, with a warning: floating-point sums split over another
    number of threads round differently, so the resumed run is not bit-exact. Otherwise, when this
    process owns its interpreter (train.py), it restarts itself with the recorded count, since BLAS
    reads it only at start-up; a caller of main(argv) gets the warning instead."""
    if not args.resume or "saved_threads" not in vars(args):
        return
    saved, current = args.saved_threads, thread_count(args)
    if saved == current:
        return
    def describe(n):
        return f"{n} thread{'s' if n > 1 else ''}" if n else "the libraries' default thread count"

    if "threads" in args.explicit or not owns_process or os.environ.get(_RESTARTED):
        print(f"train.py: warning: the checkpoint was written with {describe(saved)}, this run uses "
              f"{describe(current)}: results will not be bit-exact with an uninterrupted run", file=sys.stderr)
        return
    env = dict(os.environ, **{_RESTARTED: "1"})
    for name in THREAD_VARIABLES:
        env.pop(name, None)
        if saved:
            env[name] = str(saved)
    print(f"train.py: resuming with {describe(saved)}, as the checkpoint records", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
