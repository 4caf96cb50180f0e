"""BasisConv: a conv layer as M fixed basis filters followed by a learned 1x1 combination (METHODS.md s.2).

Tayyab & Mahalanobis 2019. A conv with N filters of size C x kh x kw (d = C kh kw
values each) becomes

    basis conv (M filters, C x kh x kw, the original stride/padding/dilation, no bias)
    -> optional BatchNorm2d(M) -> 1x1 conv M -> N (the combination weights + the original bias)

From a trained layer the basis is the top-M right singular vectors of the N x d
filter matrix H = U S V^T and the 1x1 weights are (U S)[:, :M], so M = rank(H)
reproduces the layer exactly. From scratch the basis is M random orthonormal
filters (QR of a d x M Gaussian) that never change.

Choices of ours where the paper is silent:
- M from an energy threshold t is the smallest M with sum_{i<=M} s_i^2 >= t sum s_i^2
  (t = 1 gives the numerical rank), capped at min(N, d); an explicit M overrides t.
- FLOPs per output pixel follow the spec: dense 2 d N, BasisConv 2 d M + 2 M N
  (multiply-adds count 2; bias additions and batch norm are not counted).
- From scratch with no explicit M, M comes from the energy threshold applied to
  the layer being replaced (so `--init-from` a trained net gives the same M as the
  trained conversion).
- Grouped convolutions are not converted (the filter matrix is per group): ValueError.
"""

import numpy as np

import engine.ops as F
from engine import backend
from engine import rng as erandom
from engine.ops.conv import pair
from layers import init
from layers.validation import check_input
from layers.module import Module, Parameter

from .layer_swap import find_layers, replace_module
from .settings import check_energy, check_rank, number_list as _number_list, per_layer, rank_for_energy
from .plugin import Compressor, DoesNotApply


# ---------------------------------------------------------------- shared helpers


def conv_geometry(conv):
    """(stride, padding, dilation, groups) of a conv layer as pairs (groups an int)."""
    return (pair(getattr(conv, "stride", 1), "stride"), pair(getattr(conv, "padding", 0), "padding"),
            pair(getattr(conv, "dilation", 1), "dilation"), int(getattr(conv, "groups", 1)))


def output_positions(model, example_input, modules):
    """{id(module): output positions per example} from one no-grad forward pass on example_input.

    A position is one output pixel of a conv (OH * OW) or one row of a Dense output
    (1 for (B, n) input, T for (B, T, n)); summed over calls of a reused module.
    """
    import engine
    seen = {}
    removers = []
    for m in modules:
        def hook(mod, args, out, key=id(m)):
            units = out.shape[1] if out.ndim == 4 else out.shape[-1]
            seen[key] = seen.get(key, 0) + out.size // (out.shape[0] * units)
        removers.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with engine.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for remove in removers:
            remove()
    return seen


# ---------------------------------------------------------------- the layer
def orthonormal_filters(num, in_channels, kernel_size, dtype=None):
    """`num` random orthonormal filters (num, C, kh, kw): QR of a d x num Gaussian, d = C kh kw."""
    kh, kw = kernel_size
    d = in_channels * kh * kw
    if num > d:
        raise ValueError(f"BasisConv2d: at most d = C*kh*kw = {d} orthonormal filters exist, asked for {num}")
    gaussian = erandom.get_rng().standard_normal((d, num))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))          # a unique, uniformly distributed Q
    return q.T.reshape(num, in_channels, kh, kw).astype(dtype or backend.DEFAULT_DTYPE)


