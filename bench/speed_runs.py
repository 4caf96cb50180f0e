"""Consecutive bench/speed.py runs side by side: each row's ratio in every run, its target, met in all.

Usage: python bench/speed_runs.py run1 run2 run3 [--results bench/results]
Reads speed-<label>.json for each label (as `python bench/speed.py --label <label>` writes them) and
prints one Markdown table. A target holds only when every run meets it; a row missing from a run
reads "-" there and cannot hold. Below the table: each run's load, and the machine, or each run's
when the runs name different CPUs.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (row text as speed.py writes it, our side's label, the highest ours / anchor ratio that meets it)
TARGETS = [
    ("LeNet-300-100 train step, batch 128, SGD", "engine", 0.8),
    ("LeNet-5 train step, batch 128, SGD", "engine", 0.8),
    ("LeNet-5 inference (eval, no graph), batch 1", "engine", 1.0),
    ("LeNet-5 inference (eval, no graph), batch 128", "engine", 1.0),
    ("LSTM train step, hidden 128, T=100, batch 50", "engine", 1.0),
    ("GRU train step, hidden 128, T=100, batch 50", "engine", 0.8),
    ("FWT + IFWT, batch 128, n=512, L=6, J=8, zero mode", "kernel (numba)", 0.5),
    ("Tucker rebuild 10x12x14x14x10 from a 4^5 core", "kernel (numpy)", 0.6),
]


def load_run(results, label):
    path = os.path.join(results, f"speed-{label}.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"speed_runs.py: cannot read {path}: {exc.__class__.__name__}", file=sys.stderr)
        raise SystemExit(2)


def ratios(run):
    """{(row, ours label): ratio} of one run."""
    return {(row["what"], row["ours"]): row["ratio"] for row in run["rows"] if row.get("ratio") is not None}


def table(runs, labels):
    by_run = [ratios(run) for run in runs]
    header = "| row | " + " | ".join(labels) + " | target | met in every run |"
    lines = [header, "|---|" + "---:|" * len(labels) + "---:|---|"]
    for what, ours, target in TARGETS:
        values = [r.get((what, ours)) for r in by_run]
        cells = " | ".join("-" if v is None else f"{v:.2f}" for v in values)
        met = all(v is not None and v <= target for v in values)
        name = what if ours == "engine" else f"{what}, {ours}"
        lines.append(f"| {name} | {cells} | <= {target:g} | {'yes' if met else 'NO'} |")
    loads = ", ".join(f"{label} {run['meta'].get('load_1min', float('nan')):.2f}" for label, run in zip(labels, runs))
    return "\n".join(lines) + f"\n\n1-minute load average at the end of each run: {loads}." + machines(runs, labels)


def machines(runs, labels):
    """The machine the runs name (a line; the last run's words), or each run's when their CPUs differ:
    ratios against PyTorch move with the CPU and its BLAS, so runs from two hosts are not one triple."""
    named = [run["meta"].get("machine", "not recorded") for run in runs]
    if len({machine.split(";")[0] for machine in named}) == 1:     # the CPU, its cores and memory
        return f"\nMachine: {named[-1]}."
    each = "; ".join(f"{label}: {machine}" for label, machine in zip(labels, named))
    return f"\nThe runs name different machines, so they are not consecutive runs of one: {each}."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args(argv)
    print(table([load_run(args.results, label) for label in args.labels], args.labels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
