"""Where inference time goes: each top-level layer of a dense model and of its compressed form, timed in place.

Usage: python bench/layer_times.py [--batch 128] [--threads 1] [--repeats 15] [--cases "low-rank LeNet-5,..."]
       [--out bench/results]

For every case of bench/inference.py whose FLOP reduction is 2x or more, the dense and the compressed
model run forward (eval, no_grad) with a timer around each top-level layer; the median over repeats is
kept per layer, with the layer's FLOPs per example. The whole forwards, whose ratio is the speedup, are
timed again without timers, the two models in turn (as bench/inference.py times them). Layers whose FLOPs the compressor did not change
(pools, activations, unconverted layers) keep their time, so they bound the whole-network speedup
(Amdahl): even if the converted layers ran at their full FLOP reduction, the network could be at most
`dense time / (unchanged time + converted dense time / converted FLOP reduction)` faster. The table
sets that bound, and the converted layers' own speedup, beside the 60% target of issue 22; for the
wavelet cases, bench/structured_floor.py bounds what any structured implementation could reach. Two costs
that FLOPs do not count are measured too: the patch copy (im2col) every convolution pays before its
product, the same for a dense convolution and for the first convolution of its BasisConv or low-rank
form (timed alone on the layer's own input), and the operations dispatched per forward pass
(engine.hooks.TimerHook), each a fixed cost whatever its size. The rate floor puts them together for
every converted Dense and Conv2d: the patches (formed chunk by chunk, as the pass without a graph forms
them) and the bias, which both forms pay, plus each form's product FLOPs at the rate the dense product
reaches on those chunks; it bounds the speedup with both networks at that floor, and the speedup of the
compressed network at it against the dense one as measured. The own-rate floor replaces the compressed
form's products at the dense rate by its two products timed at their own shapes (skinny products run
below the dense rate in BLAS), at the best of several chunk sizes: the most an im2col pass on this BLAS
could reach against the dense network as it runs (bench/layer_floors.py).
Writes layer_times.md and layer_times.json.
"""
import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.layer_floors import (_middle_width, bare_products, pass_seconds, patch_copy_seconds,  # noqa: E402
                                rate_floor)
from bench.structured_floor import wavelet_floor  # noqa: E402
from bench.timing import machine_description, pin_threads  # noqa: E402


def top_level(model):
    """[(name, module)] of the model's top-level layers; a model without sub-layers is its own one layer."""
    return list(model.named_children()) or [("(whole)", model)]


def top_level_flops(model, x):
    """{top-level layer name: FLOPs per example} (its own and its sub-modules', one forward pass)."""
    from compressors.report import count_flops
    total, per_module = count_flops(model, x)
    if not list(model.named_children()):
        return {"(whole)": total}
    totals = {name: 0 for name, _ in model.named_children()}
    for name, flops in per_module.items():
        top = name.split(".")[0]
        if top in totals:
            totals[top] += flops
    return totals


def layer_seconds(model, x, repeats=15, warmup=3):
    """({top-level layer name: median seconds per forward}, median seconds of the whole forward)."""
    import engine
    samples = {name: [] for name, _ in top_level(model)}
    started, removers = {}, []

    def before(name):
        return lambda module, args: started.__setitem__(name, time.perf_counter())

    def after(name):
        return lambda module, args, output: samples[name].append(time.perf_counter() - started[name])

    for name, child in top_level(model):
        removers += [child.register_forward_pre_hook(before(name)), child.register_forward_hook(after(name))]
    whole = []
    try:
        with engine.no_grad():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                whole.append(time.perf_counter() - start)
    finally:
        for remove in removers:
            remove()
    per_layer = {name: statistics.median(s[warmup:]) for name, s in samples.items() if len(s) > warmup}
    return per_layer, statistics.median(whole[warmup:])


def whole_seconds(dense, compressed, x, repeats=15):
    """(dense, compressed) median seconds of a whole forward (eval, no_grad, no timers), the two sampled in
    turn as bench/inference.py samples them, so that a change in the machine's load lands on both alike
    (the per-layer times of layer_seconds come from one model's forwards, then the other's)."""
    import engine
    from bench.timing import paired_median_seconds

    def forward(model):
        def run():
            with engine.no_grad():
                model(x)
        return run
    dense_seconds, compressed_seconds = paired_median_seconds([forward(dense), forward(compressed)], repeats, 3, 0.02)
    return dense_seconds, compressed_seconds


