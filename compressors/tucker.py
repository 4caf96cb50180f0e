"""ADA-Tucker and SCADA-Tucker: balanced reshaping, Tucker-form Dense/Conv2d layers, a shared core (METHODS.md s.3).

Zhong et al. 2019. A layer's weight (Dense (n_in, n_out) or Conv2d (N, C, kh, kw))
is flattened in C order, reshaped to D balanced mode sizes m_1..m_D ("dimension
adjustment") and stored as W = C x_1 M_1 ... x_D M_D with core C (k_1..k_D) and
factors M_i (m_i, k_i). The layers (compressors/tucker_layers.py, which also says how the
rebuilt W is cached in eval mode) rebuild W every training forward pass; this module converts
whole models and holds train.py's plugins.

Choices of ours where the paper is silent:
- Dimension adjustment: of all ways to write the count as a product of D sizes >= 2,
  the one with the smallest sum of sizes (ties: the smallest largest size), sizes in
  ascending order. A count with fewer than D prime factors cannot be split: ValueError.
- Core sizes from a target ratio: ranks k_i = clip(round(f m_i), min_rank, m_i) with
  one fraction f solved by bisection (for a layer, or one f for the whole network),
  then single ranks are raised greedily (lowest k_i/m_i first) while the budget holds.
  The budget counts every stored float: ratio = dense params / compressed params,
  biases and uncompressed layers included.
- Options beyond the paper (train.py --tucker-alloc / --tucker-reshape; defaults are the paper's):
  allocation "greedy" (solve_ranks_greedy: grow the mode rank with the most log core size per
  stored value, so small layers are not left with min_rank cores); reshape "aligned" (a weight's
  first index and the rest in separate modes) or "paired" (a permuted reshape in which every mode
  holds a part of both indices, as TT-matrix layers do; the rebuilt tensor is permuted back to the
  weight, so the counts are unchanged); reshape "spatial" (a Dense layer fed by an image or feature
  map through a Flatten: the i-th row, column and channel digits and an output digit share mode i,
  coarse to fine; dense_input_shapes finds the input shapes with one traced forward pass); an order
  per layer (ADA only); a layout per layer (--tucker-layout, parse_layouts: the digits of each
  index and optionally the core sizes, so that a searched allocation is a train.py command). On MNIST "paired" with D = 3 and "greedy" trained far better than the
  paper's reshape; "spatial" did not beat "paired" (RESULTS.md, Issue 5).
- Init (from scratch): factors with orthonormal columns (rows when m_i < k_i) and a
  Gaussian core scaled so that the rebuilt W has the variance of the dense layer's
  default init, 1 / (3 fan_in) (U(-1/sqrt(fan_in), 1/sqrt(fan_in))). With a shared
  core (SCADA) the core is N(0, 1) and each layer's factors carry the scale instead.
  from_weights: HOSVD (M_i = leading left singular vectors of the mode-i unfolding,
  zero columns beyond m_i, core = W x_i M_i^T); SCADA's shared core is then the
  mean of the layers' projected cores (the least-squares core for orthonormal factors).
- Defaults, one set for compress() and train.py (DEFAULTS; chosen by short MNIST probes, see
  RESULTS.md): order D = 4, core sizes >= 2 per mode (a rank-1 mode starved the 10-class output
  layer), ratio 50 when nothing else sets the core sizes (train.py only: where 50 cannot be met, the
  highest of FALLBACK_RATIOS that can, said on screen); --tucker-no-bias drops the converted
  layers' biases (the dense count keeps them), needed to reach ratios such as LeNet-5 at 691x.
- FLOPs per forward call: the dense product/convolution of the rebuilt W (as Dense and
  Conv2d count it) plus the cheapest rebuild chain, counted once per call (the cost of
  a training step's forward; an eval-mode cached call does only the dense part).
"""
import argparse
import math

import numpy as np

import engine
from engine import backend

from .layer_swap import replace_module
from .plugin import Compressor
from .settings import number_list
# the layers stay importable from here too (public names since issue 5)
from .tucker_layers import TuckerConv2d, TuckerDense, _check_ranks, _TuckerWeight  # noqa: F401
from .tucker_layers import describe_scada, describe_tucker, rebuild_tucker
# the shape and rank functions stay importable from here (public names since issue 5)
from .tucker_shapes import parse_layouts  # noqa: F401  (public here since issue 5)
from .tucker_shapes import (ALLOCATIONS, RESHAPES, adjust_dimensions, aligned_shape,  # noqa: F401
                            balanced_shape, paired_shape, prime_factors, solve_ranks,
                            solve_ranks_greedy, solve_shared_k, spatial_shape, tucker_params)