class BasisConv2d(Module):
    """M basis filters (C x kh x kw) as a conv, optional BatchNorm2d(M), then a 1x1 conv M -> N with bias.

    `basis` (M, C, kh, kw) is a Parameter, frozen (requires_grad=False) unless
    train_basis; `combination` (N, M, 1, 1) and `bias` (N,) are learned. Built
    with random orthonormal filters (from scratch) or by `from_conv`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, num_basis, stride=1, padding=0,
                 dilation=1, bias=True, batch_norm=False, train_basis=False, dtype=None):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"BasisConv2d: {name} must be a positive int, got {v!r}")
        kh, kw = pair(kernel_size, "BasisConv2d kernel_size")
        if kh < 1 or kw < 1:
            raise ValueError(f"BasisConv2d: kernel_size must be >= 1, got {(kh, kw)}")
        num_basis = check_rank(num_basis, "BasisConv2d")
        d = in_channels * kh * kw
        if num_basis > d:
            raise ValueError(f"BasisConv2d: num_basis must be <= C*kh*kw = {d}, got {num_basis}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.num_basis = (kh, kw), num_basis
        self.stride = pair(stride, "BasisConv2d stride")
        self.padding = pair(padding, "BasisConv2d padding")
        self.dilation = pair(dilation, "BasisConv2d dilation")
        self.basis = Parameter(orthonormal_filters(num_basis, in_channels, (kh, kw), dtype),
                               requires_grad=bool(train_basis))
        self.combination = Parameter(init.fan_in_uniform((out_channels, num_basis, 1, 1), num_basis, dtype))
        self.bias = Parameter(init.fan_in_uniform((out_channels,), num_basis, dtype)) if bias else None
        if batch_norm:
            from layers.norm import BatchNorm2d   # lazily: only this option needs it
            self.norm = BatchNorm2d(num_basis)
        else:
            self.norm = None

    @classmethod
    def from_conv(cls, conv, energy=None, num_basis=None, train_basis=False, batch_norm=False):
        """Convert a trained conv (weight (N, C, kh, kw), optional bias) via the SVD of its N x d filters.

        Give `num_basis` (M) or `energy` (threshold t in (0, 1]); M is capped at min(N, d).
        Without batch norm, M = rank reproduces the layer exactly (in eval and train mode).
        """
        weight = getattr(conv, "weight", None)
        if weight is None or weight.ndim != 4:
            raise TypeError(f"BasisConv2d.from_conv: expected a conv layer with a 4-D weight, "
                            f"got {type(conv).__name__}")
        stride, padding, dilation, groups = conv_geometry(conv)
        if groups != 1:
            raise ValueError(f"BasisConv2d.from_conv: grouped convolutions (groups={groups}) are not "
                             "supported; the filter matrix must be N x C*kh*kw")
        n, c, kh, kw = weight.shape
        d = c * kh * kw
        h = backend.to_numpy(weight.data).astype(np.float64).reshape(n, d)
        u, s, vt = np.linalg.svd(h, full_matrices=False)
        if num_basis is not None:
            m = check_rank(num_basis, "BasisConv2d.from_conv")
        elif energy is not None:
            m = rank_for_energy(s, check_energy(energy, "BasisConv2d.from_conv"))
        else:
            raise ValueError("BasisConv2d.from_conv: give energy (a threshold in (0, 1]) or num_basis")
        m = min(m, n, d)
        bias = getattr(conv, "bias", None)
        layer = cls(c, n, (kh, kw), m, stride, padding, dilation, bias=bias is not None,
                    batch_norm=batch_norm, train_basis=train_basis, dtype=weight.dtype)
        device = weight.device
        layer.basis.data = backend.to_device(vt[:m].reshape(m, c, kh, kw).astype(weight.dtype), device)
        layer.combination.data = backend.to_device(
            (u[:, :m] * s[:m]).reshape(n, m, 1, 1).astype(weight.dtype), device)
        if bias is not None:
            layer.bias.data = bias.data.copy()
        layer.singular_values = s
        return layer

    def forward(self, x):
        x = check_input(self, x, 4, axis=1, size=self.in_channels)
        if self.norm is None:   # one op: without a graph a single pass with the M basis maps in cache
            return F.conv2d_pointwise(x, self.basis, self.combination, self.bias, self.stride, self.padding,
                                      self.dilation)
        h = F.conv2d(x, self.basis, None, self.stride, self.padding, self.dilation)
        return F.conv2d(self.norm(h), self.combination, self.bias)

    def filters(self):
        """The equivalent dense filters (N, C, kh, kw) = combination @ basis (no batch norm)."""
        xp = backend.xp_of(self.basis.data)
        m = self.num_basis
        w = self.combination.data.reshape(self.out_channels, m) @ self.basis.data.reshape(m, -1)
        return xp.reshape(w, (self.out_channels, self.in_channels) + self.kernel_size)

    def flops(self, inputs, output):
        """2 d M + 2 M N per output pixel (+ N bias adds, as Conv2d counts them) for the whole batch.

        A batch norm child counts itself.
        """
        b, n, oh, ow = output.shape
        d = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        per_pixel = 2 * d * self.num_basis + 2 * self.num_basis * n + (n if self.bias is not None else 0)
        return b * oh * ow * per_pixel

    def extra_repr(self):
        frozen = "trainable" if self.basis.requires_grad else "frozen"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"M={self.num_basis} ({frozen} basis), stride={self.stride}, padding={self.padding}"
                + (", batch_norm" if self.norm is not None else ""))


# ---------------------------------------------------------------- checkpoints (Compressor.describe / rebuild)
def describe(model):
    """[config] of the model's BasisConv2d layers (per_layer_M, batch_norm, train_basis by path), or []."""
    layers = [(p, m) for p, m in model.named_modules() if isinstance(m, BasisConv2d)]
    if not layers:
        return []
    return [{"per_layer_M": {p: int(m.num_basis) for p, m in layers},
             "batch_norm": {p: m.norm is not None for p, m in layers},
             "train_basis": {p: bool(m.basis.requires_grad) for p, m in layers}}]