def op_profile(model, x, repeats=5):
    """(operations dispatched per forward, {op name: seconds per forward}) under no_grad."""
    import engine
    from engine.hooks import TimerHook
    with engine.no_grad():
        model(x)                                    # warm-up outside the count
        with TimerHook() as timer:
            for _ in range(repeats):
                model(x)
    calls = sum(timer.calls.values()) / repeats
    return calls, {name: seconds / repeats for name, seconds in timer.forward_seconds.items()}


def layer_inputs(model, x, modules):
    """({name: first input array}, {name: calls}) of the named modules over one no_grad forward pass
    (a recurrent cell's sub-layers are called once per time step)."""
    import engine
    captured, calls, removers = {}, {}, []

    def record(name):
        def hook(module, args):
            captured.setdefault(name, getattr(args[0], "data", args[0]))
            calls[name] = calls.get(name, 0) + 1
        return hook

    for name, module in modules:
        removers.append(module.register_forward_pre_hook(record(name)))
    try:
        with engine.no_grad():
            model(x)
    finally:
        for remove in removers:
            remove()
    return captured, calls


def converted_pairs(dense, compressed):
    """[(name, dense layer, converted layer)] for every Dense/Conv2d that the compressor split into two
    products (BasisConv, low rank), at any depth (a GRU's hidden-to-hidden layers too)."""
    dense_modules = dict(dense.named_modules())
    return [(name, dense_modules[name], module) for name, module in compressed.named_modules()
            if _middle_width(module) and type(dense_modules.get(name)).__name__ in ("Dense", "Conv2d")]


def breakdown(dense, compressed, x, repeats):
    """Per top-level layer: FLOPs and median time, dense and compressed, and whether the compressor changed
    it (its FLOPs differ); the converted/unchanged sums and the Amdahl bound on the whole speedup."""
    flops_d, flops_c = top_level_flops(dense, x), top_level_flops(compressed, x)
    secs_d, _ = layer_seconds(dense, x, repeats)
    secs_c, _ = layer_seconds(compressed, x, repeats)
    whole_d, whole_c = whole_seconds(dense, compressed, x, repeats)
    layers = []
    for name in flops_d:
        layers.append({"layer": name, "type_dense": type(dict(top_level(dense))[name]).__name__,
                       "type_compressed": type(dict(top_level(compressed))[name]).__name__,
                       "flops_dense": flops_d[name], "flops_compressed": flops_c.get(name, 0),
                       "seconds_dense": secs_d.get(name, 0.0), "seconds_compressed": secs_c.get(name, 0.0),
                       "converted": flops_d[name] != flops_c.get(name, 0)})
    pairs = converted_pairs(dense, compressed)
    inputs, calls = layer_inputs(compressed, x, [(name, converted) for name, _, converted in pairs])
    by_top = {row["layer"]: row for row in layers}
    for name, dense_layer, converted in pairs:
        row = by_top.get(name.split(".")[0], by_top.get("(whole)"))
        if type(dense_layer).__name__ == "Conv2d":
            row["seconds_patch_copy"] = row.get("seconds_patch_copy", 0.0) + calls[name] * patch_copy_seconds(
                dense_layer, inputs[name], repeats)
        dense_s, converted_s = bare_products(dense_layer, converted, inputs[name], repeats)
        old = row.get("seconds_bare_products", (0.0, 0.0))
        row["seconds_bare_products"] = (old[0] + calls[name] * dense_s, old[1] + calls[name] * converted_s)
        # a converted layer inside another (a recurrent cell's) leaves that layer's other work out of the
        # floor, so only top-level converted layers get one (rows without one have no rate-floor bound)
        floor = None if "." in name else rate_floor(dense_layer, converted, inputs[name], repeats)
        if floor is not None:       # the converted layer is this row's whole layer: one floor per row
            both = floor["seconds_patches"] + floor["seconds_bias"]
            row["rate_floor_parts"] = floor
            row["seconds_rate_floor"] = tuple(calls[name] * (both + floor[key]) for key in
                                              ("seconds_dense_product", "seconds_compressed_products"))
            row["seconds_own_rate_floor"] = calls[name] * floor["seconds_own_rate"]
    result = summarize(layers, whole_d, whole_c, x.shape[0])
    for label, model in (("dense", dense), ("compressed", compressed)):
        result[f"ops_{label}"], result[f"op_seconds_{label}"] = op_profile(model, x)
    if [row["layer"] for row in layers] == ["(whole)"]:
        # one layer whose compressed form is a chain of operations over activations of the input's size
        # (WaveletLinear): each operation passes over them at least once
        result["pass_seconds"] = pass_seconds(x, repeats)
    floor = wavelet_floor(dense, compressed, x, whole_d, sum(flops_d.values()), repeats)
    if floor is not None:
        result["structured_floor"] = floor
        result["bare_bound"] = floor["floor_speedup"]
        result["own_rate_floor_bound"] = floor.get("implementation_floor_speedup")
    return result


