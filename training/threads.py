"""The thread count of a run: recorded in its checkpoint, restored on --resume (a changed count only warns)."""
import os
import sys

# the variables train.py sets from --threads before NumPy loads (BLAS and OpenMP read them once, at import)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_RESTARTED = "COMPACTNET_THREADS_RESTORED"


def thread_count(args):
    """The BLAS/OpenMP thread count this process runs with: --threads, else OMP_NUM_THREADS, else None
    (the libraries' default: every core)."""
    if getattr(args, "threads", None):
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
