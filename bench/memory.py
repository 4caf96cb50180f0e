"""Peak resident memory of one train.py epoch (LeNet-5 on MNIST, the PTB LSTM) against the same run in PyTorch.

Usage: python bench/memory.py [--models lenet5,ptb_lstm] [--frameworks ours,torch] [--threads 1]
       [--data-root ../shared/data] [--quick] [--out DIR]

Every measured process is a child of this one, started afresh and alone (one at a time):
  - ours: `python train.py` for 1 epoch with the task's recipe (LeNet-5 on MNIST, batch 64, Adam; the
    PTB word-level LSTM, 2 x 200 units, batch 20, bptt 35, SGD, clip 0.25), --threads N;
  - torch: bench/memory_torch.py, the same model, data pipeline shape, batch, optimizer, epoch,
    evaluations and checkpoint in PyTorch, torch.set_num_threads(N);
  - each side's import baseline: a child that only imports what its run imports (ours: NumPy, Numba
    and train.py's packages; torch: PyTorch and NumPy) and exits.
A child's peak is the kernel's high-water mark of its resident set (ru_maxrss from wait4 on that child
alone; Linux folds the parent's high-water mark at the child's exec into it, so a child whose figure
does not exceed this process's own peak is reported as not measurable). "above baseline" is the run's peak minus its side's import baseline: what training itself
holds. The target (issue 23): ours / PyTorch peak <= 1.0. Writes memory.md and memory.json to --out
(default bench/results) with the machine, its load and the command. --quick: a few steps on a small
subset, nothing written unless --out is given (for tests and smoke runs). This process imports
neither NumPy nor PyTorch, so it starts every child small.
"""
import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training.threads import THREAD_VARIABLES  # noqa: E402  (imports no NumPy)
from bench.report_files import package_version, publish, run_stamp  # noqa: E402  (imports no NumPy)
from bench.timing import machine_description  # noqa: E402  (imports NumPy only when called)

MODELS = ("lenet5", "ptb_lstm")
FRAMEWORKS = ("ours", "torch")
TARGET = 1.0          # issue 23: ours / PyTorch peak resident memory
MIB = 1024.0
DATA = {"lenet5": "mnist", "ptb_lstm": "ptb"}
OURS_FLAGS = {
    "lenet5": ["--task", "mnist", "--model", "lenet5", "--batch-size", "64"],
    "ptb_lstm": ["--task", "ptb", "--model", "language_model", "--batch-size", "20"],
}
QUICK_FLAGS = {   # shared by both sides
    "lenet5": ["--subset", "256", "--valid-size", "64", "--steps", "2"],
    "ptb_lstm": ["--steps", "2", "--eval-batch-size", "8"],
}
# train.py's packages, and Numba as its first kernel call loads it (unless missing or switched off)
OURS_IMPORTS = """import training.cli
from engine.kernels import numba_disabled
if not numba_disabled():
    try:
        import numba
    except ImportError:
        pass
"""