def _per_path(value, paths, default):
    """A bool-or-dict config value as {path: value}."""
    if isinstance(value, dict):
        return {p: value.get(p, default) for p in paths}
    return {p: default if value is None else value for p in paths}


def rebuild(model, config, state):
    """BasisConv2d with M filters at each path of config['per_layer_M'] (compress with m=M)."""
    per_m = config.get("per_layer_M")
    if not per_m:
        raise ValueError("load_model: a basis step needs per_layer_M {layer: M} (recorded after apply)")
    norms = _per_path(config.get("batch_norm"), per_m, False)
    trains = _per_path(config.get("train_basis"), per_m, False)
    for path, m in per_m.items():
        compress(model, m=int(m), layers=[path], batch_norm=bool(norms[path]), train_basis=bool(trains[path]))
    return model


# ---------------------------------------------------------------- whole models
def _conv_type():
    from layers.conv import Conv2d
    return Conv2d


def compress(model, energy=0.9, from_scratch=False, train_basis=False, layers=None, m=None,
             batch_norm=False, example_input=None):
    """Replace every Conv2d of `model` (or the named `layers`) by a BasisConv2d, in place.

    energy: threshold t in (0, 1], one value, a list (one per converted layer, in
    order) or a dict name -> t. m: explicit M (int, list or dict; overrides t).
    from_scratch: random orthonormal frozen basis, fresh 1x1 weights (M still
    from m or t). Returns a report dict: per-layer rows (name, N, d, rank, M,
    energy kept, FLOPs per output pixel dense/basis, stored and learnable params
    before/after) and totals; with example_input also FLOPs per example.
    """
    convs = find_layers(model, _conv_type(), layers, "basis.compress")
    if not convs:
        raise DoesNotApply("basis.compress: the model has no Conv2d layer to convert (--model lenet5 or "
                           "widecnn have some)")
    names = [n for n, _ in convs]
    energies = per_layer(energy, names, "energy", "basis.compress")
    ms = per_layer(m, names, "m", "basis.compress")
    for name in names:
        if ms[name] is not None:
            check_rank(ms[name], f"basis.compress ({name})")
        elif energies[name] is None:
            raise ValueError(f"basis.compress: layer {name} has neither an energy threshold nor m")
        else:
            check_energy(energies[name], f"basis.compress ({name})")
    pixels = output_positions(model, example_input, [c for _, c in convs]) if example_input is not None else {}

    rows = []
    for name, conv in convs:
        converted = BasisConv2d.from_conv(conv, energy=energies[name], num_basis=ms[name],
                                          train_basis=train_basis, batch_norm=batch_norm)
        s = converted.singular_values
        if from_scratch:
            stride, padding, dilation, _ = conv_geometry(conv)
            n, c, kh, kw = conv.weight.shape
            converted = BasisConv2d(c, n, (kh, kw), converted.num_basis, stride, padding, dilation,
                                    bias=getattr(conv, "bias", None) is not None,
                                    batch_norm=batch_norm, train_basis=train_basis,
                                    dtype=conv.weight.dtype).to(conv.weight.device)
        rows.append(_layer_row(name, conv, converted, s, pixels.get(id(conv))))
        replace_module(model, name, converted)
    return {"method": "basis", "from_scratch": bool(from_scratch), "train_basis": bool(train_basis),
            "batch_norm": bool(batch_norm), "layers": rows, "totals": _totals(rows)}


def _layer_row(name, conv, converted, singular_values, pixels):
    n, c, kh, kw = conv.weight.shape
    d, m = c * kh * kw, converted.num_basis
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    bias = n if getattr(conv, "bias", None) is not None else 0
    norm = 2 * m if converted.norm is not None else 0
    row = {
        "name": name, "N": n, "d": d, "rank": rank_for_energy(singular_values, 1.0), "M": m,
        "energy_kept": float(s2[:m].sum() / s2.sum()) if s2.sum() > 0 else 1.0,
        "flops_per_pixel_dense": 2 * d * n, "flops_per_pixel_basis": 2 * d * m + 2 * m * n,
        "params_dense": n * d + bias,
        "params_stored": m * d + m * n + bias + norm,
        "params_learnable": m * n + bias + norm + (m * d if converted.basis.requires_grad else 0),
    }
    if pixels is not None:
        row["flops_dense"] = row["flops_per_pixel_dense"] * pixels
        row["flops_basis"] = row["flops_per_pixel_basis"] * pixels
    return row


