"""Side-by-side comparison of the four methods on LeNet-300-100 and LeNet-5 (MNIST) at matched budgets.

Usage:
    python bench/compare.py [--quick] [--data-dir ../shared/data/mnist] [--ratios 10,50]
                            [--epochs 10] [--finetune-epochs 2] [--out bench/results]

Every run is a `train.py` subprocess writing its own run folder (under --runs-dir); the
metrics.json files are collected into bench/results/compare.md (a table per model) and
compare.png (test accuracy against stored parameters, log scale, with the Pareto front).

Budgets: for every target ratio R (dense params / stored params over the whole network)
- tucker and scada get --tucker-ratio R;
- lowrank (compression-aware training, then truncation) gets the largest common rank r
  whose factored network fits dense/R (layers that would not shrink stay dense, as
  lowrank.truncate does), then --finetune-epochs;
- basis only converts conv layers (LeNet-5: 25,570 of 431,080 values), so it cannot reach
  R; it runs at energy thresholds --basis-energies from the dense run's weights;
- wavelet has one structural point: the paper's LeNet-5 variant (compressors.wavelet.wavelet_cnn,
  36,030 values). LeNet-300-100 has no conv and no square dense layer: basis and wavelet
  are listed as not applicable there.
--quick: 2,000 training and 1,000 test images (a trimmed copy of the IDX files in a
temporary folder), one epoch of 20 steps, ratios 10 and 50: a smoke run whose accuracies
mean nothing.

Choices are made on validation only (bench.selection): every (model, method, setting) is one
choice among its candidates (--lrs, and --lowrank-tau for lowrank); the candidate with the best
validation accuracy is chosen and its test accuracy is the only one read and reported. A setting
with one candidate is taken as it is. The Pareto front is drawn through the chosen points that no
other chosen point beats on validation.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.selection import chosen_test_value, choose, choose_per_group, metric_name, valid_value  # noqa: E402

DENSE_SHAPES = {   # (rows, cols, bias) of each weight matrix as lowrank sees it ('filters' for convs)
    "lenet300": [(784, 300, 300), (300, 100, 100), (100, 10, 10)],
    "lenet5": [(20, 25, 20), (50, 500, 50), (800, 500, 500), (500, 10, 10)],
}
MNIST_STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
METHODS = ("dense", "tucker", "scada", "lowrank", "basis", "wavelet")
MARKERS = {"dense": "*", "tucker": "o", "scada": "s", "lowrank": "^", "basis": "D", "wavelet": "P"}


def lowrank_params(shapes, rank):
    """Stored values of a network whose layers are cut at `rank` (a layer stays dense when that is smaller)."""
    total = 0
    for rows, cols, bias in shapes:
        r = min(rank, rows, cols)
        total += (r * (rows + cols) if r * (rows + cols) < rows * cols else rows * cols) + bias
    return total


def lowrank_rank_for(shapes, budget):
    """The largest common rank whose factored network stores at most `budget` values (at least 1)."""
    best = 1
    for r in range(1, max(min(rows, cols) for rows, cols, _ in shapes) + 1):
        if lowrank_params(shapes, r) <= budget:
            best = r
    return best


def dense_params(shapes):
    return sum(rows * cols + bias for rows, cols, bias in shapes)


def trimmed_mnist(data_dir, train, test, folder):
    """Write the first `train` / `test` MNIST examples as raw IDX files into `folder`; returns it."""
    from tasks.idx import read_idx, write_idx
    from tasks.mnist import find_file
    for key, stem in MNIST_STEMS.items():
        path = find_file(data_dir, stem)
        if path is None:
            raise SystemExit(f"compare.py: {stem}(.gz) not found in {data_dir}; pass --data-dir")
        keep = train if key.startswith("train") else test
        write_idx(os.path.join(folder, stem), read_idx(path)[:keep], compress=False)
    return folder


def plan(args):
    """Candidate runs in order: dicts with model, method, setting (the choice they compete in),
    variant (what differs between the candidates), extra train.py flags, needs_dense."""
    settings = []
    for model in args.models:
        shapes = DENSE_SHAPES[model]
        settings.append((model, "dense", "dense", [""], [[]], False))
        for ratio in args.ratios:
            for method in ("tucker", "scada"):
                if method in args.methods:
                    settings.append((model, method, f"R={ratio:g}", [""], [["--tucker-ratio", str(ratio)]], False))
            if "lowrank" in args.methods:
                rank = lowrank_rank_for(shapes, dense_params(shapes) / ratio)
                flags = ["--lowrank-rank", str(rank), "--lowrank-every", "1",
                         "--finetune-epochs", str(args.finetune_epochs)]
                settings.append((model, "lowrank", f"R={ratio:g}: rank {rank}",
                                 [f"tau {tau:g}" for tau in args.lowrank_tau],
                                 [flags + ["--lowrank-tau", str(tau)] for tau in args.lowrank_tau], False))
        if model == "lenet5":
            if "basis" in args.methods:
                for energy in args.basis_energies:
                    settings.append((model, "basis", f"t={energy:g}", [""],
                                     [["--basis-energy", str(energy), "--finetune-epochs", "0"]], True))
            if "wavelet" in args.methods:
                settings.append((model, "wavelet", "wavelet_cnn", [""], [["--model", "wavelet_cnn"]], False))
    runs = []
    for model, method, setting, variants, flag_sets, needs_dense in settings:
        for variant, flags in zip(variants, flag_sets):
            for lr in args.lrs or [None]:
                lr_variant = [] if lr is None else [f"lr {lr:g}"]
                runs.append({"model": model, "method": method, "setting": setting,
                             "variant": ", ".join([v for v in [variant] if v] + lr_variant),
                             "extra": flags + ([] if lr is None else ["--lr", str(lr)]),
                             "needs_dense": needs_dense})
    return runs


def run_name(model, method, setting, variant):
    """A run folder name from the setting and the candidate's variant ('R=10', 'tau 0.001, lr 0.01')."""
    words = [setting.split(":")[0]] + ([variant] if variant else [])
    tag = "-".join(w.replace("=", "").replace(".", "p").replace(", ", "-").replace(" ", "") for w in words)
    return f"{model}-{method}-{tag}"


