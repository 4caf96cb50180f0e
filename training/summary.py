"""What a run leaves behind: the epoch lines, log.csv, metrics.json, summary.md, the final report, the plots."""
import csv
import io
import json
import os
import sys

import numpy as np

from compressors import plots, plugin, quantize, report
from engine import backend
from engine.io import atomic_write
from training.errors import UserError
from training.threads import thread_count

LOG_COLUMNS = ["phase", "epoch", "step", "train_loss", "extra_loss", "test_loss", "metric", "valid_loss",
               "valid_metric", "lr", "seconds"]


def epoch_row(run, phase, epoch, epochs, sums, evaluation, lr, model, valid=None):
    """The log.csv row of one finished epoch (`evaluation` on the test split, `valid` on the validation
    split or None when the task holds none out), also printed as one line, which shows validation only."""
    metric_name = run.task.metric_name
    count = max(1, sums["count"])
    row = {"phase": phase, "epoch": epoch, "step": run.global_step,
           "train_loss": sums["loss"] / count, "extra_loss": sums["extra"] / count,
           "test_loss": float(evaluation.get("loss", float("nan"))),
           "metric": float(evaluation[metric_name]),
           "valid_loss": None if valid is None else float(valid.get("loss", float("nan"))),
           "valid_metric": None if valid is None else float(valid[metric_name]),
           "lr": lr, "seconds": sums["seconds"]}
    for key, value in evaluation.items():
        if key not in ("loss", metric_name) and isinstance(value, (int, float)):
            row[f"test_{key}"] = float(value)
    if hasattr(run.compressor, "log_values"):
        for key, value in (run.compressor.log_values(model) or {}).items():
            row[key] = float(value)
    others = "".join(f"  {k} {_number(v)}" for k, v in row.items()
                     if k not in LOG_COLUMNS and not k.startswith("test_"))
    has_extra_loss = type(run.compressor).extra_loss is not plugin.Compressor.extra_loss
    extra = f"  extra {row['extra_loss']:.4g}" if has_extra_loss else ""
    # the line shows the validation metric; the test metric only when the task holds no validation split
    shown = (f"test {metric_name} {row['metric']:.4g}" if valid is None else
             f"valid {metric_name} {row['valid_metric']:.4g}  valid_loss {row['valid_loss']:.4g}")
    print(f"{phase} epoch {epoch}/{epochs}  step {run.global_step}  train_loss {row['train_loss']:.4g}"
          f"{extra}  {shown}{others}  lr {row['lr']:.3g}  {row['seconds']:.1f}s", flush=True)
    return row