def summarize(layers, whole_dense, whole_compressed, batch):
    """The sums over converted and unchanged layers, the realized speedups and the Amdahl bound."""
    def total(key, converted):
        return sum(row[key] for row in layers if row["converted"] == converted)
    conv_fd, conv_fc = total("flops_dense", True), total("flops_compressed", True)
    conv_td, conv_tc = total("seconds_dense", True), total("seconds_compressed", True)
    same_td, same_tc = total("seconds_dense", False), total("seconds_compressed", False)
    flops_dense = conv_fd + total("flops_dense", False)
    flops_compressed = conv_fc + total("flops_compressed", False)
    converted_reduction = conv_fd / conv_fc if conv_fc else None
    ideal = same_td + (conv_td / converted_reduction if converted_reduction else 0.0)
    return {"layers": layers, "whole_seconds_dense": whole_dense, "whole_seconds_compressed": whole_compressed,
            "flop_reduction": flops_dense / flops_compressed if flops_compressed else None,
            "speedup": whole_dense / whole_compressed if whole_compressed else None,
            "converted_flop_reduction": converted_reduction,
            "converted_speedup": conv_td / conv_tc if conv_tc else None,
            "unchanged_share_dense": same_td / (same_td + conv_td) if same_td + conv_td else None,
            "unchanged_seconds": [same_td, same_tc],
            "patch_copy_seconds": sum(row.get("seconds_patch_copy", 0.0) for row in layers),
            "bare_products_speedup": _bare_speedup(layers),
            "bare_bound": _bare_bound(layers, same_td),
            "rate_floor_bound": _rate_floor_bound(layers, same_td),
            "rate_floor_bound_measured_dense": _rate_floor_bound(layers, same_td, dense_as_measured=conv_td),
            "own_rate_floor_bound": _rate_floor_bound(layers, same_td, dense_as_measured=conv_td,
                                                      key="seconds_own_rate_floor"),
            "gflops": [_rate(flops_dense, whole_dense, batch), _rate(flops_compressed, whole_compressed, batch)],
            "amdahl_bound": (same_td + conv_td) / ideal if ideal else None}


def _bare_speedup(layers):
    """Dense over converted time of the bare BLAS products, summed over the converted layers that have them."""
    pairs = [row["seconds_bare_products"] for row in layers if row.get("seconds_bare_products")]
    return sum(d for d, _ in pairs) / sum(c for _, c in pairs) if pairs else None


def _bare_bound(layers, unchanged):
    """The whole-network speedup if both networks ran their converted layers at the floor (the patch copy,
    which both pay, plus the bare BLAS products) and their unchanged layers as measured on the dense side;
    None unless every converted layer has its bare products timed."""
    converted = [row for row in layers if row["converted"]]
    if not converted or not all(row.get("seconds_bare_products") for row in converted):
        return None
    copy = sum(row.get("seconds_patch_copy", 0.0) for row in converted)
    dense = sum(row["seconds_bare_products"][0] for row in converted)
    compressed = sum(row["seconds_bare_products"][1] for row in converted)
    return (unchanged + copy + dense) / (unchanged + copy + compressed)