def fail(message):
    print(f"memory.py: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- the children
def commands(model, framework, args, scratch):
    """(baseline command, run command) of one side."""
    data_dir = os.path.join(args.data_root, DATA[model])
    quick = QUICK_FLAGS[model] if args.quick else []
    out = os.path.join(scratch, f"{framework}-{model}")
    os.makedirs(out, exist_ok=True)
    if framework == "ours":
        return ([sys.executable, "-c", OURS_IMPORTS],
                [sys.executable, os.path.join(ROOT, "train.py"), *OURS_FLAGS[model], "--epochs", "1",
                 "--threads", str(args.threads), "--data-dir", data_dir, "--out", out, "--overwrite",
                 "--seed", "0", "--no-progress", "--log-every", "0", *quick])
    script = os.path.join(ROOT, "bench", "memory_torch.py")
    return ([sys.executable, script, "--imports-only", "--threads", str(args.threads)],
            [sys.executable, script, "--model", model, "--epochs", "1", "--threads", str(args.threads),
             "--data-dir", data_dir, "--out", out, "--seed", "0", *quick])


def child_env(threads):
    """This environment with the BLAS/OpenMP/Numba thread variables set to `threads` (unset for 0)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH", "")]))
    if threads:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def peak_kib(usage):
    """ru_maxrss in KiB (Linux reports KiB, macOS bytes)."""
    return usage.ru_maxrss / 1024.0 if sys.platform == "darwin" else float(usage.ru_maxrss)


def own_high_water_kib():
    """This process's memory high-water mark (what an exec folds into a child's figure): VmHWM, which
    unlike getrusage leaves out what this process inherited the same way; getrusage without /proc."""
    try:
        with open("/proc/self/status") as f:
            return float(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
    except (OSError, StopIteration, ValueError):
        return peak_kib(resource.getrusage(resource.RUSAGE_SELF))


def run_child(command, env, timeout, log_path):
    """{"peak_mib", "seconds"} of one child process, or {"error": one line}; its output goes to log_path."""
    own_peak = own_high_water_kib()
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
    timed_out = False
    while True:
        # wait4 on this pid alone: its own rusage, not the maximum over every child reaped so far
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            timed_out = True
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if timed_out:
        return {"error": f"timed out after {timeout:g} s"}
    if process.returncode != 0:
        with open(log_path, "rb") as log:
            last = (log.read().decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        return {"error": f"exited {process.returncode}: {last}"}
    peak = peak_kib(usage)
    if peak <= own_peak:
        return {"error": f"not measurable: the child's high-water mark ({peak / MIB:.0f} MiB) is no more than "
                         f"its parent's ({own_peak / MIB:.0f} MiB); run bench/memory.py as its own process"}
    return {"peak_mib": peak / MIB, "seconds": seconds}


def measure(model, framework, args, scratch):
    """One side of one model: its import baseline, then its run (children started one after the other)."""
    baseline_command, run_command = commands(model, framework, args, scratch)
    env = child_env(args.threads)
    entry = {"model": model, "framework": framework, "command": " ".join(run_command)}
    baseline = run_child(baseline_command, env, args.timeout, os.path.join(scratch, f"{framework}-{model}-base.log"))
    run = run_child(run_command, env, args.timeout, os.path.join(scratch, f"{framework}-{model}.log"))
    if "error" in baseline or "error" in run:
        entry["error"] = baseline.get("error") or run["error"]
        return entry
    entry.update(peak_mib=run["peak_mib"], baseline_mib=baseline["peak_mib"], seconds=run["seconds"])
    return entry


# ---------------------------------------------------------------- the tables
def summarise(results, models):
    """Per model: each side's peak, import baseline and peak above it, and the ours / PyTorch ratios."""
    rows = []
    for model in models:
        row = {"model": model}
        for framework in FRAMEWORKS:
            found = next((r for r in results if (r["model"], r["framework"]) == (model, framework)), None)
            if found is None or "peak_mib" not in found:
                row[framework] = {"error": found["error"] if found else "not measured"}
                continue
            row[framework] = {"peak_mib": found["peak_mib"], "baseline_mib": found["baseline_mib"],
                              "above_mib": found["peak_mib"] - found["baseline_mib"], "seconds": found["seconds"]}
        ours, torch = row["ours"], row["torch"]
        row["peak_ratio"] = _ratio(ours.get("peak_mib"), torch.get("peak_mib"))
        row["above_ratio"] = _ratio(ours.get("above_mib"), torch.get("above_mib"))
        row["meets_target"] = None if row["peak_ratio"] is None else row["peak_ratio"] <= TARGET
        rows.append(row)
    return rows


def _ratio(a, b):
    return a / b if a is not None and b else None


def _mib(side, key):
    return f"{side[key]:.0f}" if key in side else side["error"]