def run_one(args, data_dir, model, method, setting, variant, extra, init_from):
    """Run one candidate; its row holds the validation metric, the test metric waits for the choice."""
    name = run_name(model, method, setting, variant)
    out = os.path.join(args.runs_dir, name)
    if os.path.exists(out):
        shutil.rmtree(out)
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--task", "mnist", "--model", model,
           "--data-dir", data_dir, "--epochs", str(args.epochs), "--seed", str(args.seed),
           "--no-progress", "--out", out, "--overwrite"]   # the folder holds compare-stdout.txt
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if method != "dense":
        cmd += ["--compress", method]
    cmd += extra                                  # a later --model (wavelet_cnn) overrides the first
    if init_from:
        cmd += ["--init-from", init_from]
    if args.plot:
        cmd += ["--plot"]
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "compare-stdout.txt"), "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    row = {"model": model, "method": method, "setting": setting, "variant": variant, "run": out,
           "status": proc.returncode,
           "wall_s": round(time.perf_counter() - started, 1),
           "command": " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) and c.startswith(ROOT) else c
                               for c in cmd[1:])}
    metrics_path = os.path.join(out, "metrics.json")
    if proc.returncode == 0 and os.path.exists(metrics_path):
        with open(metrics_path) as fh:
            m = json.load(fh)
        row.update(params=m["params"]["compressed"], dense_params=m["params"]["dense"],
                   ratio=m["params"]["ratio"], learnable=m["params"].get("learnable"),
                   flops=m["flops"]["compressed"], bytes=m["bytes"]["compressed"],
                   metric=metric_name(m), valid=valid_value(m), seconds=m.get("seconds"), metrics=m)
    else:
        with open(os.path.join(out, "compare-stdout.txt")) as fh:
            row["error"] = fh.read()[-600:]
    valid = "-" if row.get("valid") is None else f"{row['valid']:.4f}"
    print(f"{model:9s} {method:8s} {setting:18s} {variant:14s} " + (
        f"params {row['params']:>8,}  valid {valid}  {row['wall_s']:.0f}s" if "params" in row
        else f"FAILED (exit {proc.returncode}; see {out}/compare-stdout.txt)"), flush=True)
    return row


def not_applicable(model, methods):
    rows = []
    if model == "lenet300":
        for method, why in (("basis", "no conv layer"), ("wavelet", "no square dense layer")):
            if method in methods:
                rows.append({"model": model, "method": method, "setting": "n/a", "na": why})
    return rows


def apply_choices(rows):
    """Mark the chosen candidate of every (model, method, setting) and read the test accuracy of
    those only; the choice itself sees validation metrics alone (bench.selection.choose)."""
    finished = [r for r in rows if "metrics" in r]
    choices = choose_per_group([((r["model"], r["method"], r["setting"]), r["metrics"]) for r in finished])
    for index, reason in choices.values():
        if index is not None:
            finished[index]["chosen"] = reason
    for r in finished:
        if "chosen" in r:
            r["accuracy"] = chosen_test_value(r["metrics"])
    for r in finished:
        if "chosen" not in r:
            group = (r["model"], r["method"], r["setting"])
            r["not_chosen"] = choices[group][1] if choices[group][0] is None else "another candidate"
    return rows


