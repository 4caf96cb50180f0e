"""Compression-aware training (METHODS.md s.4): nuclear-norm and sparse-group-lasso proximal steps, truncation.

Alvarez & Salzmann 2017. The data loss is minimised by the ordinary optimiser;
after every step (or every k-th) the proximal operator of

    R(W) = sum_l tau_l ||W_l||_*  +  lambda sum_units sqrt(|g|) ||w_g||_2  +  mu ||W||_1

is applied with step size eta = (current lr of the layer's parameter group) * k.
After training each layer is cut into two thin layers at the surviving rank.

Choices of ours (where the paper leaves room):
- Weight matrices: Dense as stored, W (n_in, n_out). A conv kernel (N, C, kh, kw)
  as 'filters' = N x (C kh kw) (the DEFAULT; truncates to a conv with r filters
  then a 1x1 conv) or 'spatial' = (C kh) x (kw N) (DecomposeMe's view; truncates to
  a vertical kh x 1 conv with r filters then a horizontal 1 x kw conv).
- Groups are output units: a Dense column W[:, j] or a conv filter W[n] together
  with that unit's bias, so a zeroed group is a unit whose output is exactly 0.
  The l1 term covers the weights only (not biases).
- Prox order: l1 soft-threshold, then group soft-threshold (together the exact
  prox of the sparse group lasso), then singular value thresholding (a sequential
  split of the sum's prox, as in the paper's alternating steps).
- With a prox every k steps the step size is k * lr, so the shrinkage per epoch
  does not depend on k.
- truncate() with neither energy nor rank keeps the singular values above
  `tol` * s_max (the ones that survived); layers whose factored form would not
  be smaller stay dense unless keep_if_larger=False.
"""

import numpy as np

from engine import backend
from layers.dense import Dense
from layers.module import Sequential

from .basis import output_positions
from .layer_swap import find_layers, replace_module
from .lowrank_layers import LowRankConv2d, LowRankDense, _geometry, _make_conv, describe, rebuild  # noqa: F401
from .lowrank_prox import (CONV_RESHAPES, DEFAULT_CONV_RESHAPE, ProximalRegularizer,  # noqa: F401 (public here)
                           _check_reshape, _conv_type, group_soft_threshold, matrix_to_weight, regularizer_value,
                           set_unit_groups, singular_value_threshold, soft_threshold, unit_groups, weight_matrix)
from .plugin import Compressor
from .settings import check_energy, check_rank, number_list as _number_list, per_layer, rank_for_energy


_ZERO_PRESERVING = {"ReLU", "Tanh", "LeakyReLU", "Dropout", "MaxPool2d", "AvgPool2d", "Identity", "Flatten"}


def _dead_units(layer):
    """Boolean mask of output units whose weights and bias are all exactly zero."""
    groups = backend.to_numpy(unit_groups(layer))
    return ~np.any(groups != 0, axis=1)


def _shrink_outputs(layer, keep):
    """A copy of the Dense/Conv2d `layer` keeping only the output units in `keep` (int index array)."""
    w = backend.to_numpy(layer.weight.data)
    b = backend.to_numpy(layer.bias.data) if layer.bias is not None else None
    device = layer.weight.device
    if w.ndim == 2:
        new = Dense(w.shape[0], len(keep), bias=b is not None, dtype=w.dtype)
        new.weight.data = backend.to_device(np.ascontiguousarray(w[:, keep]), device)
    else:
        stride, padding, dilation, _ = _geometry(layer)
        new = _make_conv(w.shape[1], len(keep), w.shape[2:], stride, padding, dilation, b is not None,
                         backend.to_device(np.ascontiguousarray(w[keep]), device))
    if b is not None:
        new.bias.data = backend.to_device(np.ascontiguousarray(b[keep]), device)
    return new


def _shrink_inputs(layer, keep_units, n_units):
    """A copy of `layer` reading only the kept units of a previous layer with n_units outputs."""
    w = backend.to_numpy(layer.weight.data)
    device = layer.weight.device
    if w.ndim == 2:
        per_unit = w.shape[0] // n_units          # a Flatten of (units, H, W) in between
        rows = (keep_units[:, None] * per_unit + np.arange(per_unit)[None, :]).ravel()
        new = Dense(len(rows), w.shape[1], bias=layer.bias is not None, dtype=w.dtype)
        new.weight.data = backend.to_device(np.ascontiguousarray(w[rows]), device)
    else:
        stride, padding, dilation, _ = _geometry(layer)
        new = _make_conv(len(keep_units), w.shape[0], w.shape[2:], stride, padding, dilation,
                         layer.bias is not None, backend.to_device(np.ascontiguousarray(w[:, keep_units]), device))
    if layer.bias is not None:
        new.bias.data = layer.bias.data.copy()
    return new