from .tucker_plan import (Conversion, _layer_types, allocate, apply_layouts, check_options, layer_orders,
                          reshape_layers)


# ---------------------------------------------------------------- whole models
def dense_input_shapes(model, example):
    """name -> per-example input shape before flattening, for each Dense layer fed by a Flatten.

    Runs `example` (a small input batch) through `model` in eval mode without a graph and
    watches its Flatten and Dense calls: LeNet-300-100's first layer gives (1, 28, 28) on MNIST
    images, LeNet-5's fc1 (50, 4, 4). Layers fed otherwise are left out. The training flag is
    restored afterwards.
    """
    from layers.activation import Flatten
    dense_type, _ = _layer_types()
    found, last = {}, [None]

    def after_flatten(module, args, output):
        last[0] = tuple(int(v) for v in args[0].shape[module.start_axis:])

    def before_dense(name):
        def hook(module, args):
            shape = last[0]
            if shape is not None and math.prod(shape) == module.n_in:
                found[name] = shape
            last[0] = None
        return hook

    removers = []
    for name, module in model.named_modules():
        if isinstance(module, Flatten):
            removers.append(module.register_forward_hook(after_flatten))
        elif name and isinstance(module, dense_type):
            removers.append(module.register_forward_pre_hook(before_dense(name)))
    modes = {name: module.training for name, module in model.named_modules()}
    try:
        model.eval()
        with engine.no_grad():
            model(example)
    finally:
        for remove in removers:
            remove()
        for name, module in model.named_modules():
            object.__setattr__(module, "training", modes[name])
    return found


# the one set of defaults of compress() and train.py's --tucker-* / --scada-* flags
DEFAULTS = {"ratio": 50.0, "order": 4, "min_rank": 2, "allocation": "uniform", "reshape": "balanced",
            "spatial_coarse": "small"}
# train.py's default ratio where 50 cannot be met (a small model whose unconverted layers exceed the budget)
FALLBACK_RATIOS = (20.0, 10.0, 5.0, 2.0)


def compress(model, ratio=None, order=DEFAULTS["order"], shared_core=False, ranks=None, from_weights=False,
             layers=None, per_layer=False, min_rank=DEFAULTS["min_rank"], k=None, shapes=None, bias=True,
             allocation=DEFAULTS["allocation"], reshape=DEFAULTS["reshape"], input_shapes=None,
             spatial_coarse=DEFAULTS["spatial_coarse"], layouts=None):
    """Replace the Dense/Conv2d layers of `model` (or the named `layers`) by Tucker layers, in place.

    ratio: target dense params / compressed params over the whole network (every stored
    float, biases and unconverted layers included), or per layer with per_layer=True.
    ranks: explicit core sizes (int, list per mode, list of lists or dict per layer);
    overrides ratio. shared_core (SCADA): one core k^D shared by every converted layer;
    k explicit, or the largest that meets `ratio`. from_weights: HOSVD of the current
    weights. order: the number of modes D, one int or (ADA only) a list with one per converted
    layer. shapes: optional dict name -> explicit mode sizes. bias=False drops the converted
    layers' biases (the dense count still includes them: they are part of what is compressed).
    allocation: how a ratio becomes core sizes: "uniform" (solve_ranks: one fraction of every mode
    size) or "greedy" (solve_ranks_greedy: the most log core size per stored value).
    reshape: "balanced" (balanced_shape of the element count, the paper's dimension adjustment),
    "aligned" (aligned_shape: input and output indices in separate modes), "paired"
    (paired_shape: a permuted reshape, each mode a part of both) or "spatial" (spatial_shape for a
    Dense layer whose entry in `input_shapes` (name -> per-example input shape before flattening,
    see dense_input_shapes) has >= 2 axes, e.g. (1, 28, 28) pixels; "paired" for every other
    layer; spatial_coarse "small" / "large": whether an image axis's coarsest digit is its smallest
    or its largest factor, 28 = 2 x 2 x 7 or 7 x 2 x 2); shapes override it.
    layouts: optional dict name -> {"digits": groups, "ranks": ranks or None} (parse_layouts reads
    train.py's --tucker-layout text): the layer's permuted reshape given digit by digit (groups as
    in set_pairing, e.g. ((7, 8, 14), (10, 6, 5)) for a 784 x 300 weight: modes 70 x 48 x 70) and,
    optionally, its core sizes; it overrides reshape, shapes and order for that layer. Layers with
    layout ranks keep them; the others share what is left of the ratio's budget (or take `ranks`).
    Returns a report dict (per-layer modes, ranks, params; dense and compressed totals, ratio).
    """
    where = "tucker.compress" if not shared_core else "scada.compress"
    targets = check_options(model, layers, ratio, allocation, reshape, input_shapes, where)
    dense_total = model.num_parameters()
    names = [n for n, _ in targets]
    shapes = dict(shapes or {})
    counts = {n: m.weight.size for n, m in targets}
    orders = layer_orders(order, names, where)
    pairings, fixed_ranks = apply_layouts(layouts, names, shared_core, shapes, orders, where)
    if ratio is None and ranks is None and k is None and len(fixed_ranks) != len(names):
        missing = [n for n in names if n not in fixed_ranks]
        raise ValueError(f"{where}: give a target ratio, explicit ranks or (shared core) k"
                         + (f" for layers {missing}, whose layouts give no ranks" if fixed_ranks else ""))
    modes = reshape_layers(targets, counts, shapes, pairings, orders, reshape, input_shapes, spatial_coarse,
                           where)
    dense_biases = sum(m.bias.size for _, m in targets if m.bias is not None)
    plan = Conversion(targets, modes, counts, fixed_ranks, dense_total, biases=dense_biases if bias else 0,
                      others=dense_total - sum(counts.values()) - dense_biases, bias=bias,
                      min_rank=min_rank, solve=ALLOCATIONS[allocation], where=where)
    core, layer_ranks = allocate(plan, ratio, ranks, k, shared_core, per_layer, targets[0][1].weight.dtype)
    rows = _convert_layers(model, plan, layer_ranks, core, pairings, from_weights)
    compressed_total = model.num_parameters()
    return {"layers": rows, "dense_params": dense_total, "params": compressed_total,
            "shared_core": None if core is None else list(core.shape),
            "ratio": dense_total / compressed_total,
            "bytes": sum(p.size * p.dtype.itemsize for p in model.parameters())}


