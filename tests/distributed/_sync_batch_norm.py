"""Under `mpiexec -n 2`: BatchNorm synchronised over the ranks, each rank holding half of a batch, against one
BatchNorm on the whole batch (whose gradients tests/layers/test_norm.py checks by finite differences):
outputs, input and parameter gradients, running statistics. Rank 0 prints the largest differences as JSON.

usage: mpiexec -n 2 python tests/distributed/_sync_batch_norm.py
"""
import json

import numpy as np


def forward_backward(layer, x, weights):
    import engine
    import engine.ops as F
    inputs = engine.Tensor(x, requires_grad=True)
    output = layer(inputs)
    F.mean(output * engine.Tensor(weights)).backward()
    return {"output": output.data, "input grad": inputs.grad, "weight grad": layer.weight.grad,
            "bias grad": layer.bias.grad, "running mean": layer.running_mean, "running var": layer.running_var}


def compare(make, shape, group, rng):
    x, weights = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    whole = make()
    whole.astype(np.float64)
    want = forward_backward(whole, x, weights)
    synced = group.prepare_model(make())
    synced.astype(np.float64)
    rows = slice(group.rank * shape[0] // group.size, (group.rank + 1) * shape[0] // group.size)
    got = forward_backward(synced, x[rows], weights[rows])
    share = (rows.stop - rows.start) / shape[0]     # the weight a rank's gradients get when averaged
    got["input grad"] = got["input grad"] * share
    got["weight grad"] = group.sum_array(got["weight grad"] * share)
    got["bias grad"] = group.sum_array(got["bias grad"] * share)
    want["output"], want["input grad"] = want["output"][rows], want["input grad"][rows]
    differences = {k: float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in want}
    return max(group.comm.allgather(differences), key=lambda d: max(d.values()))


def main():
    from mpi4py import MPI

    from layers import BatchNorm1d, BatchNorm2d
    from training.distributed import MPIGroup
    group = MPIGroup(MPI, MPI.COMM_WORLD)
    try:
        rng = np.random.default_rng(0)
        results = {"BatchNorm2d": compare(lambda: BatchNorm2d(3), (6, 3, 4, 4), group, rng),
                   "BatchNorm1d": compare(lambda: BatchNorm1d(2), (10, 2, 3), group, rng)}
    finally:
        group.close()
    if group.is_root:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
