"""Inference latency of compressed reference models against their dense origins, here and in onnxruntime.

Usage: python bench/inference.py [--quick] [--threads 1] [--repeats 7] [--out bench/results]
For each case: FLOPs per example (compressors.report), the ONNX file sizes (compressors.onnx),
and the median latency at batch 1 and 128 (eval mode, no_grad) of the dense and the compressed
model, in this engine and in onnxruntime; the realized speedup is dense time / compressed time.
Writes inference.md and inference.json (inference_quick.* with --quick: one pass
over every case with one sample per timing, to check the script runs; its numbers are not results). Low-rank and basis
layers are cut from the dense model's own (random) weights at the ranks listed in CASES: latency
does not depend on the values.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import machine_description, paired_median_seconds, pin_threads  # noqa: E402

SETTLE_SECONDS = 0.3   # lets the pools of whatever ran before stop spinning (as bench.timing.median_seconds)

BATCHES = (1, 128)


def _image(batch):
    return np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)


def _flat(batch):
    return _image(batch).reshape(batch, -1)


def _signal(n):
    return lambda batch: np.random.default_rng(0).standard_normal((batch, n)).astype(np.float32)


def _sequence(batch):
    return np.random.default_rng(0).standard_normal((batch, 32, 2)).astype(np.float32)


def _wavelet_cnn_dense():
    from layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
    from layers.models import FeedForward
    return FeedForward(Conv2d(1, 20, 5), ReLU(), MaxPool2d(2), Conv2d(20, 50, 5), ReLU(), MaxPool2d(2),
                       Flatten(), Dense(800, 800), ReLU(), Dense(800, 10))


def _in_place(compress, **kw):
    """A compressor call that changes the model in place, as a function returning the model."""
    def apply(model):
        compress(model, **kw)
        return model
    return apply


def _cases():
    """name -> (dense builder, compress(dense) -> compressed model, input builder(batch))."""
    from compressors import basis, lowrank, tucker, wavelet
    from layers import Dense
    from layers.models import lenet300, lenet5, sequence_model, widecnn

    def gru():
        return sequence_model("gru", n_in=2, hidden=256)

    return {
        "BasisConv LeNet-5": (lenet5, _in_place(basis.compress, m=[6, 12]), _image),
        "BasisConv widecnn": (widecnn, _in_place(basis.compress, m=[8, 16, 32]), _image),
        "low-rank LeNet-300-100": (lenet300, _in_place(lowrank.truncate, rank=[20, 10, 10]), _flat),
        "low-rank LeNet-5": (lenet5, _in_place(lowrank.truncate, rank=[5, 10, 10, 10]), _image),
        "Tucker LeNet-5 (cached rebuild)": (lenet5, _in_place(tucker.compress, ratio=20), _image),
        "wavelet CNN": (_wavelet_cnn_dense, _in_place(wavelet.compress_square_dense), _image),
        "WaveletLinear n=1024": (lambda: Dense(1024, 1024), wavelet.wavelet_from_dense, _signal(1024)),
        "WaveletLinear n=4096": (lambda: Dense(4096, 4096), wavelet.wavelet_from_dense, _signal(4096)),
        "GRU wavelet state+reset": (gru, _in_place(wavelet.compress_recurrent, which="state_reset"),
                                    _sequence),
        "GRU low-rank": (gru, _in_place(lowrank.truncate, rank=32), _sequence),
        "GRU Tucker": (gru, _in_place(tucker.compress, ratio=10), _sequence),
    }


def _ours(model, x):
    import engine

    def call():
        with engine.no_grad():
            model(x)
    return call


def _onnx_runner(model, x, path, threads):
    import onnxruntime as ort
    from compressors.onnx import to_onnx
    report = to_onnx(model, path, x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return report.file_bytes, lambda batch: (lambda: session.run(None, {"input": batch}))


def _time_pair(dense_fn, compressed_fn, args):
    """(dense, compressed) median seconds, sampled in turn: both sides run on the same runtime's thread
    pools, so interleaving makes a change in the machine's load (or the first calls' warm-up) land on
    both alike; timed one after the other, the first side of a run read up to 40% slower."""
    if args.quick:      # the timing path runs once, so the smoke run checks it too
        return paired_median_seconds([dense_fn, compressed_fn], repeats=1, warmup=0, min_time=0.0)
    time.sleep(SETTLE_SECONDS)
    return paired_median_seconds([dense_fn, compressed_fn], repeats=args.repeats)


def _measure(name, dense_builder, compress, inputs, args, folder):
    import copy
    from compressors.report import count_flops
    dense = dense_builder().eval()
    small = compress(copy.deepcopy(dense).train()).eval()
    row, runners = {"case": name}, {}
    for label, model in (("dense", dense), ("compressed", small)):
        row[f"flops_{label}"] = count_flops(model, inputs(2))[0]
        size, runners[label] = _onnx_runner(model, inputs(2), os.path.join(folder, f"{label}.onnx"), args.threads)
        row[f"onnx_bytes_{label}"] = size
    for batch in BATCHES:
        x = inputs(batch)
        row[f"ours_dense_b{batch}"], row[f"ours_compressed_b{batch}"] = _time_pair(
            _ours(dense, x), _ours(small, x), args)
        row[f"ort_dense_b{batch}"], row[f"ort_compressed_b{batch}"] = _time_pair(
            runners["dense"](x), runners["compressed"](x), args)
    row["flop_reduction"] = row["flops_dense"] / row["flops_compressed"]
    for where in ("ours", "ort"):
        for batch in BATCHES:
            d, c = row[f"{where}_dense_b{batch}"], row[f"{where}_compressed_b{batch}"]
            row[f"{where}_speedup_b{batch}"] = None if d is None or not c else d / c
    row["target_met"] = _target(row)
    return row


def _target(row):
    """Issue 22's bar: at batch 128 in this engine, >= 60% of the FLOP reduction when it is >= 2x."""
    speedup = row["ours_speedup_b128"]
    if row["flop_reduction"] < 2 or speedup is None:
        return None
    return speedup >= 0.6 * row["flop_reduction"]