def drop_dead_units(model, names=None):
    """Remove output units with all-zero weights and bias, with the next layer's matching inputs.

    Only where it is exact: inside a Sequential, a Dense/Conv2d followed (through
    zero-preserving modules: ReLU, Tanh, LeakyReLU, Dropout, pooling, Flatten) by
    another Dense/Conv2d. `names` limits which layers lose units (default all).
    Returns {layer name: units removed}.
    """
    compressible = (Dense, _conv_type())
    removed = {}
    for seq_name, seq in list(model.named_modules()):
        if not isinstance(seq, Sequential):
            continue
        keys = list(seq._modules)
        for i, key in enumerate(keys):
            layer = seq._modules[key]
            full_name = f"{seq_name}.{key}" if seq_name else key
            if not isinstance(layer, compressible) or (names is not None and full_name not in names):
                continue
            nxt = i + 1
            while nxt < len(keys) and type(seq._modules[keys[nxt]]).__name__ in _ZERO_PRESERVING:
                nxt += 1
            if nxt >= len(keys) or not isinstance(seq._modules[keys[nxt]], compressible):
                continue
            following = seq._modules[keys[nxt]]
            dead = _dead_units(layer)
            n_units = dead.size
            in_size = following.weight.shape[0] if following.weight.ndim == 2 else following.weight.shape[1]
            if not dead.any() or in_size % n_units:
                continue
            keep = np.flatnonzero(~dead)
            if keep.size == 0:
                keep = np.array([0])              # keep one (zero) unit rather than an empty layer
            prefix = f"{seq_name}." if seq_name else ""
            replace_module(model, prefix + key, _shrink_outputs(layer, keep))
            replace_module(model, prefix + keys[nxt], _shrink_inputs(following, keep, n_units))
            removed[full_name] = int(n_units - keep.size)
    return removed


# ---------------------------------------------------------------- truncation
def _layer_flops(layer, positions):
    """Multiply-add FLOPs (x2) of a Dense/Conv2d per example, given its output positions per example."""
    w = layer.weight
    return 2 * int(np.prod(w.shape)) * positions


def _params(module):
    return sum(p.size for p in module.parameters())


def truncate(model, energy=None, rank=None, layers=None, conv_reshape=DEFAULT_CONV_RESHAPE,
             drop_units=True, keep_if_larger=True, tol=1e-6, example_input=None):
    """Cut every Dense / Conv2d (or the named `layers`) of `model` into two thin layers, in place.

    The rank per layer is `rank` (int, list or dict name -> int) if given, else the
    smallest reaching `energy` (threshold in (0, 1], same forms), else the number of
    singular values above tol * s_max. drop_units first removes all-zero output units
    (see drop_dead_units). Returns a report: per-layer rows (name, matrix shape,
    full rank, kept rank r, params before/after, FLOPs per example before/after
    when example_input is given, factored or kept dense) and whole-model params.
    """
    conv_reshape = _check_reshape(conv_reshape, "truncate")
    compressible = (Dense, _conv_type())
    params_before = model.num_parameters()
    candidates = find_layers(model, compressible, layers, "truncate")
    names = [n for n, _ in candidates]
    ranks = per_layer(rank, names, "rank", "truncate")
    energies = per_layer(energy, names, "energy", "truncate")
    for name in names:
        if ranks[name] is not None:
            check_rank(ranks[name], f"truncate ({name})")
        if energies[name] is not None:
            check_energy(energies[name], f"truncate ({name})")
    before = {name: (_params(layer), tuple(layer.weight.shape)) for name, layer in candidates}
    positions = (output_positions(model, example_input, [l for _, l in candidates])
                 if example_input is not None else {})
    positions = {name: positions.get(id(layer)) for name, layer in candidates}
    flops_before = {name: _layer_flops(layer, positions[name]) if positions[name] else None
                    for name, layer in candidates}

    dropped = drop_dead_units(model, names) if drop_units else {}
    current = dict(find_layers(model, compressible, None, "truncate"))
    rows = []
    for name in names:
        layer = current[name]
        m = backend.to_numpy(weight_matrix(layer.weight.data, conv_reshape)).astype(np.float64)
        s = np.linalg.svd(m, full_matrices=False, compute_uv=False)
        full_rank = rank_for_energy(s, 1.0)
        if ranks[name] is not None:
            r = min(ranks[name], len(s))
        elif energies[name] is not None:
            r = rank_for_energy(s, energies[name])
        else:
            r = max(1, int((s > tol * s[0]).sum())) if s[0] > 0 else 1
        rows_m, cols_m = m.shape
        factored = not (keep_if_larger and r * (rows_m + cols_m) >= rows_m * cols_m)
        if factored:
            new = (LowRankDense.from_dense(layer, r) if isinstance(layer, Dense)
                   else LowRankConv2d.from_conv(layer, r, conv_reshape))
            replace_module(model, name, new)
        else:
            new = layer
        row = {"name": name, "shape": list(before[name][1]), "matrix": [rows_m, cols_m],
               "units_dropped": dropped.get(name, 0), "full_rank": full_rank, "rank": r,
               "factored": factored, "params_before": before[name][0], "params_after": _params(new),
               "energy_kept": float((s[:r] ** 2).sum() / max((s ** 2).sum(), 1e-300))}
        rows.append(row)
    # recount after every replacement: dropping units also shrinks the next layer's inputs
    modules = dict(model.named_modules())
    for row in rows:
        row["params_after"] = _params(modules[row["name"]])
    if example_input is not None:
        parts = {row["name"]: _factors(modules[row["name"]]) for row in rows}
        after = output_positions(model, example_input, [p for ps in parts.values() for p in ps])
        for row in rows:
            row["flops_before"] = flops_before[row["name"]]
            row["flops_after"] = sum(_layer_flops(p, after.get(id(p), 0)) for p in parts[row["name"]])
    report = {"method": "lowrank", "conv_reshape": conv_reshape, "layers": rows,
              "params_before": params_before, "params_after": model.num_parameters(),
              "layer_params_before": sum(r["params_before"] for r in rows),
              "layer_params_after": sum(r["params_after"] for r in rows)}
    if all("flops_before" in r for r in rows):
        report["layer_flops_before"] = sum(r["flops_before"] for r in rows)
        report["layer_flops_after"] = sum(r["flops_after"] for r in rows)
    return report