def _convert_layers(model, plan, layer_ranks, core, pairings, from_weights):
    """Swap each target for its Tucker layer (sharing `core` if given); one report row per layer."""
    dense_type, _ = _layer_types()
    rows, projected = [], []
    for n, m in plan.targets:
        kwargs = dict(ranks=layer_ranks[n], order=len(plan.modes[n]), shape=plan.modes[n], core=core,
                      from_weights=from_weights, min_rank=plan.min_rank, bias=plan.bias,
                      pairing=pairings.get(n))
        new = (TuckerDense.from_dense(m, **kwargs) if isinstance(m, dense_type)
               else TuckerConv2d.from_conv(m, **kwargs))
        if core is not None:
            object.__setattr__(new, "_shared", True)
        if from_weights:
            projected.append(new.__dict__.pop("_projected_core"))
        replace_module(model, n, new)
        rows.append({"name": n, "type": type(new).__name__, "weight_shape": list(new.weight_shape),
                     "modes": list(new.modes), "ranks": list(new.ranks),
                     "dense_params": plan.counts[n] + (m.bias.size if m.bias is not None else 0),
                     "params": new.tucker_params(count_core=core is None)})
    if core is not None:
        device = plan.targets[0][1].weight.device
        core.data = backend.to_device(core.data, device)
        if from_weights:
            core.data = backend.to_device(np.mean(projected, axis=0).astype(plan.targets[0][1].weight.dtype), device)
    return rows


# ---------------------------------------------------------------- train.py plugins
def _int_list(text):
    """'3,3,4' -> [3, 3, 4]; a single int stays an int (for flags whose parsed value is kept as text)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return int(text)
    values = [int(v) for v in str(text).split(",") if v.strip()]
    return values[0] if len(values) == 1 else values


def _as_flag_value(values):
    """An int, or a list as its comma text, so that train.py's config.toml can store it and read it back."""
    return values[0] if len(values) == 1 else ",".join(map(str, values))


def _ranks_arg(text):
    """--tucker-ranks: one int (every mode), or a comma list of ints (per mode, every layer)."""
    values = number_list(int, "--tucker-ranks")(text)
    values = values if isinstance(values, list) else [values]
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--tucker-ranks: expected positive ints, got {text!r}")
    return _as_flag_value(values)


