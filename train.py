#!/usr/bin/env python3
"""Command line: train a task x model x compressor and write metrics.json, log.csv, checkpoint and summary.

Run ``python train.py`` for the built-in default (the adding problem, no download),
``python train.py --help`` for every flag. See README.md ("train.py") for the outputs. The run itself
lives in the training package; this file only sets the thread count before NumPy loads
(under mpiexec, by default, each rank's share of the cores).
"""
import os
import sys

from training.mpi_env import share_cores
from training.threads import AUTO, THREAD_VARIABLES, auto_applies, prepare_auto  # import no NumPy


def _threads_from_argv(argv):
    """Apply --threads before NumPy loads its BLAS (it reads these variables once, at import): a count
    as it is; auto (also the default) through training.threads.prepare_auto."""
    for i, word in enumerate(argv):
        value = word.split("=", 1)[1] if word.startswith("--threads=") else (
            argv[i + 1] if word == "--threads" and i + 1 < len(argv) else None)
        if value == AUTO:
            prepare_auto()
            return
        if value is not None and value.isdigit() and int(value) > 0:
            for name in THREAD_VARIABLES:
                os.environ[name] = value
            return
    if share_cores(THREAD_VARIABLES) is None and auto_applies(None):   # under mpiexec: each rank's share
        prepare_auto()


if __name__ == "__main__":
    _threads_from_argv(sys.argv[1:])

from training.cli import main  # noqa: E402  (after --threads took effect)

if __name__ == "__main__":
    sys.exit(main())