def chosen_dense_checkpoint(rows, model):
    """The checkpoint of the dense run chosen on validation for `model` (None when none was)."""
    dense = [r for r in rows if r["model"] == model and r["method"] == "dense" and "metrics" in r]
    index, _ = choose([r["metrics"] for r in dense])
    return None if index is None else os.path.join(dense[index]["run"], "checkpoint.npz")


def pareto(points):
    """Points (params, accuracy) not beaten by one with fewer or equal params and higher or equal accuracy."""
    front, best = [], -1.0
    for p, a in sorted(points, key=lambda t: (t[0], -t[1])):
        if a > best:
            front.append((p, a))
            best = a
    return front


def _display(command):
    """A command as shown in the table: the quick mode's temporary data folder named, not its path."""
    return re.sub(r"\S*compare-mnist-\S+", "<trimmed MNIST copy>", command)


def add_dense_ratios(rows):
    """ratio_vs_dense: the model's dense run params / stored params (wavelet_cnn counts against LeNet-5)."""
    dense = {r["model"]: r["params"] for r in rows if r["method"] == "dense" and "params" in r}
    for r in rows:
        if "params" in r:
            base = dense.get(r["model"], r.get("dense_params"))
            r["ratio_vs_dense"] = base / r["params"] if base else r.get("ratio")
    return rows