def _rate_floor_bound(layers, unchanged, dense_as_measured=None, key=None):
    """The whole-network speedup if both networks ran their converted layers at the rate floor
    (rate_floor: the patches and bias both forms pay, the products at the dense product's rate) and their
    unchanged layers as measured on the dense side; with dense_as_measured (the dense converted layers'
    measured seconds), the compressed network at that floor against the dense one as it runs: the most
    the measured speedup could reach; with key "seconds_own_rate_floor" as well, the compressed network with
    its products at their own shapes' rate (layer_floors.rate_floor) against the dense one as it runs. None
    for a model measured as one layer (a recurrent layer's other work is not in the floor) or with a
    converted layer that has no floor."""
    converted = [row for row in layers if row["converted"]]
    if not converted or [row["layer"] for row in layers] == ["(whole)"] \
            or not all("seconds_rate_floor" in row for row in converted):
        return None
    dense = sum(row["seconds_rate_floor"][0] for row in converted) if dense_as_measured is None \
        else dense_as_measured
    if key is None:
        compressed = sum(row["seconds_rate_floor"][1] for row in converted)
    elif all(key in row for row in converted):
        compressed = sum(row[key] for row in converted)
    else:
        return None
    return (unchanged + dense) / (unchanged + compressed)


def _rate(flops_per_example, seconds, batch):
    """Achieved GFLOP/s of a whole forward pass (FLOPs per example times the batch, over its time)."""
    return flops_per_example * batch / seconds / 1e9 if seconds else None


def _x(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}x"


def _ms(seconds):
    return "-" if seconds is None else f"{1e3 * seconds:.3f}"


def _pair_ms(pair):
    return "-" if pair is None else f"{_ms(pair[0])} / {_ms(pair[1])}"