def _number(value):
    """A whole number with thousands separators (a parameter count), any other to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def write_log(out, history):
    """log.csv: one row per epoch, the standard columns first, then any others in order of appearance."""
    columns = list(LOG_COLUMNS)
    for row in history:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(os.path.join(out, "log.csv"), lambda fh: fh.write(text.getvalue().encode("utf-8")))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _numbers(evaluation):
    return {k: v for k, v in evaluation.items() if isinstance(v, (int, float, str))}


def _threads_record(run):
    """How the run set its BLAS/OpenMP threads: auto with every count it used, or a fixed count (None: the
    libraries' default)."""
    if run.auto_threads is not None:
        return {"policy": "auto", "counts": list(run.auto_threads.counts) or [thread_count(run.args)]}
    return {"policy": "fixed", "counts": [thread_count(run.args)]}


def run_metrics(run, evaluation, comparison, valid=None):
    """metrics.json's content (without the optional 'quantized' entry); `valid`: the final model's
    validation metrics (None when the task holds no validation split)."""
    args, task = run.args, run.task
    metric_name = task.metric_name
    return {
        "task": args.task, "model": run.model_name, "compressor": args.compress,
        "seed": args.seed, "device": args.device, "dtype": args.dtype, "world_size": run.dist.size,
        "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
        "steps": run.global_step, "steps_per_epoch": run.steps_per_epoch,
        "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
        "seconds": round(run.seconds, 3),
        "threads": _threads_record(run),
        "dense_origin": run.dense_origin,
        "params": {"dense": comparison["params"]["dense"], "compressed": comparison["params"]["compressed"],
                   "ratio": comparison["params"]["ratio"],
                   "learnable": comparison["learnable"]["compressed"]},
        "learnable": dict(comparison["learnable"]),
        "flops": {"dense": comparison["flops"]["dense"], "compressed": comparison["flops"]["compressed"],
                  "ratio": comparison["flops"]["ratio"]},
        "bytes": {"dense": comparison["bytes"]["dense"], "compressed": comparison["bytes"]["compressed"],
                  "ratio": comparison["bytes"]["ratio"]},
        "metric": {"name": metric_name, "value": float(evaluation[metric_name]), "split": "test",
                   "higher_is_better": bool(task.higher_is_better)},
        "test": _numbers(evaluation),
        "valid": None if valid is None else _numbers(valid),
        "selection": run.selection.report(run.history, metric_name),
        "baseline": task.trivial_baseline(),
        "compressor_config": run.compressor.config(),
        "task_config": task.config(),
        "model_kwargs": run.model_kwargs,
        "history": run.history,
        "before_finetune": run.before_finetune,
        "command": "python train.py " + " ".join(args.argv),
    }


def _quantized_line(run, model, metrics):
    """--quantize-bits: quantized.npz and metrics['quantized'] (its 'test', and 'valid' when the task holds
    a validation split) of the final, already selected model; the line it adds to the headline."""
    args, metric_name = run.args, run.task.metric_name
    splits = [s for s in ("valid", "test") if s in run.task.splits]

    def evaluate(m):
        return {split: run.task.evaluate(m, args.eval_batch_size, split=split) for split in splits}

    quantized = quantize.quantized_evaluation(model, args.quantize_bits, evaluate,
                                              dense_bytes=metrics["bytes"]["dense"],
                                              path=os.path.join(run.out, "quantized.npz") if run.dist.is_root else None)
    quantized.update(quantized.pop("test"))     # {"valid": ..., "test": ...} beside bits, bytes, ratio
    metrics["quantized"] = quantized
    return (f"\n{args.quantize_bits}-bit storage: {quantized['bytes']:,} bytes "
            f"({quantized['ratio']:.1f}x), test {metric_name} {float(quantized['test'][metric_name]):.4g}")


def _export_onnx(run, model, metrics):
    """--export-onnx: model.onnx in the run folder (quantized when --quantize-bits is given); its sizes
    and whether every layer kept its compression under metrics['onnx']."""
    from compressors.onnx import to_onnx
    try:
        exported = to_onnx(model, os.path.join(run.out, "model.onnx"), backend.to_numpy(run.example_on_device()),
                           quantize_bits=run.args.quantize_bits)
    except ImportError as e:
        raise UserError(f"--export-onnx: {e}") from None
    metrics["onnx"] = exported.as_dict()
    return f"\nONNX: {exported.path} ({exported.file_bytes:,} bytes)"


def _selection_note(metrics):
    """The headline's account of which epoch is reported (empty for --select last)."""
    selection, valid = metrics["selection"], metrics["valid"]
    if selection["rule"] == "last":
        return ""
    if selection["epoch"] is None:
        return f"\n--select {selection['rule']}: no finite validation value, the last epoch is reported"
    return (f"\n--select {selection['rule']}: {selection['phase']} epoch {selection['epoch']} reported "
            f"(chosen on validation; final valid {metrics['metric']['name']} "
            f"{float(valid[metrics['metric']['name']]):.4g})")


def write_report(run, model):
    """Evaluate the final model; write metrics.json and summary.md, print the tables; returns the metrics."""
    args = run.args
    valid = run.task.evaluate(model, args.eval_batch_size, split="valid") if "valid" in run.task.splits else None
    evaluation = run.task.evaluate(model, args.eval_batch_size, split="test")
    rows = report.summary(model, run.example_on_device())
    comparison = report.compare_rows(run.dense_rows, rows)
    metrics = run_metrics(run, evaluation, comparison, valid)
    quantized_line = _quantized_line(run, model, metrics) if args.quantize_bits else ""
    if not run.dist.is_root:        # under MPI rank 0 alone writes the run folder
        return metrics
    if args.export_onnx:
        quantized_line += _export_onnx(run, model, metrics)
    metrics_text = json.dumps(metrics, indent=2, default=_json_default)
    atomic_write(os.path.join(run.out, "metrics.json"), lambda fh: fh.write(metrics_text.encode("utf-8")))
    metric_name, value = run.task.metric_name, metrics["metric"]["value"]
    table = report.format_summary(rows)
    versus = report.format_compare(comparison, run.dense_origin)
    base_value = metrics["baseline"].get(metric_name)
    verdict = ""
    if isinstance(base_value, (int, float)):
        better = value > base_value if run.task.higher_is_better else value < base_value
        verdict = f"  (trivial baseline {base_value:.4g}: {'beaten' if better else 'NOT beaten'})"
    headline = f"test {metric_name} {value:.4g}{verdict}{_selection_note(metrics)}{quantized_line}"
    notes = "".join(f"\ntest {name} {float(metrics['test'][name]):.4g}: {note}"
                    for name, note in getattr(run.task, "notes", {}).items() if name in metrics["test"])
    summary = (f"# {args.task} / {run.model_name} / {args.compress}\n\n{headline}{notes}\n\n"
               f"## Dense vs compressed\n\n{versus}\n\n## Layers\n\n{table}\n")
    atomic_write(os.path.join(run.out, "summary.md"), lambda fh: fh.write(summary.encode("utf-8")))
    print(f"\n{versus}\n\n{table}\n\n{headline}  params {comparison['params']['compressed']:,}  "
          f"time {run.seconds:.1f}s{notes}\nrun folder: {run.out} (summary.md, metrics.json)", flush=True)
    if args.plot:
        plot(run, model)
    return metrics


def plot(run, model):
    """--plot: every figure of compressors.plots.plot_run; a failing figure never costs the finished run."""
    try:
        plots.plot_run(run.out, model=model, compressor=run.compressor)
    except Exception as e:  # a figure must never cost the finished run
        print(f"--plot: compressors.plots.plot_run failed ({type(e).__name__}: {e})", file=sys.stderr)