def write_table(rows, args, path):
    lines = [f"# Compression methods side by side (MNIST){' - QUICK SMOKE RUN' if args.quick else ''}", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
             f"`python bench/compare.py {' '.join(args.argv)}`.",
             f"Training: {args.epochs} epoch(s)" + (f" of {args.steps} steps" if args.steps else "")
             + f", seed {args.seed}; lowrank: tau {', '.join(f'{t:g}' for t in args.lowrank_tau)}, then "
             f"{args.finetune_epochs} fine-tune epoch(s); basis: from the chosen dense run's weights. "
             "Each setting's candidates (learning rates, lowrank tau) are compared on validation accuracy "
             "only; test accuracy is read and shown for the chosen candidate alone. "
             "Ratio = dense params / stored params "
             "(every stored float, biases included) against the model's dense run (wavelet_cnn against "
             "LeNet-5). FLOPs per example are train.py's report of inference in eval mode (a Tucker "
             "layer's rebuilt weight is cached there, so no rebuild is counted).", ""]
    if args.quick:
        lines += ["Quick mode: 2,000 training / 1,000 test images and a few steps - this checks the "
                  "pipeline; the accuracies are not results.", ""]
    for model in args.models:
        lines += [f"## {model}", "", "| method | setting | candidate | stored params | ratio | learnable | "
                  "FLOPs/example | valid accuracy | test accuracy (chosen only) | train s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["model"] != model:
                continue
            if "na" in r:
                lines.append(f"| {r['method']} | n/a ({r['na']}) | | | | | | | | |")
            elif "params" in r:
                valid = "-" if r.get("valid") is None else f"{100 * r['valid']:.2f}%"
                test = (f"{100 * r['accuracy']:.2f}%" if r.get("accuracy") is not None
                        else f"not read ({r.get('not_chosen', 'not chosen')})")
                lines.append(f"| {r['method']} | {r['setting']} | {r.get('variant') or '-'} | {r['params']:,} | "
                             f"{r['ratio_vs_dense']:.1f}x | {r['learnable']:,} | {r['flops']:,.0f} | {valid} | "
                             f"{test} | {r['seconds']:.0f} |")
            else:
                lines.append(f"| {r['method']} | {r['setting']} | {r.get('variant') or '-'} | "
                             f"failed (exit {r['status']}) | | | | | | |")
        lines.append("")
    lines += ["Commands (relative to the repository root):", ""]
    lines += [f"- `{_display(r['command'])}`" for r in rows if "command" in r]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def draw(rows, args, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("compare.py: matplotlib is not installed (pip install 'compactnet[plot]'); no chart", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(args.models), figsize=(6 * len(args.models), 4.4), squeeze=False)
    for model, ax in zip(args.models, axes[0]):
        done = [r for r in rows if r["model"] == model and r.get("accuracy") is not None]
        for method in METHODS:
            pts = [r for r in done if r["method"] == method]
            if pts:
                ax.scatter([r["params"] for r in pts], [100 * r["accuracy"] for r in pts], s=60,
                           marker=MARKERS[method], label=method, zorder=3)
                for r in pts:
                    ax.annotate(r["setting"].split(":")[0], (r["params"], 100 * r["accuracy"]), fontsize=7,
                                textcoords="offset points", xytext=(4, 4))
        on_valid = set(pareto([(r["params"], r["valid"]) for r in done if r.get("valid") is not None]))
        front = sorted((r["params"], 100 * r["accuracy"]) for r in done if (r["params"], r.get("valid")) in on_valid)
        if len(front) > 1:
            ax.plot([p for p, _ in front], [a for _, a in front], color="grey", lw=1,
                    ls="--", label="Pareto front (on validation)", zorder=2)
        ax.set_xscale("log")
        ax.set_xlabel("stored parameters")
        ax.set_ylabel("test accuracy (%), chosen settings")
        ax.set_title(f"{model}" + (" (quick smoke run)" if args.quick else ""))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no setting chosen on validation yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def numbers(kind):
    def parse(text):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__}, got {text!r}") from None
    return parse


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small data subset, few steps")
    p.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    p.add_argument("--models", type=lambda s: [m for m in s.split(",") if m], default=["lenet300", "lenet5"])
    p.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m],
                   default=["tucker", "scada", "lowrank", "basis", "wavelet"])
    p.add_argument("--ratios", type=numbers(float), default=[10.0, 50.0, 200.0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (default: one pass)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="lowrank fine-tuning after truncation")
    p.add_argument("--lowrank-tau", type=numbers(float), default=[1e-3],
                   help="comma list; several are candidates, chosen on validation at each ratio")
    p.add_argument("--lrs", type=numbers(float), default=[],
                   help="comma list of learning rates, candidates for every setting, chosen on validation "
                        "(default: train.py's recipe lr alone)")
    p.add_argument("--basis-energies", type=numbers(float), default=[0.9, 0.7])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", action="store_true", help="pass --plot to every train.py run")
    p.add_argument("--threads", type=int, default=1,
                   help="train.py --threads (BLAS threads; 1 suits a shared machine, 0 leaves it unset)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "compare"))
    p.add_argument("--redraw", action="store_true",
                   help="run nothing: rewrite the table and chart from the last results JSON")
    args = p.parse_args(argv)
    args.argv = list(argv)
    unknown = [m for m in args.models if m not in DENSE_SHAPES]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {sorted(DENSE_SHAPES)}")
    bad = [m for m in args.methods if m not in METHODS[1:]]
    if bad:
        p.error(f"--methods: unknown {bad}; choose from {list(METHODS[1:])}")
    if args.quick:
        explicit = {a.split("=")[0] for a in argv if a.startswith("--")}
        if "--epochs" not in explicit:
            args.epochs = 1
        if "--steps" not in explicit:
            args.steps = 20
        if "--finetune-epochs" not in explicit:
            args.finetune_epochs = 1
        if "--ratios" not in explicit:
            args.ratios = [10.0, 50.0]
        if "--basis-energies" not in explicit:
            args.basis_energies = [0.9]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stem = "compare_quick" if args.quick else "compare"
    if args.redraw:
        with open(os.path.join(args.out, f"{stem}.json")) as fh:
            saved = json.load(fh)
        args.argv = saved.get("argv", args.argv)
        return report(add_dense_ratios(saved["rows"]), args, stem)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.runs_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="compare-mnist-") if args.quick else None
    try:
        data_dir = trimmed_mnist(args.data_dir, 2000, 1000, scratch) if args.quick else args.data_dir
        rows = []
        for run in plan(args):
            model, method = run["model"], run["method"]
            init = chosen_dense_checkpoint(rows, model) if run["needs_dense"] else None
            if run["needs_dense"] and init is None:
                rows.append({"model": model, "method": method, "setting": run["setting"],
                             "variant": run["variant"], "status": "skipped",
                             "error": "no dense run was chosen (failed, or no validation metric to choose on)"})
                continue
            rows.append(run_one(args, data_dir, model, method, run["setting"], run["variant"], run["extra"], init))
        for model in args.models:
            rows.extend(not_applicable(model, args.methods))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = add_dense_ratios(apply_choices(rows))
    saved = [{k: v for k, v in r.items() if k != "metrics"} for r in rows]
    with open(os.path.join(args.out, f"{stem}.json"), "w") as fh:
        json.dump({"argv": args.argv, "rows": saved}, fh, indent=2)
    return report(rows, args, stem)


def report(rows, args, stem):
    """Write <stem>.md and <stem>.png from the collected rows; exit status 1 when a run failed."""
    table = write_table(rows, args, os.path.join(args.out, f"{stem}.md"))
    chart = draw(rows, args, os.path.join(args.out, f"{stem}.png"))
    print(f"wrote {table}" + (f" and {chart}" if chart else ""))
    return 0 if all("params" in r or "na" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