def table(rows):
    lines = ["| case | FLOP reduction | speedup | 60% target | unchanged layers' share of dense time | "
             "bound if converted layers ran at their FLOP reduction | converted layers: FLOP reduction / speedup | "
             "bare BLAS products of the converted layers: speedup | whole-network speedup at the floor (wavelet: "
             "FLOPs at the dense rate + permutation; products: bare BLAS on whole-batch patches + their copy, which "
             "the chunked pass without a graph can beat, so for convolutions no bound) | "
             "rate floor: both at it / compressed at it against the dense as measured (unchanged layers as "
             "measured; converted layers: the patches and bias both pay, chunked as the pass forms them, and "
             "the products at the dense product's rate) / compressed with its products at their own shapes' BLAS "
             "rate, formed as the pass forms them at the best of several chunk sizes, against the dense as measured "
             "(wavelet: its layers at the fastest implementation measured, bench/structured_floor.py) | "
             "GFLOP/s dense / compressed | "
             "patch copy in converted convs (ms, paid by both) | ops per forward dense / compressed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        share = r["unchanged_share_dense"]
        lines.append(f"| {name} | {_x(r['flop_reduction'])} | {_x(r['speedup'])} | "
                     f"{_x(None if r['flop_reduction'] is None else 0.6 * r['flop_reduction'])} | "
                     f"{'-' if share is None else f'{100 * share:.0f}%'} | {_x(r['amdahl_bound'])} | "
                     f"{_x(r['converted_flop_reduction'])} / {_x(r['converted_speedup'])} | "
                     f"{_x(r['bare_products_speedup'])} | {_x(r['bare_bound'])} | {_x(r.get('rate_floor_bound'))} / "
                     f"{_x(r.get('rate_floor_bound_measured_dense'))} / {_x(r.get('own_rate_floor_bound'))} | "
                     f"{r['gflops'][0]:.1f} / {r['gflops'][1]:.1f} | {1e3 * r['patch_copy_seconds']:.3f} | "
                     f"{r['ops_dense']:.0f} / {r['ops_compressed']:.0f} |")
    return "\n".join(lines)


def layer_table(name, r):
    lines = [f"**{name}**", "", "| layer | dense -> compressed | FLOPs/example | ms dense / compressed | "
             "of which patch copy (ms) | rate floor dense / compressed (ms) |", "|---|---|---:|---:|---:|---:|"]
    for row in r["layers"]:
        kind = row["type_dense"] if row["type_dense"] == row["type_compressed"] else \
            f"{row['type_dense']} -> {row['type_compressed']}"
        lines.append(f"| {row['layer']} | {kind} | {row['flops_dense']:,.0f} -> {row['flops_compressed']:,.0f} | "
                     f"{1e3 * row['seconds_dense']:.3f} / {1e3 * row['seconds_compressed']:.3f} | "
                     f"{_ms(row.get('seconds_patch_copy'))} | {_pair_ms(row.get('seconds_rate_floor'))} |")
    top = sorted(r["op_seconds_compressed"].items(), key=lambda kv: -kv[1])[:4]
    lines += ["", "Slowest operations of the compressed forward (ms per forward): "
              + ", ".join(f"{op} {1e3 * sec:.3f}" for op, sec in top) + "."]
    if r.get("structured_floor"):
        floor = r["structured_floor"]
        lines += ["", f"Floor of a structured wavelet implementation: {floor['parts']}: at least "
                  f"{1e3 * floor['floor_seconds']:.3f} ms against the dense {1e3 * r['whole_seconds_dense']:.3f} "
                  f"ms, a speedup of at most {floor['floor_speedup']:.1f}x (60% target "
                  f"{0.6 * r['flop_reduction']:.1f}x)."]
        if floor.get("implementation_floor_speedup"):
            each = ", ".join(f"{name} {1e6 * sec:.0f} us" for name, sec in floor["implementation_seconds_per_step"].items())
            lines += ["", f"With the wavelet layers at the fastest implementation measured (per call, all wavelet "
                      f"layers together: {each}) and everything else as the dense model runs it: "
                      f"{1e3 * floor['implementation_floor_seconds']:.3f} ms, a speedup of "
                      f"{floor['implementation_floor_speedup']:.2f}x."]
    if r.get("pass_seconds"):
        one, ops = r["pass_seconds"], r["ops_compressed"]
        dense = r["whole_seconds_dense"]
        chain = (f" The {ops:.0f} operations of the compressed forward, at one such pass each, take at least "
                 f"{1e3 * ops * one:.3f} ms: a speedup of at most {dense / (ops * one):.1f}x for this chain of "
                 "operations." if ops >= 1 else " The compressed forward runs as one fused pass per row.")
        lines += ["", f"One pass over the activations (a copy): {1e3 * one:.3f} ms.{chain} One fused pass allows "
                  f"at most {dense / one:.0f}x."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--cases", default=None, help="comma list of bench/inference.py case names (default: "
                                                 "every case with a FLOP reduction of 2x or more)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    return p.parse_args(argv)


DEFAULT_CASES = ("BasisConv LeNet-5", "BasisConv widecnn", "low-rank LeNet-300-100", "low-rank LeNet-5",
                 "WaveletLinear n=1024", "WaveletLinear n=4096", "GRU wavelet state+reset", "GRU low-rank")


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    import engine
    from bench.inference import _cases
    engine.manual_seed(0)
    cases = _cases()
    names = DEFAULT_CASES if args.cases is None else [s.strip() for s in args.cases.split(",")]
    unknown = [n for n in names if n not in cases]
    if unknown:
        print(f"bench/layer_times.py: unknown cases {unknown}; valid: {list(cases)}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    rows = []
    for name in names:
        dense_builder, compress, inputs = cases[name]
        dense = dense_builder().eval()
        compressed = compress(copy.deepcopy(dense).train()).eval()
        rows.append((name, breakdown(dense, compressed, inputs(args.batch), args.repeats)))
        print(f"{name}: done", flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "batch": args.batch, "threads": args.threads, "repeats": args.repeats, "cores": os.cpu_count(),
            "machine": machine_description(), "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0]}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "layer_times")
    with open(stem + ".json", "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "rows": dict(rows)}, fh, indent=2)
    text = "\n\n".join([table(rows)] + [layer_table(n, r) for n, r in rows])
    with open(stem + ".md", "w", encoding="utf-8") as fh:
        fh.write(f"# Inference time per layer ({meta['date']}, batch {args.batch}, {args.threads} thread(s), "
                 f"median of {args.repeats})\n\n{meta['machine']}; 1-minute load average {load_before:.2f} "
                 f"before, {meta['load_1min_after']:.2f} after.\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
