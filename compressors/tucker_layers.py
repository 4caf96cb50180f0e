"""Tucker-form Dense and Conv2d layers: core + factors (+ bias), the weight rebuilt each forward pass.

W = C x_1 M_1 ... x_D M_D is rebuilt with ``F.tucker_to_tensor`` in training mode and kept in eval mode
(compressors.eval_cache); call ``invalidate_cache()`` after changing parameter values in place in eval mode. Init, shapes and the choices behind them: compressors/tucker.py's docstring.
"""
import itertools
import math

import numpy as np

import engine.ops as F
from engine import backend
from engine.kernels import tucker as kernels
from engine.ops.conv import pair
from layers import init
from layers.dense import Dense
from layers.validation import check_input
from layers.module import Module, Parameter

from .eval_cache import cache_of
from .layer_swap import module_at, replace_module
from .tucker_shapes import adjust_dimensions, paired_shape, parse_layouts, ratio_budget, solve_ranks, tucker_params


def _check_ranks(ranks, modes, where):
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
        ranks = [int(ranks)] * len(modes)
    ranks = [int(k) for k in ranks]
    if len(ranks) != len(modes) or any(k < 1 for k in ranks):
        raise ValueError(f"{where}: ranks must be {len(modes)} positive ints (one per mode of {modes}), "
                         f"got {ranks}")
    return ranks


def _orthonormal(rows, cols, dtype):
    """rows x cols with orthonormal columns (rows when rows < cols) from the engine's generator."""
    return init.orthogonal(rows, cols, np.float64).astype(dtype)