def _factors(module):
    """The Dense/Conv2d layers that do a (possibly factored) layer's work."""
    if isinstance(module, (LowRankDense, LowRankConv2d)):
        return [module.first, module.second]
    return [module]


def ranks_of(report):
    """{layer name: kept rank} of a truncate() report (to truncate another network at the same ranks)."""
    return {r["name"]: r["rank"] for r in report["layers"]}


def format_report(report):
    """The truncate() report as a markdown table."""
    lines = ["| layer | matrix | units dropped | full rank | kept rank | factored | params before | "
             "params after |", "|---" * 8 + "|"]
    for r in report["layers"]:
        lines.append(f"| {r['name']} | {r['matrix'][0]}x{r['matrix'][1]} | {r['units_dropped']} | "
                     f"{r['full_rank']} | {r['rank']} | {'yes' if r['factored'] else 'no'} | "
                     f"{r['params_before']:,} | {r['params_after']:,} |")
    before, after = report["layer_params_before"], report["layer_params_after"]
    return ("\n".join(lines) + f"\n\nlayer params {before:,} -> {after:,} "
            f"({100 * (1 - after / before):.1f}% fewer); model params {report['params_before']:,} -> "
            f"{report['params_after']:,}")


# ---------------------------------------------------------------- train.py plugin
# --compress lowrank alone (and LowRankCompressor from Python) compresses: a nuclear-norm prox every 10th
# step (RESULTS.md's LeNet-300 settings) and truncation at 80% of each layer's singular-value energy (at
# 90% the nearly flat spectrum of a briefly trained layer keeps so many ranks that no layer gets smaller).
DEFAULTS = {"tau": 0.02, "group_lambda": 0.0, "l1": 0.0, "every": 10, "energy": 0.8, "rank": None}


