"""Under `mpiexec -n 2`: train every case with --distributed mpi and (on one rank) alone with the same
global batch, then write max relative differences and rank digests as JSON for test_equivalence.py.

usage: mpiexec -n 2 python tests/distributed/_equivalence.py WORK_DIR RESULT.json
"""
import json
import os
import sys

import numpy as np

STEPS = ["--epochs", "1", "--steps", "20"]
COMPRESSORS = {
    "none": [],
    "wavelet": ["--compress", "wavelet"],
    "basis": ["--compress", "basis"],
    "tucker": ["--compress", "tucker", "--tucker-ranks", "2", "--tucker-order", "3"],
    "scada": ["--compress", "scada", "--scada-k", "3", "--tucker-ranks", "2", "--tucker-order", "3"],
    "lowrank": ["--compress", "lowrank", "--lowrank-tau", "0.01"],
}
# basis converts Conv2d layers only (a GRU has none); wavelet trains recurrent cells and square Dense
# layers only (LeNet-5 has none): each of them has one model here
CASES = {f"lenet5-{name}-float64": ("lenet5", flags + ["--dtype", "float64"])
         for name, flags in COMPRESSORS.items() if name != "wavelet"}
CASES.update({f"gru-{name}-float64": ("gru", flags + ["--dtype", "float64"])
              for name, flags in COMPRESSORS.items() if name != "basis"})
# float32 with SGD + momentum: Adam divides each gradient by its own running magnitude, so a gradient that
# is rounding noise in float32 (one whose exact value is 0) moves its weight by a full step of random sign
FLOAT32 = ["--dtype", "float32", "--optimizer", "momentum", "--lr", "0.01"]
CASES.update({"lenet5-none-float32": ("lenet5", FLOAT32), "gru-none-float32": ("gru", FLOAT32),
              "lenet5-basis-batchnorm-float64": ("lenet5", COMPRESSORS["basis"] + ["--basis-batch-norm",
                                                                                   "--dtype", "float64"]),
              # 23 examples in batches of 10: every third batch has 3, split 1 + 2 and weighted so
              "lenet5-short-last-batch-float64": ("lenet5", ["--subset", "23", "--batch-size", "10",
                                                             "--dtype", "float64"])})


def max_relative_difference(params, reference):
    """max |a - b| over every parameter value / max |b| over every parameter value (the model's scale:
    a tensor whose exact gradient is zero, such as a bias a later BatchNorm cancels, holds rounding noise,
    which is no scale to measure against)."""
    if set(params) != set(reference) or any(params[k].shape != b.shape for k, b in reference.items()):
        return float("inf")
    worst = max(float(np.max(np.abs(params[k] - b), initial=0.0)) for k, b in reference.items())
    scale = max(float(np.max(np.abs(b), initial=0.0)) for b in reference.values())
    return worst / (scale or 1.0)


def main(work, result_path):
    from mpi4py import MPI

    import training.loop
    from tests.distributed._mpi import GRU_FLAGS, lenet_flags
    from tests.test_train_distill import tiny_mnist
    from training.cli import main as train_main
    from training.distributed import parameter_digest

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mnist = os.path.join(work, "mnist")
    if rank == 0:
        import pathlib
        tiny_mnist(pathlib.Path(mnist))
    comm.Barrier()
    trained = []
    report = training.loop.write_report

    def recording(run, model):
        trained.append(model)
        return report(run, model)

    training.loop.write_report = recording
    base = {"lenet5": lenet_flags(mnist), "gru": GRU_FLAGS}

    def train(name, mode):
        model_name, flags = CASES[name]
        status = train_main(base[model_name] + STEPS + flags + ["--distributed", mode,
                                                                "--out", os.path.join(work, f"{name}-{mode}")])
        if status != 0:
            return status, None
        return status, {k: np.array(p.data, copy=True) for k, p in trained[-1].named_parameters()}

    together, alone = {}, {}
    for i, name in enumerate(CASES):
        status, params = train(name, "mpi")
        together[name] = {"status": status, "params": params if rank == 0 else None,
                          "digest": parameter_digest(trained[-1]) if status == 0 else None}
        if i % size == rank:
            alone[name] = train(name, "none")
    gathered_together = comm.gather(together, root=0)
    gathered_alone = comm.gather(alone, root=0)
    if rank == 0:
        singles = {k: v for part in gathered_alone for k, v in part.items()}
        results = {}
        for name in CASES:
            mine, single = together[name], singles[name]
            ok = mine["status"] == 0 and single[0] == 0
            results[name] = {
                "status": [mine["status"], single[0]],
                "max_relative_difference": max_relative_difference(mine["params"], single[1]) if ok else None,
                "digests": [part[name]["digest"] for part in gathered_together]}
        with open(result_path, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
