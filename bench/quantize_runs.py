"""Re-evaluate finished train.py runs with every parameter stored as n-bit codes (compressors.quantize).

    python bench/quantize_runs.py runs/tucker/l300_ada100_p3g runs/tucker/l5e8_ada233_nb_p3g --bits 8

Each run is rebuilt from its config.toml (same task, model and compressor) and its checkpoint.npz,
evaluated on the test split as float values and with n-bit values, and printed as a Markdown row:
float params, n-bit bytes (codes + 8 bytes of range per tensor), the byte ratio against the dense
float32 model, and both accuracies. The run folders are only read. --json writes the rows too.
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compressors import quantize, report  # noqa: E402
from compressors.checkpoints import read_run_checkpoint  # noqa: E402
from training.loop import Run  # noqa: E402
from training.options import parse_args  # noqa: E402


def rebuild(run_dir, scratch):
    """(Run, model) of a finished run folder, its weights loaded from checkpoint.npz, in eval mode."""
    args = parse_args(["--config", os.path.join(run_dir, "config.toml"), "--out", scratch, "--no-progress"])
    run = Run(args)
    run.setup()
    model = run.build()
    state, _, _ = read_run_checkpoint(run_dir)
    model.load_state_dict(state)
    return run, model.eval()


def measure(run_dir, bits):
    with tempfile.TemporaryDirectory() as scratch:
        run, model = rebuild(run_dir, scratch)
        task, batch = run.task, run.args.eval_batch_size
        metric = task.metric_name
        evaluate = lambda m: task.evaluate(m, batch, split="test")  # noqa: E731
        plain = float(evaluate(model)[metric])
        dense_bytes = report.compare_rows(run.dense_rows, report.summary(model, run.example_on_device()))["bytes"]["dense"]
        result = quantize.quantized_evaluation(model, bits, evaluate, dense_bytes=dense_bytes)
    return {"run": os.path.basename(os.path.normpath(run_dir)), "params": model.num_parameters(),
            "dense_bytes": dense_bytes, "bits": bits, "bytes": result["bytes"], "byte_ratio": result["ratio"],
            "metric": metric, "float": plain, "quantized": float(result["test"][metric])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="train.py run folders (config.toml + checkpoint.npz)")
    parser.add_argument("--bits", type=int, default=8, choices=range(1, 9))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = []
    print(f"| run | params | {args.bits}-bit bytes | byte ratio | float acc. | {args.bits}-bit acc. |")
    print("|---|---:|---:|---:|---:|---:|")
    for run_dir in args.runs:
        row = measure(run_dir, args.bits)
        rows.append(row)
        print(f"| {row['run']} | {row['params']:,} | {row['bytes']:,} | {row['byte_ratio']:.1f}x | "
              f"{100 * row['float']:.2f}% | {100 * row['quantized']:.2f}% |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
