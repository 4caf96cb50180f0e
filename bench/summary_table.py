"""RESULTS.md's summary table, read from results/<row>.json as bench/headline.py writes them.

Usage: python bench/summary_table.py [--results results]    (prints the Markdown table)

Each row names its target, the result files behind it and how the target is read; a row whose runs
have not been made says so instead of showing a number. The mean +- std (sample, over seeds) is of
the test metric of the setting chosen on validation.
"""
import argparse
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# the SCADA rows' ratio (the largest within 0.5 point of dense on validation, seed 0) and the dense
# run with at least the low-rank recipe's budget (8 epochs + the chosen fine-tune epochs)
SCADA_LENET300 = "scada-lenet300-r50"
SCADA_LENET5 = "scada-lenet5-r100"
LOWRANK_LENET300_DENSE = "dense-lenet300-momentum11"


def _load(results, name):
    path = os.path.join(results, f"{name}.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def _percent(stats):
    return f"{100 * stats['mean']:.2f}% +- {100 * (stats['std'] or 0):.2f}"


def _figure(run, key):
    stats = (run.get("figures") or {}).get(key)
    return None if stats is None else stats["mean"]


# (row, target text, paper's figure, result files, check(runs) -> (our figure text, met or not))
def _dense(threshold):
    def check(runs):
        run = runs[0]
        return _percent(run["test"]), run["test"]["mean"] >= threshold
    return check


def _adding(runs):
    run = runs[0]
    return f"MSE {run['test']['mean']:.2e} +- {run['test']['std'] or 0:.1e}", run["test"]["mean"] < 1e-3


def _wavelet_cnn(runs):
    run = runs[0]
    params = _figure(run, "params")
    return f"{_percent(run['test'])} at {params:,.0f} params", run["test"]["mean"] >= 0.9916 and params <= 36030


def _tucker_bytes(ratio):
    def check(runs):
        compressed, dense = runs
        q8 = (compressed.get("quantized_test") or compressed["test"])
        byte_ratio = _figure(compressed, "quantized_bytes_ratio")
        gap = 100 * (q8["mean"] - dense["test"]["mean"])
        text = (f"{_percent(q8)} (8-bit) at {byte_ratio:.1f}x bytes ({_figure(compressed, 'params_ratio'):.1f}x "
                f"float values); dense {_percent(dense['test'])}; gap {gap:+.2f}")
        return text, byte_ratio is not None and byte_ratio >= ratio and gap >= -0.5
    return check


def _gap(compressed, dense):
    """Points of test accuracy the compressed mean lies above (+) or below (-) the dense mean."""
    return 100 * (compressed["test"]["mean"] - dense["test"]["mean"])


def _copy(runs):
    run = runs[0]
    recall = (run.get("test_other") or {}).get("accuracy")
    if recall is None:
        return "recall not recorded", False
    return (f"recall {_percent(recall)} (test cross-entropy {run['test']['mean']:.1e} +- "
            f"{run['test']['std'] or 0:.1e})"), recall["mean"] >= 0.99


def _scada(runs):
    compressed, dense = runs
    gap = _gap(compressed, dense)
    return (f"{_percent(compressed['test'])} at {_figure(compressed, 'params_ratio'):.1f}x params "
            f"({_figure(compressed, 'params'):,.0f}); dense {_percent(dense['test'])}; gap {gap:+.2f}"), gap >= -0.5


def _stronger(denses):
    """The dense run with the higher test mean: the fine-tune rows compare with the stronger of the
    dense net and the dense net trained for the same extra epoch (an extra epoch can lower it)."""
    return max(denses, key=lambda run: run["test"]["mean"])


def _dense_text(denses, dense):
    if len(denses) == 1:
        return f"dense {_percent(dense['test'])}"
    others = ", ".join(_percent(run["test"]) for run in denses if run is not dense)
    return f"dense {_percent(dense['test'])} (the stronger; also {others})"


def _scada_stronger(runs):
    """As _scada, against the stronger of several dense runs (e.g. two learning-rate grids)."""
    compressed, *denses = runs
    dense = _stronger(denses)
    gap = _gap(compressed, dense)
    return (f"{_percent(compressed['test'])} at {_figure(compressed, 'params_ratio'):.1f}x params "
            f"({_figure(compressed, 'params'):,.0f}); {_dense_text(denses, dense)}; gap {gap:+.2f}"), gap >= -0.5


def _basis(runs):
    compressed, *denses = runs
    dense = _stronger(denses)
    gap = _gap(compressed, dense)
    flops = _figure(compressed, "flops_ratio")
    learnable = _figure(compressed, "params") * _figure(compressed, "params_ratio") / _figure(compressed, "learnable")
    return (f"{_percent(compressed['test'])}: {flops:.2f}x fewer FLOPs, {learnable:.1f}x fewer learnable; "
            f"{_dense_text(denses, dense)}; gap {gap:+.2f}"), \
        flops >= 2 and learnable >= 5 and gap >= -0.5


def _lowrank(runs):
    aware, posthoc, *denses = runs
    dense = _stronger(denses)
    gap = _gap(aware, dense)
    fewer = 100 * (1 - 1 / _figure(aware, "params_ratio"))
    return (f"{_percent(aware['test'])} at {fewer:.1f}% fewer params; post-hoc SVD, same size "
            f"{_percent(posthoc['test'])}; {_dense_text(denses, dense)}; gap {gap:+.2f}"), \
        fewer >= 90 and gap >= -0.5 and aware["test"]["mean"] > posthoc["test"]["mean"]


ROWS = [
    ("dense LeNet-300-100", ">= 98.3%", "98.4% (ADA-Tucker paper's baseline)", ["dense-lenet300"], _dense(0.983)),
    ("dense LeNet-5", ">= 99.2%", "99.2%", ["dense-lenet5"], _dense(0.992)),
    ("wavelet CNN (MNIST)", ">= 99.16% at <= 36,030 params", "99.16%", ["wavelet-cnn"], _wavelet_cnn),
    ("adding, T=150, GRU 128, state_reset", "test MSE < 1e-3", "3.1e-4 (hidden 512)",
     ["adding-gru128-state_reset"], _adding),
    ("copy memory, T=60, GRU 128, state_reset", ">= 99% recall", "99.05% (hidden 512)",
     ["copy-gru128-state_reset"], _copy),
    ("ADA-Tucker LeNet-300-100 (+-1 px shifts, dense likewise)", ">= 233x bytes, 8-bit, within 0.5 point",
     "233x", ["tucker-lenet300-234x", "dense-lenet300-shift1"], _tucker_bytes(233)),
    ("ADA-Tucker LeNet-5", ">= 691x bytes, 8-bit, within 0.5 point", "691x",
     ["tucker-lenet5-696x", "dense-lenet5"], _tucker_bytes(691)),
    ("SCADA-Tucker LeNet-300-100 (+-1 px shifts, dense likewise)", "best ratio within 0.5 point", "-",
     [SCADA_LENET300, "dense-lenet300-shift1"], _scada),
    ("SCADA-Tucker LeNet-300-100, the same ratio with the learning rate chosen on validation (3e-3 / 1e-2 / "
     "3e-2; the dense net's likewise, 3e-4 / 1e-3 / 3e-3), tried after the row above missed, both kept",
     "best ratio within 0.5 point", "-",
     ["scada-lenet300-r50-lr", "dense-lenet300-shift1-lr", "dense-lenet300-shift1"], _scada_stronger),
    ("SCADA-Tucker LeNet-5", "best ratio within 0.5 point", "-", [SCADA_LENET5, "dense-lenet5"], _scada),
    ("BasisConv LeNet-5 (from the dense net, 1 fine-tune epoch)",
     ">= 2x fewer FLOPs, >= 5x fewer learnable, within 0.5 point", "-",
     ["basis-lenet5", "dense-lenet5-plus1-adam", "dense-lenet5"], _basis),
    ("BasisConv widecnn (from the dense net, 1 fine-tune epoch)",
     ">= 2x fewer FLOPs, >= 5x fewer learnable, within 0.5 point", "-",
     ["basis-widecnn", "dense-widecnn-plus1", "dense-widecnn"], _basis),
    ("low rank LeNet-300-100 (compression-aware, truncated, fine-tuned)",
     ">= 90% fewer params within 0.5 point, ahead of post-hoc SVD", "-",
     ["lowrank-lenet300-ca", "lowrank-lenet300-posthoc", LOWRANK_LENET300_DENSE], _lowrank),
    ("low rank LeNet-300-100, the base learning rate chosen on validation for all three runs (0.02 / 0.05 / "
     "0.1; post-hoc SVD also over its fine-tune rate), tried after the row above missed, both kept",
     ">= 90% fewer params within 0.5 point, ahead of post-hoc SVD", "-",
     ["lowrank-lenet300-ca-lr", "lowrank-lenet300-posthoc-lr", "dense-lenet300-momentum11-lr",
      LOWRANK_LENET300_DENSE], _lowrank),
    ("low rank LeNet-5 (one compression-aware epoch from the dense net, truncated)",
     ">= 90% fewer params within 0.5 point, ahead of post-hoc SVD", "-",
     ["lowrank-lenet5-ca", "lowrank-lenet5-posthoc", "dense-lenet5-plus1-momentum", "dense-lenet5"], _lowrank),
    ("low rank LeNet-5, the first recipe with its tau grid extended below 0.05 (0.01 / 0.02 / 0.05), from a "
     "fresh set of dense nets; tried after the rows above missed, all kept",
     ">= 90% fewer params within 0.5 point, ahead of post-hoc SVD", "-",
     ["lowrank-lenet5-ca-tau", "lowrank-lenet5-posthoc-r2", "dense-lenet5-r2-plus1-momentum", "dense-lenet5-r2"],
     _lowrank),
    ("low rank LeNet-5 (compression-aware from scratch, truncated, 1 fine-tune epoch; tried after the row "
     "above missed, both kept)", ">= 90% fewer params within 0.5 point, ahead of post-hoc SVD", "-",
     ["lowrank-lenet5-scratch-ca", "lowrank-lenet5-scratch-posthoc", "dense-lenet5-e9", "dense-lenet5"],
     _lowrank),
]
NOT_RUN = []


def _portable(command):
    """The command with this machine's paths written as a user's checkout sees them: the data under
    ../shared, the runs under headline.py's default root."""
    outside = os.path.dirname(ROOT)
    return (command.replace(os.path.join(outside, "shared"), os.path.join("..", "shared"))
            .replace(os.path.join(outside, "runs", "headline"), os.path.join("runs", "headline")))


def table(results):
    lines = ["| row | target | ours: 3-seed test mean +- std | paper | met | command |",
             "|---|---|---|---|---|---|"]
    for row, target, paper, names, check in ROWS:
        runs = [_load(results, n) for n in names]
        if any(r is None for r in runs):
            lines.append(f"| {row} | {target} | not re-run yet | {paper} | - | - |")
            continue
        ours, met = check(runs)
        seeds = min(len(r["seeds"]) for r in runs)
        note = "" if seeds >= 3 else f" ({seeds} seeds only)"
        commands = "<br>".join(f"`{_portable(r['command'])}` ({n})" for r, n in zip(runs, names))
        lines.append(f"| {row} | {target} | {ours}{note} | {paper} | {'yes' if met else 'NO'} | {commands} |")
    for row, target, paper in NOT_RUN:
        lines.append(f"| {row} | {target} | not re-run yet | {paper} | - | - |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=os.path.join(ROOT, "results"))
    print(table(parser.parse_args(argv).results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