class _TuckerWeight(Module):
    """Core + factors of one weight; subclasses apply the rebuilt weight (Dense or Conv2d)."""

    def _setup_tucker(self, weight_shape, fan_in, ranks, ratio, order, shape, bias, core, min_rank, dtype):
        where = type(self).__name__
        dtype = np.dtype(dtype or backend.DEFAULT_DTYPE)
        count = math.prod(weight_shape)
        if core is not None:
            if not isinstance(core, Parameter):
                raise TypeError(f"{where}: a shared core must be a Parameter, got {type(core).__name__}")
            order = core.ndim if order is None else order
            if core.ndim != order:
                raise ValueError(f"{where}: shared core has {core.ndim} modes, order is {order}")
        modes = adjust_dimensions(count, order, shape, where)
        n_bias = weight_shape[0] if isinstance(self, TuckerConv2d) else weight_shape[1]
        if core is not None:
            if ranks is not None and tuple(_check_ranks(ranks, modes, where)) != core.shape:
                raise ValueError(f"{where}: ranks {ranks} disagree with the shared core shape {core.shape}")
            ranks = list(core.shape)
        elif ranks is not None:
            ranks = _check_ranks(ranks, modes, where)
        elif ratio is not None:
            kept = n_bias if bias else 0
            budget = ratio_budget(count + kept, ratio, kept, where=where)
            ranks = solve_ranks([modes], budget, min_rank, where)[0]
        else:
            raise ValueError(f"{where}: give ranks (core sizes), a target ratio or a shared core")
        self.weight_shape, self.modes, self.ranks = tuple(weight_shape), tuple(modes), tuple(ranks)
        self.fan_in = fan_in
        target_var = 1.0 / (3.0 * fan_in)          # variance of U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        kept = math.prod(min(m, k) for m, k in zip(modes, ranks))
        if core is None:
            core_var = target_var * count / kept
            self.core = Parameter(init.normal(ranks, math.sqrt(core_var), dtype))
            scale = 1.0
        else:
            self.core = core
            core_var = float(backend.to_numpy(core.data).astype(np.float64).var()) or 1.0
            scale = (target_var * count / (core_var * kept)) ** (1.0 / (2 * len(modes)))
        for i, (m, k) in enumerate(zip(modes, ranks)):
            setattr(self, f"factor{i}", Parameter(_orthonormal(m, k, dtype) * dtype.type(scale)))
        self.bias = Parameter(init.fan_in_uniform((n_bias,), fan_in, dtype)) if bias else None
        self.invalidate_cache()

    def set_pairing(self, *groups):
        """Store the weight with a permuted reshape: mode i = prod over groups g of groups[g][i].

        The weight's flat index (C order) is read as the digits of groups[0], then groups[1], ...
        (each group the D digit sizes of one index, e.g. Dense (n_in, n_out) for paired_shape, or
        (rows, columns, n_out) for spatial_shape; Conv2d (out, in kh kw)); the leading groups
        must cover the weight's first axis exactly.
        """
        groups = tuple(tuple(int(v) for v in g) for g in groups)
        order = len(self.modes)
        where = type(self).__name__
        if len(groups) < 2 or any(len(g) != order for g in groups):
            raise ValueError(f"{where}: a pairing needs >= 2 groups of {order} sizes (one per mode of "
                             f"{self.modes}), got {groups}")
        expected = tuple(math.prod(g[i] for g in groups) for i in range(order))
        leading = list(itertools.accumulate((math.prod(g) for g in groups), lambda a, b: a * b))
        if expected != self.modes or self.weight_shape[0] not in leading:
            raise ValueError(f"{where}: pairing {' x '.join(map(str, groups))} does not give modes "
                             f"{self.modes} with first index {self.weight_shape[0]}")
        n_groups = len(groups)
        # tensor axes (g_0[0], g_1[0], ..., g_0[1], g_1[1], ...) -> (g_0[0..D-1], g_1[0..D-1], ...) and back
        to_weight = tuple(i * n_groups + g for g in range(n_groups) for i in range(order))
        object.__setattr__(self, "_pairing", (groups, to_weight))
        self.invalidate_cache()

    @property
    def pairing(self):
        """(groups, axes) of a permuted reshape (set_pairing), or None for the plain reshape."""
        return getattr(self, "_pairing", None)

    def _tensor_to_weight(self, tensor):
        """The rebuilt Tucker tensor (modes) as the layer's weight (weight_shape), undoing any pairing."""
        if self.pairing is not None:
            groups, axes = self.pairing
            interleaved = tuple(g[i] for i in range(len(self.modes)) for g in groups)
            tensor = F.transpose(F.reshape(tensor, interleaved), axes)
        return F.reshape(tensor, self.weight_shape)

    def _weight_to_tensor(self, weight):
        """Inverse of _tensor_to_weight for a NumPy weight array (used by the HOSVD init)."""
        if self.pairing is not None:
            groups, axes = self.pairing
            weight = weight.reshape(tuple(v for g in groups for v in g)).transpose(np.argsort(axes))
        return weight.reshape(self.modes)

    @property
    def factors(self):
        return [getattr(self, f"factor{i}") for i in range(len(self.modes))]

    @property
    def shared_core(self):
        return getattr(self, "_shared", False)

    def invalidate_cache(self):
        cache_of(self, "_weight_cache").clear()

    def rebuilt_weight(self):
        """The weight in its layer shape as a Tensor: rebuilt with a graph in training mode, cached in eval."""
        return cache_of(self, "_weight_cache").get(self, [self.core] + self.factors,
                                      lambda: self._tensor_to_weight(F.tucker_to_tensor(self.core, self.factors)))

    def tucker_params(self, count_core=True):
        """Stored values of this layer: prod(k) (unless the core is shared) + sum(m k) + bias."""
        bias = self.bias.size if self.bias is not None else 0
        return tucker_params(self.modes, self.ranks, core=count_core) + bias

    def rebuild_flops(self):
        return kernels.rebuild_flops(self.ranks, list(zip(self.modes, self.ranks)))

    def _init_from_weight(self, weight, bias, set_core=True):
        """HOSVD of `weight` (an array of weight_shape) into this layer's factors (and core when set_core).

        Returns the projected core W x_i M_i^T (float64 NumPy) either way.
        """
        w = self._weight_to_tensor(backend.to_numpy(weight).astype(np.float64))
        dtype = self.core.dtype
        device = self.core.device
        factors = []
        for i, (m, k) in enumerate(zip(self.modes, self.ranks)):
            # leading left singular vectors from the small m x m Gram matrix (a wide SVD is far slower)
            unfolded = kernels.unfold(w, i)
            eigenvalues, vectors = np.linalg.eigh(unfolded @ unfolded.T)
            u = vectors[:, np.argsort(eigenvalues)[::-1]]
            f = np.zeros((m, k))
            f[:, :min(k, u.shape[1])] = u[:, :k]
            factors.append(f)
        core = w
        for i, f in enumerate(factors):
            core = kernels.mode_product(core, f.T, i)
        for p, f in zip(self.factors, factors):
            p.data = backend.to_device(f.astype(dtype), device)
        if set_core:
            self.core.data = backend.to_device(core.astype(dtype), device)
        if bias is not None and self.bias is not None:
            self.bias.data = backend.to_device(backend.to_numpy(bias).astype(dtype), device)
        self.invalidate_cache()
        return core

    def _tucker_repr(self):
        shared = " shared" if self.shared_core else ""
        return f"modes={self.modes}, ranks={self.ranks}{shared}"

    def _adopt(self, source, pairing, from_weights, shared_core):
        """Take the replaced layer's device, the digit pairing and, if asked, its weights (HOSVD)."""
        self.to(source.weight.device)
        if pairing is not None:
            self.set_pairing(*pairing)
        if from_weights:
            self._projected_core = self._init_from_weight(
                source.weight.data, None if source.bias is None else source.bias.data,
                set_core=shared_core is None)
        return self