def _orders_arg(text):
    """--tucker-order: one int (every layer) or a comma list of ints (one per converted layer)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--tucker-order: expected a positive int or a comma list of them, "
                                         f"got {text!r}")
    return _as_flag_value(values)


def _layout_arg(text):
    """--tucker-layout: checked here so a typo fails at parse time; kept as text for config.toml."""
    try:
        parse_layouts(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return str(text)


def _add(parser, *names, **kwargs):
    """add_argument unless a sibling compressor (tucker/scada) already added the flag."""
    try:
        parser.add_argument(*names, **kwargs)
    except argparse.ArgumentError:
        pass


def _add_tucker_arguments(parser):
    _add(parser, "--tucker-ratio", type=float, default=None,
         help="target compression ratio: dense params / compressed params over the whole network "
              f"(all stored floats, biases included); {DEFAULTS['ratio']:g} when no ranks are given (or the "
              "highest of " + ", ".join(f"{r:g}" for r in FALLBACK_RATIOS) + " a small model allows)")
    _add(parser, "--tucker-order", type=_orders_arg, default=DEFAULTS["order"],
         help="number of Tucker modes D per weight, or a comma list with one per converted layer")
    _add(parser, "--tucker-ranks", type=_ranks_arg, default=None,
         help="explicit core sizes: one int for every mode or a comma list per mode (overrides the ratio)")
    _add(parser, "--tucker-from-weights", action="store_true",
         help="HOSVD init from the current (e.g. --init-from) weights instead of a fresh init")
    _add(parser, "--tucker-per-layer", action="store_true",
         help="apply --tucker-ratio to every layer on its own instead of to the whole network")
    _add(parser, "--tucker-min-rank", type=int, default=DEFAULTS["min_rank"],
         help="smallest core size per mode when solving for a ratio (a rank-1 mode starves "
              "small layers such as the 10-class output)")
    _add(parser, "--tucker-no-bias", action="store_true",
         help="drop the converted layers' biases (the dense count keeps them; the paper's 691x for "
              "LeNet-5 leaves fewer values than LeNet-5 has biases)")
    _add(parser, "--tucker-alloc", choices=sorted(ALLOCATIONS), default=DEFAULTS["allocation"],
         help="how --tucker-ratio becomes core sizes: uniform (one fraction of every mode size) "
              "or greedy (grow the mode rank that adds the most log core size per stored value)")
    _add(parser, "--tucker-reshape", choices=RESHAPES, default=DEFAULTS["reshape"],
         help="mode sizes: balanced (the paper's dimension adjustment of the element count), "
              "aligned (separate modes for a weight's first index and the rest, e.g. 784 -> 28 x 28 inputs) "
              "paired (a permuted reshape: every mode pairs a part of each index, as TT-matrices do) or "
              "spatial (a Dense layer fed by an image or feature map pairs the i-th row, column (and "
              "channel) digit with an output digit in mode i, coarse to fine; paired for the other layers)")
    _add(parser, "--tucker-spatial-coarse", choices=("small", "large"), default=DEFAULTS["spatial_coarse"],
         help="with --tucker-reshape spatial: an image axis's coarsest digit is its smallest factor "
              "(28 = 2 x 2 x 7) or its largest (7 x 2 x 2)")
    _add(parser, "--tucker-layout", type=_layout_arg, default=None,
         help="per-layer digits and core sizes, NAME=IN/OUT[@RANKS] comma-separated, e.g. "
              "'1=7x8x14/10x6x5@2x4x2' (layer 1: inputs read as 7x8x14, outputs as 10x6x5, modes "
              "70x48x70, core 2x4x2); overrides --tucker-reshape and --tucker-order for those layers; "
              "layers without @RANKS share what is left of --tucker-ratio")
    _add(parser, "--tucker-layers", default=None,
         help="comma-separated names of the Dense/Conv2d layers to convert (default all)")


class TuckerCompressor(Compressor):
    """train.py's --compress tucker (ADA-Tucker): every Dense/Conv2d becomes a Tucker layer, trained end to end."""

    name = "tucker"
    shared = False
    describe = staticmethod(describe_tucker)
    rebuild = staticmethod(rebuild_tucker)

    @staticmethod
    def add_arguments(parser):
        _add_tucker_arguments(parser)
        _add(parser, "--scada-k", type=int, default=None,
             help="scada only: side k of the shared k^D core (overrides --tucker-ratio)")

    def __init__(self, args):
        super().__init__(args)
        get = lambda key, default=None: getattr(args, key, default)  # noqa: E731
        self.ratio = get("tucker_ratio")
        self.order = _int_list(get("tucker_order", DEFAULTS["order"]))
        self.ranks = get("tucker_ranks")
        self.ranks = None if self.ranks is None else _int_list(self.ranks)
        self.from_weights = bool(get("tucker_from_weights", False))
        self.per_layer = bool(get("tucker_per_layer", False))
        self.min_rank = get("tucker_min_rank", DEFAULTS["min_rank"]) or 1
        self.bias = not bool(get("tucker_no_bias", False))
        self.layers = get("tucker_layers")
        self.allocation = get("tucker_alloc", DEFAULTS["allocation"]) or DEFAULTS["allocation"]
        self.reshape = get("tucker_reshape", DEFAULTS["reshape"]) or DEFAULTS["reshape"]
        self.spatial_coarse = get("tucker_spatial_coarse", DEFAULTS["spatial_coarse"]) or DEFAULTS["spatial_coarse"]
        self.k = get("scada_k") if self.shared else None
        self.layout = get("tucker_layout")
        every_rank_given = self.layout is not None and all(
            v["ranks"] is not None for v in parse_layouts(self.layout).values())
        self.default_ratio = (self.ratio is None and self.ranks is None and self.k is None
                              and not every_rank_given)
        if self.default_ratio:
            self.ratio = DEFAULTS["ratio"]
            args.tucker_ratio = self.ratio     # config.toml and the checkpoint record the ratio used
        self.report = None

    def apply(self, model, task):
        input_shapes = None
        if self.reshape == "spatial":
            try:
                example = next(iter(task.test_batches(2)))[0]
            except (AttributeError, StopIteration, TypeError) as error:
                raise ValueError(f"--tucker-reshape spatial: could not draw an example input from task "
                                 f"{task!r} to find the layers' input shapes: {error}") from None
            input_shapes = dense_input_shapes(model, example)
        ratios = [self.ratio] + (list(FALLBACK_RATIOS) if self.default_ratio else [])
        for i, ratio in enumerate(ratios):
            try:
                self.report = self._compress(model, ratio, input_shapes)
                break
            except ValueError as error:   # compress() fails on a budget before it changes the model
                if "budget" not in str(error) or i + 1 == len(ratios):
                    raise
        if self.ratio != ratio:
            print(f"{self.name}: the default ratio {self.ratio:g} does not fit this model; using {ratio:g} "
                  f"(--tucker-ratio sets it)", flush=True)
            self.ratio = self.args.tucker_ratio = ratio
        return model

    def _compress(self, model, ratio, input_shapes):
        return compress(model, ratio=ratio, order=self.order, shared_core=self.shared,
                        ranks=self.ranks, from_weights=self.from_weights, layers=self.layers,
                        per_layer=self.per_layer, min_rank=self.min_rank, k=self.k, bias=self.bias,
                        allocation=self.allocation, reshape=self.reshape, input_shapes=input_shapes,
                        spatial_coarse=self.spatial_coarse,
                        layouts=None if self.layout is None else parse_layouts(self.layout))

    def config(self):
        out = {"name": self.name, "target_ratio": self.ratio, "order": self.order, "ranks": self.ranks,
               "from_weights": self.from_weights, "per_layer": self.per_layer, "min_rank": self.min_rank,
               "bias": self.bias, "layers": self.layers, "allocation": self.allocation,
               "reshape": self.reshape}
        if self.reshape == "spatial":
            out["spatial_coarse"] = self.spatial_coarse
        if self.layout is not None:
            out["layout"] = self.layout
        if self.shared:
            out["k"] = self.k
        if self.report is not None:
            out.update(dense_params=self.report["dense_params"], params=self.report["params"],
                       ratio=self.report["ratio"], bytes=self.report["bytes"],
                       shared_core=self.report["shared_core"],
                       per_layer={r["name"]: {"modes": r["modes"], "ranks": r["ranks"], "params": r["params"]}
                                  for r in self.report["layers"]})
        return out

    def log_values(self, model):
        """Extra values for train.py's log: stored params and the achieved ratio."""
        if self.report is None:
            return {}
        return {"tucker_params": self.report["params"], "tucker_ratio": self.report["ratio"]}


class ScadaCompressor(TuckerCompressor):
    """train.py's --compress scada (SCADA-Tucker): one k^D core shared by every converted layer."""

    name = "scada"
    shared = True
    describe = staticmethod(describe_scada)
