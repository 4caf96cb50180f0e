"""Run one train.py command over several seeds and summarise it: mean, std and min of valid and test.

Usage:
    python bench/seeds.py --root runs/seeds/lenet5-tucker [--seeds 0,1,2 | -n 3] [--threads 1]
                          [--label NAME] [--collect-only] -- <train.py options without --seed/--out>

Each seed runs `train.py <options> --seed S --out <root>/seed-S --threads T`; then every run's
metrics.json is read and <root>/seeds.json and <root>/seeds.md (one Markdown row under its header)
are written. The standard deviation is the sample one (ddof=1; none for a single seed). Runs whose
metrics.json has no validation metric report "-" for it. --collect-only runs nothing and summarises
the run folders already there.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.selection import chosen_test_value, higher_is_better, metric_name, read_metrics, valid_value  # noqa: E402

STD_NOTE = "sample standard deviation (ddof=1) over seeds"
# compression figure -> where it sits in metrics.json
FIGURES = {"params": ("params", "compressed"), "params_ratio": ("params", "ratio"),
           "learnable": ("params", "learnable"), "flops_ratio": ("flops", "ratio"),
           "bytes_ratio": ("bytes", "ratio"), "quantized_bytes_ratio": ("quantized", "ratio")}
SAME_ACROSS_SEEDS = ("task", "model", "compressor")
RESERVED_FLAGS = ("--seed", "--out", "--resume", "--threads")


def describe(values):
    """{n, mean, std (ddof=1, None for one value), min} of the numbers in `values` (None skipped)."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return None
    std = statistics.stdev(numbers) if len(numbers) > 1 else None
    return {"n": len(numbers), "mean": statistics.fmean(numbers), "std": std, "min": min(numbers)}


def figure(metrics, path):
    value = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def aggregate(runs):
    """Summary of finished runs given as {seed: metrics dict}; a pure function of its input."""
    if not runs:
        raise ValueError("seeds: no finished run to summarise")
    first = next(iter(runs.values()))
    for key in SAME_ACROSS_SEEDS + ("metric",):
        values = {json.dumps(m.get(key) if key != "metric" else metric_name(m)) for m in runs.values()}
        if len(values) > 1:
            raise ValueError(f"seeds: the runs differ in {key} ({', '.join(sorted(values))}); "
                             "they are not one command over seeds")
    quantized = [m["quantized"] for m in runs.values() if isinstance(m.get("quantized"), dict)]
    summary = {key: first.get(key) for key in SAME_ACROSS_SEEDS}
    summary.update({
        "metric": metric_name(first), "higher_is_better": higher_is_better(first),
        "seeds": sorted(runs), "std": STD_NOTE,
        "valid": describe(valid_value(m) for m in runs.values()),
        "test": describe(chosen_test_value(m) for m in runs.values()),
        "figures": {name: describe(figure(m, path) for m in runs.values()) for name, path in FIGURES.items()},
    })
    for split in ("valid", "test"):
        summary[f"{split}_other"] = other_metrics(runs, split, summary["metric"])
    if quantized:
        name = summary["metric"]
        summary["quantized_test"] = describe(q.get("test", {}).get(name) for q in quantized)
    return summary