def to_markdown(rows, meta):
    def ratio(value):
        return "missing" if value is None else f"{value:.2f}x"

    target = {True: "yes", False: "no", None: "missing"}
    lines = [f"Machine: {meta['machine']}; load (1-minute average) {meta['load_before']:.2f} before, "
             f"{meta['load_after']:.2f} after; threads {meta['threads']}; numpy {meta['numpy']}, numba "
             f"{meta['numba']}, torch {meta['torch']}, Python {meta['python']}; date {meta['date']}",
             f"Command: `{meta['command']}`", "",
             "Peak resident set (MiB, the kernel's high-water mark of each child process); the import "
             "baseline is a child that only imports its side's packages; above baseline = peak - baseline.", "",
             "| run | ours peak | PyTorch peak | ours / PyTorch | ours above baseline | PyTorch above baseline | "
             f"ours / PyTorch above baseline | ours baseline | PyTorch baseline | target (<= {TARGET:.1f}x) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, t = r["ours"], r["torch"]
        lines.append(f"| {meta['labels'].get(r['model'], r['model'])} | {_mib(o, 'peak_mib')} | "
                     f"{_mib(t, 'peak_mib')} | {ratio(r['peak_ratio'])} | {_mib(o, 'above_mib')} | "
                     f"{_mib(t, 'above_mib')} | {ratio(r['above_ratio'])} | {_mib(o, 'baseline_mib')} | "
                     f"{_mib(t, 'baseline_mib')} | {target[r['meets_target']]} |")
    return "\n".join(lines) + "\n"


LABELS = {"lenet5": "LeNet-5, MNIST, 1 epoch, batch 64, Adam",
          "ptb_lstm": "PTB word LSTM 2x200, 1 epoch, batch 20, bptt 35, SGD"}


# ---------------------------------------------------------------- command line
def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of: {', '.join(MODELS)}")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma list of: {', '.join(FRAMEWORKS)}")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/Numba/torch threads of every child (0: unset)")
    p.add_argument("--data-root", default=os.path.join(os.path.dirname(ROOT), "shared", "data"),
                   help="folder holding mnist/ (the IDX files) and ptb/ (ptb.*.txt)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a child is killed")
    p.add_argument("--quick", action="store_true", help="a few steps on a subset; nothing written unless --out")
    p.add_argument("--out", default=None, help="folder for memory.md/json (default bench/results)")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    for name, given, valid in (("model", args.models, MODELS), ("framework", args.frameworks, FRAMEWORKS)):
        unknown = [g for g in given if g not in valid]
        if unknown or not given:
            fail(f"unknown {name} {unknown[0] if unknown else '(none given)'!r}; valid: {', '.join(valid)}")
    if args.threads < 0:
        fail(f"--threads {args.threads}: must be 0 (unset) or a count")
    for model in args.models:
        folder = os.path.join(args.data_root, DATA[model])
        if not os.path.isdir(folder):
            fail(f"{folder}: no such folder (--data-root must hold {DATA[model]}/)")
    return args


def main(argv=None):
    args = _parse(argv)
    load_before = os.getloadavg()[0]
    scratch = tempfile.mkdtemp(prefix="compactnet-memory-")
    results = []
    try:
        for model in args.models:
            for framework in args.frameworks:
                entry = measure(model, framework, args, scratch)
                results.append(entry)
                print(f"{model} {framework}: " + (entry["error"] if "error" in entry else
                      f"peak {entry['peak_mib']:.0f} MiB, import baseline {entry['baseline_mib']:.0f} MiB, "
                      f"{entry['seconds']:.0f} s"), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {"machine": machine_description(), "load_before": load_before, "load_after": os.getloadavg()[0],
            "threads": args.threads, "python": platform.python_version(), "numpy": package_version("numpy"),
            "numba": package_version("numba"), "torch": package_version("torch"), "quick": args.quick,
            "labels": LABELS, **run_stamp("memory.py", argv)}
    rows = summarise(results, args.models)
    text = to_markdown(rows, meta)
    publish(args, ROOT, "memory", "Peak memory of a training run", text,
            {"meta": meta, "summary": rows, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