class TuckerDense(_TuckerWeight):
    """y = x W + b with W (n_in, n_out) stored as a Tucker core and factors over balanced modes.

    Give `ranks` (an int for every mode or one per mode), or `ratio` (the layer's dense
    params incl. bias / its stored params), or a shared `core` Parameter (SCADA).
    `order` is the number of modes D; `shape` gives the modes explicitly.
    """

    def __init__(self, n_in, n_out, ranks=None, ratio=None, order=5, shape=None, bias=True, core=None,
                 min_rank=1, dtype=None):
        super().__init__()
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TuckerDense: {name} must be a positive int, got {v!r}")
        self.n_in, self.n_out = n_in, n_out
        if shape is not None:
            order = len(shape) if core is None else order
        self._setup_tucker((n_in, n_out), n_in, ranks, ratio, order, shape, bias, core, min_rank, dtype)

    @classmethod
    def from_dense(cls, dense, ranks=None, ratio=None, order=5, shape=None, core=None, from_weights=False,
                   min_rank=1, bias=None, pairing=None):
        """A TuckerDense replacing `dense` (same sizes; bias if it had one, or as `bias` says; HOSVD if asked).

        pairing: optional digit groups, e.g. (first_sizes, second_sizes), for a permuted reshape (set_pairing)."""
        bias = dense.bias is not None if bias is None else bool(bias) and dense.bias is not None
        layer = cls(dense.n_in, dense.n_out, ranks, ratio, order, shape, bias, core, min_rank, dense.weight.dtype)
        return layer._adopt(dense, pairing, from_weights, core)

    def forward(self, x):
        x = check_input(self, x, (2, 3), axis=-1, size=self.n_in)
        return F.linear(x, self.rebuilt_weight(), self.bias)

    def flops(self, inputs, output):
        """The dense product as Dense counts it (2 n_in + 1 per output value), plus one rebuild in
        training mode (in eval mode the rebuilt weight is cached, so inference pays no rebuild)."""
        rows = output.size // self.n_out
        dense = rows * self.n_out * (2 * self.n_in + (1 if self.bias is not None else 0))
        return dense + (self.rebuild_flops() if self.training else 0)

    def extra_repr(self):
        return f"{self.n_in}, {self.n_out}, {self._tucker_repr()}" + ("" if self.bias is not None else ", bias=False")


