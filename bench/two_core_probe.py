"""Whether both cores are there: one train step on 1 and on 2 threads, sampled in turn, over time.

Usage: python bench/two_core_probe.py [--seconds 60] [--sample-time 0.1] [--quick] [--out DIR]

On a shared virtual machine the second core can be busy with work the guest cannot see (no steal
time shows in /proc/stat), and then two threads run no faster than one. A 2-thread timing taken in
such a spell measures the host, not the code, and the two sides of a comparison timed a second apart
can land in different spells. This script alternates 1- and 2-thread samples of the LeNet-300-100
train step (batch 128, SGD, as bench/speed.py times it) for --seconds and reports each pair's
2-thread / 1-thread time; a pair counts as "two cores" when that ratio is at most TWO_CORE_RATIO.
The summary gives the share of such pairs, how often the state changed, and the share per window
of WINDOW_SECONDS. Writes two_core_probe.md and .json to --out (default bench/results);
--quick: two seconds, nothing written unless --out is given.
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.report_files import publish, run_stamp  # noqa: E402
from bench.timing import machine_description  # noqa: E402

# With both cores at work the step ran at 0.57-0.78 of its 1-thread time here, without them at
# 0.85-1.18 (5th-95th percentiles; bench/results/two_core_probe-1654.md and two_core_probe.md).
TWO_CORE_RATIO = 0.8
WINDOW_SECONDS = 5.0


def summarise(pairs, window=WINDOW_SECONDS):
    """The summary of (seconds since start, 1-thread s, 2-thread s) pairs: medians, the share of pairs
    with two cores at work, the number of changes between the two states, and that share per window."""
    if not pairs:
        raise ValueError("two_core_probe: no samples (is --seconds at least --sample-time?)")
    two = [two_s <= TWO_CORE_RATIO * one_s for _, one_s, two_s in pairs]
    windows = {}
    for (at, _, _), ok in zip(pairs, two):
        windows.setdefault(int(at // window), []).append(ok)
    return {"pairs": len(pairs),
            "one_thread_median_s": statistics.median(p[1] for p in pairs),
            "two_thread_median_s": statistics.median(p[2] for p in pairs),
            "two_core_share": sum(two) / len(two),
            "changes": sum(a != b for a, b in zip(two, two[1:])),
            "windows": [{"from_s": k * window, "pairs": len(v), "two_core_share": sum(v) / len(v)}
                        for k, v in sorted(windows.items())]}


def to_markdown(summary, meta):
    lines = [f"Machine: {meta['machine']}; 1-minute load average before: {meta['load_before']:.2f}; "
             f"date: {meta['date']}", f"Command: `{meta['command']}`", "",
             f"{summary['pairs']} pairs of samples (1 thread, then 2), each at least {meta['sample_time']} s "
             f"of LeNet-300-100 train steps. Median step: {summary['one_thread_median_s'] * 1e3:.2f} ms on "
             f"1 thread, {summary['two_thread_median_s'] * 1e3:.2f} ms on 2. Pairs where 2 threads took at most "
             f"{TWO_CORE_RATIO} of the 1-thread time (two cores at work): {summary['two_core_share']:.0%}; "
             f"changes between the two states: {summary['changes']}.", "",
             "| from (s) | pairs | two cores at work |", "|---:|---:|---:|"]
    lines += [f"| {w['from_s']:.0f} | {w['pairs']} | {w['two_core_share']:.0%} |" for w in summary["windows"]]
    return "\n".join(lines) + "\n"


def _step():
    """The LeNet-300-100 train step of bench/speed.py, ready to call."""
    import numpy as np
    import engine.ops as F
    from engine import Tensor
    from bench.speed import _ours_train_step, lenet_step_specs
    _, build, shape, _ = lenet_step_specs()[0]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, shape[0])
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    return _ours_train_step(build(), x, lambda y: F.cross_entropy(y, labels))


def probe(seconds, sample_time):
    """(seconds since start, 1-thread s, 2-thread s) per pair of samples, for `seconds`."""
    from bench.timing import median_seconds
    from engine.threads import limit_threads
    step = _step()
    for _ in range(20):
        step()
    pairs, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        at = time.perf_counter() - start
        times = []
        for n in (1, 2):
            with limit_threads(n):
                times.append(median_seconds(step, repeats=1, warmup=0, min_time=sample_time, settle=0.0))
        pairs.append((at, times[0], times[1]))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--sample-time", type=float, default=0.1, help="seconds of steps in each sample")
    p.add_argument("--quick", action="store_true", help="two seconds; nothing written unless --out")
    p.add_argument("--out", default=None, help="folder for two_core_probe.md/json (default bench/results)")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.sample_time <= 0:
        p.error(f"--seconds ({args.seconds}) and --sample-time ({args.sample_time}) must be positive")
    load_before = os.getloadavg()[0]
    pairs = probe(2.0 if args.quick else args.seconds, args.sample_time)
    summary = summarise(pairs)
    meta = {"machine": machine_description(), "load_before": load_before,
            "sample_time": args.sample_time, **run_stamp("two_core_probe.py", argv)}
    publish(args, ROOT, "two_core_probe", "Two cores or one: the LeNet-300-100 step on 1 and 2 threads in turn",
            to_markdown(summary, meta), {"meta": meta, "summary": summary, "pairs": pairs})


if __name__ == "__main__":
    main()
