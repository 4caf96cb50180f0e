"""Helpers of the MPI tests: the skip marker, mpiexec in a subprocess, the tiny run settings."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def _missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if _mpiexec() is None:
        return "no mpiexec on PATH or beside the Python interpreter (pip install -e '.[mpi]')"
    return None


requires_mpi = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def environment(extra=None):
    """One thread per rank (the test machine is small), the repository importable, plus `extra`."""
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", **(extra or {}))


def command(n, *args):
    """The argv of `mpiexec -n n python args...`."""
    return [_mpiexec(), "-n", str(n), sys.executable, *map(str, args)]


def mpiexec(n, *args, env=None, timeout=300):
    """Run `mpiexec -n n python args...` from the repository root; the CompletedProcess (text)."""
    return subprocess.run(command(n, *args), cwd=ROOT, env=environment(env), capture_output=True, text=True,
                          timeout=timeout)


def train_command(n, *flags):
    return command(n, os.path.join(ROOT, "train.py"), *flags) if n else \
        [sys.executable, os.path.join(ROOT, "train.py"), *map(str, flags)]


# a GRU on the adding problem small enough for 2 shared cores
GRU_FLAGS = ["--task", "adding", "-T", "6", "--hidden", "8", "--batch-size", "8", "--no-progress",
             "--log-every", "0"]


def lenet_flags(mnist_dir):
    return ["--task", "mnist", "--data-dir", str(mnist_dir), "--model", "lenet5", "--batch-size", "8",
            "--eval-batch-size", "8", "--no-progress", "--log-every", "0"]


def descendants(pid):
    """Process ids below `pid` (Linux /proc), children first."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def rank_process(pid, rank):
    """The process id of MPI rank `rank` (a Python process) below launcher `pid`; None when not started."""
    for child in descendants(pid):
        try:
            with open(f"/proc/{child}/environ", "rb") as fh:
                variables = fh.read().split(b"\0")
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                program = fh.read().split(b"\0")[0]
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in variables and b"python" in os.path.basename(program):
            return child
    return None
