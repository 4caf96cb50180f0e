"""Parameter, FLOP and byte counting per layer, and the dense-versus-compressed comparison table."""
import engine
from engine.tensor import Tensor


def _has_flops(module):
    return callable(getattr(type(module), "flops", None))


def _batch_size(example_input):
    """Leading size of the (first) input array: FLOPs are reported per example."""
    first = example_input[0] if isinstance(example_input, (tuple, list)) else example_input
    shape = getattr(first, "shape", None)
    if not shape:
        raise ValueError("report: example_input must be an array or Tensor with a batch axis, "
                         f"got {type(first).__name__} of shape {shape}")
    return int(shape[0])


def _per_example(total, batch):
    return total // batch if total % batch == 0 else total / batch


def _run_counting(model, example_input):
    """One forward pass in eval mode without a graph; returns (calls per module, flops per module, output
    shape per module, batch size). Each module's ``flops`` is summed over all of its calls."""
    batch = _batch_size(example_input)
    flops, calls, out_shapes = {}, {}, {}
    removers = []
    training = {id(m): m.training for m in model.modules()}

    def make_hook(name):
        def hook(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if _has_flops(module):
                flops[name] = flops.get(name, 0) + int(module.flops(inputs, output))
            first = output[0] if isinstance(output, (tuple, list)) else output
            if hasattr(first, "shape"):
                out_shapes.setdefault(name, tuple(first.shape))
        return hook

    for name, module in model.named_modules():
        removers.append(module.register_forward_hook(make_hook(name)))
    try:
        model.eval()
        args = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
        with engine.no_grad():
            model(*args)
    finally:
        for remove in removers:
            remove()
        for m in model.modules():
            object.__setattr__(m, "training", training[id(m)])
    return calls, flops, out_shapes, batch


def count_flops(model, example_input):
    """(FLOPs per example, {module name: FLOPs per example}) of one forward pass on `example_input`.

    Every module that defines ``flops(inputs, output)`` counts its own work for
    one call over the whole batch (a multiply-add is 2 FLOPs); calls are summed
    (a recurrent cell called T times counts T times) and divided by the batch size.
    """
    _, flops, _, batch = _run_counting(model, example_input)
    per_module = {name: _per_example(total, batch) for name, total in flops.items()}
    return _per_example(sum(flops.values()), batch), per_module


def _own_parameters(model):
    """{module name: [(param name, Parameter)]}, each shared Parameter given to its first owner only."""
    seen, owned = set(), {}
    for mod_name, module in model.named_modules():
        mine = []
        for name, p in module._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            mine.append((name, p))
        owned[mod_name] = mine
    return owned


def summary(model, example_input=None):
    """Rows (dicts) per layer: name, type, shapes (own parameters), output (per-example shape), params
    (stored float values incl. biases; a shared tensor counted once), learnable (requires_grad ones),
    flops (per example; None without an example input) and bytes (stored values * itemsize).

    Listed: every module that owns parameters or counts FLOPs. Buffers (index vectors,
    running statistics) are not parameters and are not counted.
    """
    if example_input is not None:
        calls, flops, out_shapes, batch = _run_counting(model, example_input)
    else:
        calls, flops, out_shapes, batch = {}, {}, {}, 1
    owned = _own_parameters(model)
    rows = []
    for name, module in model.named_modules():
        params = owned[name]
        if not params and not _has_flops(module):
            continue
        stored = sum(p.size for _, p in params)
        out = out_shapes.get(name)
        rows.append({
            "name": name or "(model)",
            "type": type(module).__name__,
            "shapes": ", ".join("x".join(str(d) for d in p.shape) or "scalar" for _, p in params),
            "output": "x".join(str(d) for d in out[1:]) if out else "",
            "params": stored,
            "learnable": sum(p.size for _, p in params if p.requires_grad),
            "flops": (_per_example(flops.get(name, 0), batch) if example_input is not None else None),
            "calls": calls.get(name, 0),
            "bytes": sum(p.size * p.dtype.itemsize for _, p in params),
        })
    return rows


def totals(rows):
    """Sums of params, learnable, flops (None when unknown) and bytes over summary rows."""
    flops = [r["flops"] for r in rows]
    return {
        "params": sum(r["params"] for r in rows),
        "learnable": sum(r["learnable"] for r in rows),
        "flops": None if any(f is None for f in flops) else sum(flops),
        "bytes": sum(r["bytes"] for r in rows),
    }


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def format_summary(rows):
    """A markdown table of summary rows with a total line."""
    lines = ["| layer | type | param shapes | output | params | learnable | FLOPs/example | bytes |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['type']} | {r['shapes']} | {r['output']} | {_fmt(r['params'])} "
                     f"| {_fmt(r['learnable'])} | {_fmt(r['flops'])} | {_fmt(r['bytes'])} |")
    t = totals(rows)
    lines.append(f"| **total** | | | | **{_fmt(t['params'])}** | **{_fmt(t['learnable'])}** "
                 f"| **{_fmt(t['flops'])}** | **{_fmt(t['bytes'])}** |")
    if t["flops"] is None:
        lines.append(f"\nFLOPs \"-\": {NO_FLOPS_REASON}.")
    return "\n".join(lines)


def _ratio(dense, compressed):
    if dense is None or compressed is None:
        return None
    return dense / compressed if compressed else float("inf")


def compare(dense_model, compressed_model, example_input=None):
    """Params, learnable params, FLOPs per example and bytes of both models, with ratios dense/compressed.

    Returns {'params': {'dense', 'compressed', 'ratio'}, 'learnable': {...}, 'flops': {...}, 'bytes': {...}}.
    """
    return compare_rows(summary(dense_model, example_input), summary(compressed_model, example_input))


def compare_rows(dense_rows, compressed_rows):
    """compare() from two summaries already taken (train.py counts the dense model before compressing)."""
    dense, small = totals(dense_rows), totals(compressed_rows)
    return {key: {"dense": dense[key], "compressed": small[key], "ratio": _ratio(dense[key], small[key])}
            for key in ("params", "learnable", "flops", "bytes")}


NO_FLOPS_REASON = "FLOPs are counted in one forward pass on an example input; none was given"


def format_compare(comparison, dense_name=None):
    """The comparison as a markdown table (rows stored values / learnable values / FLOPs / bytes, each
    with its ratio); `dense_name` names the dense model in the header. A FLOPs "-" gets a note why."""
    labels = {"params": "stored values", "learnable": "learnable values", "flops": "FLOPs/example",
              "bytes": "bytes"}
    dense = f"dense ({dense_name})" if dense_name else "dense"
    lines = [f"| whole network | {dense} | compressed | ratio dense/compressed |", "|---|---:|---:|---:|"]
    unknown = False
    for key, label in labels.items():
        c = comparison.get(key)
        if c is None:
            continue
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:,.2f}x"
        unknown = unknown or c["ratio"] is None
        lines.append(f"| {label} | {_fmt(c['dense'])} | {_fmt(c['compressed'])} | {ratio} |")
    if unknown:
        lines.append(f"\n\"-\": {NO_FLOPS_REASON}.")
    return "\n".join(lines)


def as_example(array, count=2):
    """The first `count` examples of a batch array (kept small so counting costs little)."""
    if isinstance(array, Tensor):
        array = array.data
    return array[:count]