def other_metrics(runs, split, primary):
    """{name: stats} of the split's other numbers that every run reports (the copy task's recall
    accuracy beside its cross-entropy, MNIST's loss beside its accuracy)."""
    def numbers(metrics):
        values = metrics.get(split) or {}
        return {k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    names = set.intersection(*(numbers(m) for m in runs.values())) - {primary}
    return {name: describe(m[split][name] for m in runs.values()) for name in sorted(names)}


def format_metric(value, name):
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if name == "accuracy" else f"{value:.4g}"


def format_stats(stats, name):
    """'mean +- std (min m)' of a metric, or '-' when the runs have none."""
    if stats is None:
        return "-"
    spread = "" if stats["std"] is None else " +- " + (
        f"{100 * stats['std']:.2f}" if name == "accuracy" else f"{stats['std']:.2g}")
    return f"{format_metric(stats['mean'], name)}{spread} (min {format_metric(stats['min'], name)})"


def format_figure(stats, suffix=""):
    if stats is None:
        return "-"
    mean = stats["mean"]
    text = f"{mean:,.0f}" if abs(mean) >= 1000 or float(mean).is_integer() else f"{mean:.1f}"
    return text + suffix


MARKDOWN_HEADER = ("| run | seeds | valid mean +- std (min) | test mean +- std (min) | params | ratio | "
                   "bytes ratio | 8-bit ratio | FLOPs ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def markdown_row(summary, label):
    """One table row under MARKDOWN_HEADER; std is the sample standard deviation."""
    name, figures = summary["metric"], summary["figures"]
    return (f"| {label} | {len(summary['seeds'])} | {format_stats(summary['valid'], name)} | "
            f"{format_stats(summary['test'], name)} | {format_figure(figures['params'])} | "
            f"{format_figure(figures['params_ratio'], 'x')} | {format_figure(figures['bytes_ratio'], 'x')} | "
            f"{format_figure(figures['quantized_bytes_ratio'], 'x')} | "
            f"{format_figure(figures['flops_ratio'], 'x')} |")


def seed_list(text):
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0, got {text!r}")
    return seeds


def split_command(argv):
    """(this script's own arguments, the train.py options after '--')."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    return argv[:split], argv[split + 1:]


def parse_args(argv):
    own, command = split_command(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="folder that receives one run folder per seed")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=seed_list, help="comma list of seeds (default 0,1,2)")
    which.add_argument("-n", type=int, help="seeds 0..n-1")
    p.add_argument("--threads", type=int, default=1, help="train.py --threads (0 leaves it unset)")
    p.add_argument("--label", default=None, help="the Markdown row's name (default: the root's name)")
    p.add_argument("--collect-only", action="store_true", help="run nothing; summarise the runs there")
    args = p.parse_args(own)
    if args.n is not None and args.n < 1:
        p.error(f"-n must be >= 1, got {args.n}")
    args.seeds = args.seeds or list(range(args.n if args.n is not None else 3))
    reserved = [w for w in command if w.split("=")[0] in RESERVED_FLAGS]
    if reserved:
        p.error(f"the train.py options must not set {', '.join(reserved)}: seeds.py sets them per run")
    if not command and not args.collect_only:
        p.error("give the train.py options after '--'")
    args.command = command
    args.label = args.label or os.path.basename(os.path.normpath(args.root))
    return args


def with_seed(command, seed):
    """The command with every `{seed}` replaced by the seed (say, `--init-from runs/dense/seed-{seed}`,
    so that each seed starts from its own dense run)."""
    return [word.replace("{seed}", str(seed)) for word in command]


def train_arguments(command, out, threads, seed):
    """train.py's arguments for one run of `command` with `seed` into `out`."""
    # --overwrite: a rerun into the same root replaces that seed's earlier run (train.py clears only its files)
    arguments = [*with_seed(command, seed), "--seed", str(seed), "--out", out, "--overwrite"]
    return arguments + (["--threads", str(threads)] if threads else [])


def finished_run(out, command, threads, seed):
    """The metrics of the run in `out` when it finished with exactly this command, else None: a folder that
    another setting left (say, before the candidates changed) is never taken for this one."""
    from bench.selection import read_metrics
    metrics = read_metrics(out)
    expected = "python train.py " + " ".join(train_arguments(command, out, threads, seed))
    return metrics if metrics is not None and metrics.get("command") == expected else None


def run_train(command, out, threads, seed):
    """Run `train.py <command> --seed S --out OUT [--threads T]`; its exit status. The output goes to
    OUT.stdout.txt beside the run folder, so that the run folder holds only what train.py writes.
    `{seed}` in the command stands for the seed."""
    stale = os.path.join(out, "metrics.json")
    if os.path.exists(stale):          # an earlier run's file would hide this run's failure
        os.remove(stale)
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *train_arguments(command, out, threads, seed)]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out.rstrip("/") + ".stdout.txt", "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f"{out}: " + ("done" if code == 0 else f"FAILED (exit {code}; see {out}.stdout.txt)"), flush=True)
    return code


def run_seed(args, seed):
    """Run train.py for one seed into <root>/seed-S; its exit status."""
    return run_train(args.command, os.path.join(args.root, f"seed-{seed}"), args.threads, seed)


def write_outputs(args, summary):
    from engine.io import atomic_write
    summary = dict(summary, label=args.label,
                   command="python train.py " + " ".join(args.command) + " --seed S --out "
                   + os.path.join(args.root, "seed-S"))
    json_path, md_path = os.path.join(args.root, "seeds.json"), os.path.join(args.root, "seeds.md")
    atomic_write(json_path, lambda fh: fh.write(json.dumps(summary, indent=2).encode()))
    table = f"{MARKDOWN_HEADER}\n{markdown_row(summary, args.label)}\n\nstd: {STD_NOTE}.\n"
    atomic_write(md_path, lambda fh: fh.write(table.encode()))
    return json_path, md_path, table


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    failed = [] if args.collect_only else [s for s in args.seeds if run_seed(args, s) != 0]
    runs = {}
    for seed in args.seeds:
        metrics = read_metrics(os.path.join(args.root, f"seed-{seed}"))
        if metrics is None:
            failed.append(seed)
        else:
            runs[seed] = metrics
    if not runs:
        print(f"seeds.py: no run of seeds {args.seeds} left a metrics.json under {args.root}", file=sys.stderr)
        return 1
    try:
        summary = aggregate(runs)
    except ValueError as exc:
        print(f"seeds.py: {exc}", file=sys.stderr)
        return 2
    json_path, md_path, table = write_outputs(args, summary)
    print(f"{table}\nwrote {json_path} and {md_path}")
    if failed:
        print(f"seeds.py: seed(s) {sorted(set(failed))} failed; the summary covers {sorted(runs)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