def _fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if unit == "ms":
        return f"{value * 1e3:.3f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,}"


def table(rows, quick):
    lines = ["| case | FLOP reduction | file dense / compressed (bytes) | ours b1 dense / comp (ms) | "
             "ours b128 dense / comp (ms) | speedup ours b1 / b128 | speedup ORT b1 / b128 | "
             ">= 60% of FLOP reduction |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['case']} | {_fmt(r['flop_reduction'], 'x')} | {_fmt(r['onnx_bytes_dense'])} / "
            f"{_fmt(r['onnx_bytes_compressed'])} | {_fmt(r['ours_dense_b1'], 'ms')} / "
            f"{_fmt(r['ours_compressed_b1'], 'ms')} | {_fmt(r['ours_dense_b128'], 'ms')} / "
            f"{_fmt(r['ours_compressed_b128'], 'ms')} | {_fmt(r['ours_speedup_b1'], 'x')} / "
            f"{_fmt(r['ours_speedup_b128'], 'x')} | {_fmt(r['ort_speedup_b1'], 'x')} / "
            f"{_fmt(r['ort_speedup_b128'], 'x')} | {_fmt(r['target_met'])} |")
    if quick:
        lines += ["", "--quick: one sample per timing on whatever machine ran it; not results. Run without "
                      "--quick on a quiet machine."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: every case, one sample per timing")
    p.add_argument("--threads", type=int, default=1, help="threads for NumPy/Numba and onnxruntime")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per measurement (median)")
    p.add_argument("--cases", default=None, help="comma list of case names (default all)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    import engine
    engine.manual_seed(0)
    cases = _cases()
    names = list(cases) if args.cases is None else [s.strip() for s in args.cases.split(",")]
    unknown = [n for n in names if n not in cases]
    if unknown:
        print(f"bench/inference.py: unknown cases {unknown}; valid: {list(cases)}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            rows.append(_measure(name, *cases[name], args, folder))
            print(f"{name}: done", flush=True)
    stem = os.path.join(args.out, "inference_quick" if args.quick else "inference")
    os.makedirs(args.out, exist_ok=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_description(), "platform": platform.platform(), "threads": args.threads,
            "quick": args.quick,
            "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0], "cores": os.cpu_count()}
    with open(stem + ".json", "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    text = table(rows, args.quick)
    with open(stem + ".md", "w", encoding="utf-8") as fh:
        fh.write(f"# Inference latency ({meta['date']}, {args.threads} thread(s))\n\nMachine: {meta['machine']} "
                 f"({meta['platform']}); 1-minute load average {load_before:.2f} before, "
                 f"{meta['load_1min_after']:.2f} after.\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
