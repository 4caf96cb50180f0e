"""Data-parallel scaling: examples/s for N = 1 and 2 MPI processes, the allreduce share of a step, and a
projection of efficiency at 8 and 64 processes on 10 and 100 Gb/s networks.

Usage: python bench/scaling.py [--models lenet5,lstm] [--batch 64] [--steps 30] [--quick] [--out bench/results]
Each N runs `mpiexec -n N python bench/scaling.py --worker ...` with cores/N threads per process and the
global batch fixed (N processes split it). Writes scaling.md and scaling.json to --out (--quick: a smoke
run with tiny settings that prints the table and writes nothing unless --out is given).

The projection (weak scaling: every process keeps the measured per-process batch; no overlap of the
allreduce with backward, as in training/distributed.py):
    t_allreduce(N) = 2 (N - 1) / N * S * (1 / B_link + 1 / B_local) + 2 (N - 1) * latency
    efficiency(N)  = t_compute / (t_compute + t_allreduce(N))
S: gradient bytes per step; B_link: the network's bandwidth (10 or 100 Gb/s); B_local: the allreduce
bandwidth measured here between 2 processes (its copy and sum cost, which a network adds to);
latency per message: 25 us at 10 Gb/s (TCP Ethernet), 3 us at 100 Gb/s (RDMA); the ring allreduce sends
2 (N - 1) messages of S / N bytes. t_compute: the measured compute time of one step at N = 1.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import machine_description, usable_cores  # noqa: E402

NETWORKS = {"10 Gb/s": (10e9 / 8, 25e-6), "100 Gb/s": (100e9 / 8, 3e-6)}
PROJECTED_RANKS = (8, 64)


def build(name, batch, rng):
    """(model, inputs, targets, loss function) of one global batch of random data."""
    import engine.ops as F
    from layers.models import lenet5, lstm_model
    if name == "lenet5":
        model = lenet5()
        return (model, rng.standard_normal((batch, 1, 28, 28)).astype("float32"),
                rng.integers(0, 10, batch), F.cross_entropy)
    if name == "lstm":
        model = lstm_model(n_in=2, hidden=128, n_out=1)
        targets = rng.standard_normal((batch, 1)).astype("float32")
        return model, rng.standard_normal((batch, 50, 2)).astype("float32"), targets, F.mse_loss
    raise SystemExit(f"scaling.py: unknown model {name!r}; valid: lenet5, lstm")


def worker(args):
    """One MPI process: timed training steps; rank 0 prints one JSON line."""
    import numpy as np
    from mpi4py import MPI

    from engine import Tensor
    from engine.optim import SGD
    from training.distributed import FlatGradients, MPIGroup

    group = MPIGroup(MPI, MPI.COMM_WORLD)
    try:
        model, inputs, targets, loss_fn = build(args.model, args.batch, np.random.default_rng(0))
        inputs, targets = group.local_batch(inputs, targets)
        optimizer = SGD(list(model.parameters()), lr=0.01)
        compute = reduce = 0.0
        for step in range(args.warmup + args.steps):
            started = time.perf_counter()
            optimizer.zero_grad()
            loss = loss_fn(model(Tensor(inputs)), targets)
            loss.backward()
            backward_done = time.perf_counter()
            group.average_gradients(optimizer, float(loss.item()), 0.0, False)
            reduced = time.perf_counter()
            optimizer.step()
            if step >= args.warmup:
                compute += (backward_done - started) + (time.perf_counter() - reduced)
                reduce += reduced - backward_done
        flat = FlatGradients(list(model.parameters())).buffers[0]
        group.comm.Barrier()
        started = time.perf_counter()
        for _ in range(args.steps):
            group.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        allreduce_seconds = (time.perf_counter() - started) / args.steps
        if group.is_root:
            step_seconds = (compute + reduce) / args.steps
            print(json.dumps({"model": args.model, "processes": group.size, "batch": args.batch,
                              "threads": int(os.environ.get("OMP_NUM_THREADS", "0")),
                              "examples_per_second": args.batch / step_seconds, "step_seconds": step_seconds,
                              "compute_seconds": compute / args.steps, "allreduce_share": reduce / (compute + reduce),
                              "gradient_bytes": int(flat.nbytes), "allreduce_seconds": allreduce_seconds}))
    finally:
        group.close()


def measure(model, processes, args):
    threads = str(max(1, usable_cores() // processes))
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               NUMBA_NUM_THREADS=threads)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    command = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(processes), sys.executable,
               os.path.abspath(__file__), "--worker", "--model", model, "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"scaling.py: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def projection(single, pair):
    """Projected efficiency per network and process count (the model in the module docstring)."""
    size, compute = single["gradient_bytes"], single["compute_seconds"]
    # the 2-process allreduce moves 2 (N - 1) / N * S = S bytes per rank: S / t is its bandwidth
    local_bandwidth = size / pair["allreduce_seconds"]
    rows = {}
    for network, (bandwidth, latency) in NETWORKS.items():
        for n in PROJECTED_RANKS:
            seconds = 2 * (n - 1) / n * size * (1 / bandwidth + 1 / local_bandwidth) + 2 * (n - 1) * latency
            rows[f"{n} on {network}"] = compute / (compute + seconds)
    return local_bandwidth, rows


def table(results):
    lines = ["| model | N | threads/process | examples/s | step ms | allreduce share | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for model, (single, pair) in results.items():
        for row in (single, pair):
            lines.append(f"| {model} | {row['processes']} | {row['threads']} | {row['examples_per_second']:.0f} | "
                         f"{1e3 * row['step_seconds']:.1f} | {100 * row['allreduce_share']:.1f}% | "
                         f"{row['examples_per_second'] / single['examples_per_second']:.2f}x |")
    lines += ["", "| model | gradient MB | measured allreduce GB/s (2 processes) | "
              + " | ".join(f"efficiency {n} on {net}" for net in NETWORKS for n in PROJECTED_RANKS) + " |",
              "|---|---|---|" + "---|" * (len(NETWORKS) * len(PROJECTED_RANKS))]
    for model, (single, pair) in results.items():
        bandwidth, rows = projection(single, pair)
        lines.append(f"| {model} | {single['gradient_bytes'] / 1e6:.2f} | {bandwidth / 1e9:.2f} | "
                     + " | ".join(f"{100 * value:.0f}%" for value in rows.values()) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet5,lstm")
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 8, 3 steps, nothing written")
    parser.add_argument("--out", default=None, help="folder for scaling.md/json (default bench/results)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.batch, args.steps, args.warmup = 8, 3, 1
    load_before = os.getloadavg()[0]
    results = {model: (measure(model, 1, args), measure(model, 2, args)) for model in args.models.split(",")}
    load = (f"Machine: {machine_description()}; 1-minute load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after.")
    text = table(results) + "\n\n" + load
    print(text)
    out = args.out or (None if args.quick else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "scaling.md"), "w") as fh:
            fh.write(f"# Data-parallel scaling (batch {args.batch} global, {args.steps} steps)\n\n{text}\n")
        with open(os.path.join(out, "scaling.json"), "w") as fh:
            json.dump({model: list(pair) for model, pair in results.items()}, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