class TuckerConv2d(_TuckerWeight):
    """Conv2d whose weight (N, C/groups, kh, kw) is stored as a Tucker core and factors over balanced modes."""

    def __init__(self, in_ch, out_ch, kernel_size, ranks=None, ratio=None, order=5, shape=None, stride=1,
                 padding=0, dilation=1, groups=1, bias=True, core=None, min_rank=1, dtype=None):
        super().__init__()
        for name, v in (("in_ch", in_ch), ("out_ch", out_ch), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TuckerConv2d: {name} must be a positive int, got {v!r}")
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"TuckerConv2d: groups={groups} must divide in_ch={in_ch} and out_ch={out_ch}")
        self.in_ch, self.out_ch, self.groups = in_ch, out_ch, groups
        self.kernel_size = pair(kernel_size, "TuckerConv2d kernel_size")
        self.stride = pair(stride, "TuckerConv2d stride")
        self.padding = pair(padding, "TuckerConv2d padding")
        self.dilation = pair(dilation, "TuckerConv2d dilation")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"TuckerConv2d: kernel_size {self.kernel_size}, stride {self.stride}, dilation "
                             f"{self.dilation} must be >= 1 and padding {self.padding} >= 0")
        kh, kw = self.kernel_size
        if shape is not None:
            order = len(shape) if core is None else order
        self._setup_tucker((out_ch, in_ch // groups, kh, kw), in_ch // groups * kh * kw, ranks, ratio, order,
                           shape, bias, core, min_rank, dtype)

    @classmethod
    def from_conv(cls, conv, ranks=None, ratio=None, order=5, shape=None, core=None, from_weights=False,
                  min_rank=1, bias=None, pairing=None):
        """A TuckerConv2d with `conv`'s geometry (bias as `conv`'s unless `bias` is False; HOSVD if asked).

        pairing: optional digit groups, e.g. (first_sizes, second_sizes), for a permuted reshape (set_pairing)."""
        bias = conv.bias is not None if bias is None else bool(bias) and conv.bias is not None
        layer = cls(conv.in_ch, conv.out_ch, conv.kernel_size, ranks, ratio, order, shape, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias, core, min_rank, conv.weight.dtype)
        return layer._adopt(conv, pairing, from_weights, core)

    def forward(self, x):
        x = check_input(self, x, 4, axis=1, size=self.in_ch)
        return F.conv2d(x, self.rebuilt_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def flops(self, inputs, output):
        """The convolution as Conv2d counts it (2 C kh kw + 1 per output value), plus one rebuild in
        training mode (cached in eval mode)."""
        kh, kw = self.kernel_size
        per_output = 2 * (self.in_ch // self.groups) * kh * kw + (1 if self.bias is not None else 0)
        return output.size * per_output + (self.rebuild_flops() if self.training else 0)

    def extra_repr(self):
        return (f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, {self._tucker_repr()}")


# ---------------------------------------------------------------- checkpoints (Compressor.describe / rebuild)
def _spec(layer):
    spec = {"modes": [int(v) for v in layer.modes], "ranks": [int(v) for v in layer.ranks],
            "bias": layer.bias is not None}
    if layer.pairing is not None:
        spec["pairing"] = [list(g) for g in layer.pairing[0]]
    return spec


def describe_tucker(model):
    """[config] of the model's Tucker layers with their own cores (modes, ranks, bias, pairing by path), or []."""
    layers = {p: _spec(m) for p, m in model.named_modules() if isinstance(m, _TuckerWeight) and not m.shared_core}
    return [{"per_layer": layers, "shared_core": None}] if layers else []


def describe_scada(model):
    """One config per shared core: the Tucker layers sharing it and the core's shape."""
    cores = {}
    for path, m in model.named_modules():
        if isinstance(m, _TuckerWeight) and m.shared_core:
            cores.setdefault(id(m.core), (list(m.core.shape), {}))[1][path] = _spec(m)
    return [{"per_layer": layers, "shared_core": shape} for shape, layers in cores.values()]


def _recorded_pairing(layer, path, spec, config):
    """The digit groups of the layer's permuted reshape: describe records them; for a train.py config
    they follow from its layout or its 'paired' reshape, as tucker.compress chose them."""
    if "pairing" in spec or "bias" in spec:        # written by describe: absent means the plain reshape
        return spec.get("pairing")
    if config.get("layout"):
        layout = parse_layouts(config["layout"]).get(path)
        if layout is not None:
            return layout["digits"]
    reshape = config.get("reshape") or "balanced"
    if reshape == "paired":
        first = layer.weight.shape[0]
        _, *groups = paired_shape(first, layer.weight.size // first, len(spec["modes"]), f"load_model ({path})")
        return groups
    if reshape == "spatial":
        raise ValueError(f"load_model: the permuted reshape of a reshape='spatial' run is not recorded "
                         f"(layer {path}); save the model with compressors.save_model instead")
    return None


def rebuild_tucker(model, config, state):
    """Tucker layers with the recorded modes, ranks, bias and pairing; one shared core when
    config['shared_core'] (SCADA). Works for describe's configs and Tucker/ScadaCompressor's."""
    per_layer = config.get("per_layer")
    if not per_layer:
        raise ValueError("load_model: a tucker/scada step needs per_layer {layer: {modes, ranks}}")
    targets = {path: module_at(model, path, "load_model (tucker)") for path in per_layer}
    core = None
    if config.get("shared_core"):
        dtype = next(iter(targets.values())).weight.dtype
        core = Parameter(np.ones(tuple(int(k) for k in config["shared_core"]), dtype))
    for path, spec in per_layer.items():
        layer, modes = targets[path], [int(v) for v in spec["modes"]]
        bias = spec.get("bias", config.get("bias", True))
        if state is not None:
            bias = f"{path}.bias" in state
        kwargs = dict(ranks=None if core is not None else [int(v) for v in spec["ranks"]], order=len(modes),
                      shape=modes, core=core, bias=bias, pairing=_recorded_pairing(layer, path, spec, config))
        new = (TuckerDense.from_dense(layer, **kwargs) if isinstance(layer, Dense)
               else TuckerConv2d.from_conv(layer, **kwargs))
        if core is not None:
            object.__setattr__(new, "_shared", True)
        replace_module(model, path, new)
    return model
