"""Under mpiexec: train.py whose rank 1 raises at its third step (the fault-handling test).

usage: mpiexec -n 2 python tests/distributed/_failing_rank.py TRAIN_FLAGS...
"""
import sys

from mpi4py import MPI

from training.cli import main
from training.loop import Run

original_step = Run.train_step


def failing_step(self, *args):
    if MPI.COMM_WORLD.Get_rank() == 1 and self.global_step == 2:
        raise RuntimeError("injected failure on rank 1")
    return original_step(self, *args)


if __name__ == "__main__":
    Run.train_step = failing_step
    sys.exit(main(sys.argv[1:]))