class LowRankCompressor(Compressor):
    """train.py's --compress lowrank: proximal nuclear-norm (+ group lasso) training, then truncation."""

    name = "lowrank"
    describe = staticmethod(describe)
    rebuild = staticmethod(rebuild)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--lowrank-tau", type=_number_list(float, "--lowrank-tau"), default=DEFAULTS["tau"],
                            help="nuclear-norm strength tau (one value or a comma list, one per "
                                 "Dense/Conv2d layer in model order; 0: no prox, no SVDs during training)")
        parser.add_argument("--lowrank-group-lambda", type=_number_list(float, "--lowrank-group-lambda"),
                            default=DEFAULTS["group_lambda"],
                            help="group-lasso strength lambda (groups = output units)")
        parser.add_argument("--lowrank-l1", type=_number_list(float, "--lowrank-l1"), default=DEFAULTS["l1"],
                            help="l1 strength of the sparse group lasso")
        parser.add_argument("--lowrank-every", type=int, default=DEFAULTS["every"],
                            help="apply the proximal step every k optimiser steps (step size k * lr)")
        parser.add_argument("--lowrank-energy", type=_number_list(float, "--lowrank-energy"),
                            default=DEFAULTS["energy"],
                            help="truncate each layer to the rank keeping this energy fraction (1: keep "
                                 "every singular value the prox left)")
        parser.add_argument("--lowrank-rank", type=_number_list(int, "--lowrank-rank"), default=DEFAULTS["rank"],
                            help="truncate to this rank (one value or a comma list); overrides energy")
        parser.add_argument("--lowrank-conv-reshape", choices=CONV_RESHAPES, default=DEFAULT_CONV_RESHAPE,
                            help="conv kernel as 'filters' N x Ck^2 (conv + 1x1) or 'spatial' "
                                 "(Ck) x (kN) (k x 1 then 1 x k)")
        parser.add_argument("--lowrank-layers", default=None,
                            help="comma-separated names of the layers to regularise and truncate")
        parser.add_argument("--lowrank-no-truncate", action="store_true",
                            help="train with the regulariser but keep the dense layers")

    def __init__(self, args):
        super().__init__(args)
        get = lambda key, default=None: getattr(args, key, default)  # noqa: E731
        self.tau = get("lowrank_tau", DEFAULTS["tau"])
        self.group_lambda = get("lowrank_group_lambda", DEFAULTS["group_lambda"])
        self.l1 = get("lowrank_l1", DEFAULTS["l1"])
        self.every = get("lowrank_every", DEFAULTS["every"])
        self.energy = get("lowrank_energy", DEFAULTS["energy"])
        self.rank = get("lowrank_rank", DEFAULTS["rank"])
        self.conv_reshape = get("lowrank_conv_reshape", DEFAULT_CONV_RESHAPE)
        self.layers = get("lowrank_layers")
        self.no_truncate = bool(get("lowrank_no_truncate", False))
        if self.energy is not None:
            for e in (self.energy if isinstance(self.energy, list) else [self.energy]):
                check_energy(e, "--lowrank-energy")
        if self.rank is not None:
            for r in (self.rank if isinstance(self.rank, list) else [self.rank]):
                check_rank(r, "--lowrank-rank")
        self.regularizer = None
        self.report = None

    def apply(self, model, task):
        self.regularizer = ProximalRegularizer(model, self.tau, self.group_lambda, self.l1, self.every,
                                               self.conv_reshape, self.layers)
        return model

    def cost_note(self):
        taus = self.tau if isinstance(self.tau, list) else [self.tau]
        if not any(taus):
            return None
        return (f"lowrank: the nuclear-norm prox takes an SVD of every regularised weight every {self.every} "
                f"step(s), so training is slower than dense (--lowrank-every N spaces the SVDs out; "
                f"--lowrank-tau 0 drops them and only truncates)")

    def on_step(self, optimizer, model):
        if self.regularizer is not None and self.report is None:   # no prox after truncation
            self.regularizer.on_step(optimizer)

    def log_values(self, model):
        """Optional extra log columns: the regulariser's value and its terms."""
        if self.regularizer is None or self.report is not None:
            return {}
        return self.regularizer.values()

    def finalize(self, model, task):
        if self.no_truncate:
            return model
        reg = self.regularizer
        keeps_survivors = self.rank is None and (self.energy is None or self.energy == 1.0)
        if reg is not None and keeps_survivors and reg.last_step_size:
            reg.apply(reg.last_step_size)   # end on a proximal iterate so the dropped values are exact zeros
        example = None
        if task is not None:
            try:
                example = next(iter(task.test_batches(2)))[0]
            except Exception:   # FLOP columns are then left out
                example = None
        self.report = truncate(model, energy=self.energy, rank=self.rank, layers=self.layers,
                               conv_reshape=self.conv_reshape, example_input=example)
        if not any(r["factored"] or r["units_dropped"] for r in self.report["layers"]):
            print("lowrank: no layer got smaller (at the kept ranks a factored layer would store more); the "
                  "model stays dense: train longer, raise --lowrank-tau or lower --lowrank-energy", flush=True)
        return model

    def state_dict(self):
        """Proximal-step counters for an exact --resume (JSON-able)."""
        reg = self.regularizer
        return None if reg is None else {"steps": reg.steps, "last_step_size": reg.last_step_size}

    def load_state_dict(self, state):
        if self.regularizer is not None and state:
            self.regularizer.steps = int(state.get("steps", 0))
            self.regularizer.last_step_size = state.get("last_step_size")

    def config(self):
        out = {"name": self.name, "tau": self.tau, "group_lambda": self.group_lambda, "l1": self.l1,
               "every": self.every, "energy": self.energy, "rank": self.rank,
               "conv_reshape": self.conv_reshape, "layers": self.layers}
        if self.report is not None:
            out["ranks"] = ranks_of(self.report)
            out["layer_params_before"] = self.report["layer_params_before"]
            out["layer_params_after"] = self.report["layer_params_after"]
            factored = [r for r in self.report["layers"] if r["factored"]]
            out["factored_params_before"] = sum(r["params_before"] for r in factored)
            out["factored_params_after"] = sum(r["params_after"] for r in factored)
            out["units_dropped"] = {r["name"]: r["units_dropped"] for r in self.report["layers"]}
        return out