def _totals(rows):
    keys = ["params_dense", "params_stored", "params_learnable", "flops_dense", "flops_basis"]
    totals = {k: sum(r[k] for r in rows) for k in keys if all(k in r for r in rows)}
    if "flops_basis" in totals and totals["flops_basis"]:
        totals["flops_ratio"] = totals["flops_dense"] / totals["flops_basis"]
    totals["learnable_ratio"] = totals["params_dense"] / max(totals["params_learnable"], 1)
    return totals


def format_report(report):
    """The compress() report as a markdown table."""
    lines = ["| layer | N | d | rank | M | energy kept | FLOPs/px dense | FLOPs/px basis | "
             "params dense | stored | learnable |", "|---" * 11 + "|"]
    for r in report["layers"]:
        lines.append(f"| {r['name']} | {r['N']} | {r['d']} | {r['rank']} | {r['M']} | "
                     f"{r['energy_kept']:.4f} | {r['flops_per_pixel_dense']:,} | "
                     f"{r['flops_per_pixel_basis']:,} | {r['params_dense']:,} | "
                     f"{r['params_stored']:,} | {r['params_learnable']:,} |")
    t = report["totals"]
    line = (f"conv params dense {t['params_dense']:,}, stored {t['params_stored']:,}, learnable "
            f"{t['params_learnable']:,} ({t['learnable_ratio']:.2f}x fewer learnable)")
    if "flops_ratio" in t:
        line += (f"; conv FLOPs/example dense {t['flops_dense']:,}, basis {t['flops_basis']:,} "
                 f"({t['flops_ratio']:.2f}x fewer)")
    return "\n".join(lines) + "\n\n" + line


# ---------------------------------------------------------------- train.py plugin


class BasisCompressor(Compressor):
    """train.py's --compress basis: convert the Conv2d layers (after --init-from) to BasisConv2d."""

    name = "basis"
    describe = staticmethod(describe)
    rebuild = staticmethod(rebuild)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--basis-energy", type=_number_list(float, "--basis-energy"), default=0.9,
                            help="energy threshold t in (0, 1] choosing M per layer; one value or a "
                                 "comma list (one per conv layer)")
        parser.add_argument("--basis-m", type=_number_list(int, "--basis-m"), default=None,
                            help="explicit number of basis filters M (one value or a comma list); "
                                 "overrides --basis-energy")
        parser.add_argument("--basis-from-scratch", action="store_true",
                            help="random orthonormal frozen basis and fresh 1x1 weights")
        parser.add_argument("--basis-train-basis", action="store_true",
                            help="let the optimiser update the basis filters too")
        parser.add_argument("--basis-batch-norm", action="store_true",
                            help="a BatchNorm2d(M) between the basis conv and the 1x1 conv")
        parser.add_argument("--basis-layers", default=None,
                            help="comma-separated names of the Conv2d layers to convert (default all)")

    def __init__(self, args):
        super().__init__(args)
        get = lambda key, default=None: getattr(args, key, default)  # noqa: E731
        self.energy = get("basis_energy", 0.9)
        self.m = get("basis_m")
        self.from_scratch = bool(get("basis_from_scratch", False))
        self.train_basis = bool(get("basis_train_basis", False))
        self.batch_norm = bool(get("basis_batch_norm", False))
        self.layers = get("basis_layers")
        self.report = None

    def apply(self, model, task):
        example = None
        if task is not None:
            try:
                example = next(iter(task.test_batches(2)))[0]
            except Exception:   # a task without test batches still converts; FLOP totals are skipped
                example = None
        self.report = compress(model, energy=self.energy, from_scratch=self.from_scratch,
                               train_basis=self.train_basis, layers=self.layers, m=self.m,
                               batch_norm=self.batch_norm, example_input=example)
        return model

    def config(self):
        out = {"name": self.name, "energy": self.energy, "m": self.m, "from_scratch": self.from_scratch,
               "train_basis": self.train_basis, "batch_norm": self.batch_norm, "layers": self.layers}
        if self.report is not None:
            out["per_layer_M"] = {r["name"]: r["M"] for r in self.report["layers"]}
            out["totals"] = self.report["totals"]
        return out

    def log_values(self, model):
        """Extra values for train.py's log: conv learnable params after conversion."""
        if self.report is None:
            return {}
        return {"conv_learnable_params": self.report["totals"]["params_learnable"]}
