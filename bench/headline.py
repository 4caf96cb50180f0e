"""A headline row as a reviewer asks for it: choose a setting on validation, then run it over seeds.

Usage:
    python bench/headline.py --name dense-lenet300 [--root runs/headline] [--seeds 0,1,2] [--threads 1]
        --candidate "--lr 1e-3" --candidate "--lr 3e-3" -- <train.py options shared by every candidate>

1. Every candidate runs with the first seed into <root>/<name>/candidate-<i>; only its validation
   metric is read (bench.selection.choose: the best validation value wins, the first on a tie).
2. The chosen candidate runs with the remaining seeds (its first-seed run is reused).
3. The chosen runs are summarised (bench.seeds.aggregate: mean, sample std, min of valid and test,
   the compression figures) and written, with every candidate's validation value and the choice,
   to results/<name>.json (--results) and <root>/<name>/headline.md.
Test values are read once, for the chosen setting's seeds only. `{seed}` in the train.py options
stands for each run's seed (bench.seeds.with_seed), e.g. `--init-from runs/dense/seed-{seed}`.
"""
import argparse
import json
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.seeds import (MARKDOWN_HEADER, STD_NOTE, aggregate, finished_run, markdown_row, run_train,  # noqa: E402
                         seed_list, split_command)
from bench.selection import choose, valid_value  # noqa: E402


def parse_args(argv):
    own, command = split_command(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the row's name (folder and results/<name>.json)")
    p.add_argument("--root", default=os.path.join("runs", "headline"))
    p.add_argument("--results", default=os.path.join(ROOT, "results"), help="folder for <name>.json")
    p.add_argument("--candidate", action="append", default=[], metavar="FLAGS",
                   help="train.py flags of one candidate setting (repeat; none: the shared options alone)")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(own)
    args.command = command
    args.candidates = [shlex.split(c) for c in args.candidate] or [[]]
    return args


def select_candidate(args, folder):
    """(index of the chosen candidate, why, [validation value of each], [metrics of each]) after running
    them all (a candidate's earlier run is reused only when it ran with exactly these flags)."""
    metrics = []
    for i, flags in enumerate(args.candidates):
        out, command = os.path.join(folder, f"candidate-{i}"), [*args.command, *flags]
        if finished_run(out, command, args.threads, args.seeds[0]) is None:
            run_train(command, out, args.threads, args.seeds[0])
        metrics.append(finished_run(out, command, args.threads, args.seeds[0]))
    finished = [m for m in metrics if m is not None]
    index, reason = choose(finished)
    if index is not None:
        index = metrics.index(finished[index])
    return index, reason, [None if m is None else valid_value(m) for m in metrics], metrics


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    folder = os.path.join(args.root, args.name)
    index, reason, valid_values, metrics_of = select_candidate(args, folder)
    if index is None:
        print(f"headline.py: nothing chosen for {args.name} ({reason})", file=sys.stderr)
        return 1
    chosen = [*args.command, *args.candidates[index]]
    runs = {args.seeds[0]: metrics_of[index]}
    for seed in args.seeds[1:]:
        out = os.path.join(folder, f"chosen-seed-{seed}")
        if finished_run(out, chosen, args.threads, seed) is None:
            run_train(chosen, out, args.threads, seed)
        metrics = finished_run(out, chosen, args.threads, seed)
        if metrics is not None:
            runs[seed] = metrics
    summary = aggregate(runs)
    summary.update(name=args.name, chosen=index, reason=reason, std_note=STD_NOTE,
                   candidates=[{"flags": " ".join(c), "valid": v} for c, v in zip(args.candidates, valid_values)],
                   command="python train.py " + shlex.join(chosen) + f" --threads {args.threads} --seed S")
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, f"{args.name}.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    table = f"{MARKDOWN_HEADER}\n{markdown_row(summary, args.name)}\n"
    with open(os.path.join(folder, "headline.md"), "w") as fh:
        fh.write(table)
    print(table)
    return 0 if len(runs) == len(args.seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
