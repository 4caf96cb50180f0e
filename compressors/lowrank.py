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
from engine.ops.conv import pair
from layers.dense import Dense
from layers.module import Module, Sequential

from .basis import output_positions
from .layer_swap import find_layers, module_at, replace_module
from .settings import check_energy, check_rank, number_list as _number_list, per_layer, rank_for_energy
from .plugin import Compressor

CONV_RESHAPES = ("filters", "spatial")
DEFAULT_CONV_RESHAPE = "filters"


def _conv_type():
    from layers.conv import Conv2d
    return Conv2d


def _check_reshape(conv_reshape, where):
    if conv_reshape not in CONV_RESHAPES:
        raise ValueError(f"{where}: conv_reshape must be one of {CONV_RESHAPES}, got {conv_reshape!r}")
    return conv_reshape


# ---------------------------------------------------------------- weight <-> matrix
def weight_matrix(weight, conv_reshape=DEFAULT_CONV_RESHAPE):
    """The 2-D matrix whose rank is penalised: Dense (n_in, n_out) as is; conv (N,C,kh,kw) per conv_reshape."""
    if weight.ndim == 2:
        return weight
    if weight.ndim != 4:
        raise ValueError(f"weight_matrix: expected a 2-D Dense or 4-D conv weight, got shape {weight.shape}")
    n, c, kh, kw = weight.shape
    if _check_reshape(conv_reshape, "weight_matrix") == "filters":
        return weight.reshape(n, c * kh * kw)
    return weight.transpose(1, 2, 3, 0).reshape(c * kh, kw * n)


def matrix_to_weight(matrix, shape, conv_reshape=DEFAULT_CONV_RESHAPE):
    """Inverse of weight_matrix for a weight of `shape`."""
    if len(shape) == 2:
        return matrix.reshape(shape)
    n, c, kh, kw = shape
    if _check_reshape(conv_reshape, "matrix_to_weight") == "filters":
        return matrix.reshape(shape)
    return matrix.reshape(c, kh, kw, n).transpose(3, 0, 1, 2)


# ---------------------------------------------------------------- proximal operators
def singular_value_threshold(matrix, threshold):
    """prox of threshold * ||.||_*: U max(S - threshold, 0) V^T. Returns (matrix, shrunk singular values)."""
    if threshold < 0:
        raise ValueError(f"singular_value_threshold: threshold must be >= 0, got {threshold}")
    xp = backend.xp_of(matrix)
    u, s, vt = xp.linalg.svd(matrix.astype(xp.float64), full_matrices=False)
    s = xp.maximum(s - threshold, 0.0)
    keep = int((s > 0).sum())
    out = (u[:, :keep] * s[:keep]) @ vt[:keep]
    return out.astype(matrix.dtype), s


def soft_threshold(values, threshold):
    """prox of threshold * ||.||_1, elementwise: sign(v) max(|v| - threshold, 0)."""
    xp = backend.xp_of(values)
    return xp.sign(values) * xp.maximum(xp.abs(values) - threshold, 0)


def group_soft_threshold(groups, threshold):
    """prox of threshold * sum_g ||row_g||_2 for `groups` (num_groups, group_size), one group per row.

    Rows with norm <= threshold become exactly 0; the others shrink by threshold
    along their own direction.
    """
    xp = backend.xp_of(groups)
    norms = xp.sqrt((groups.astype(xp.float64) ** 2).sum(axis=1, keepdims=True))
    scale = xp.maximum(1.0 - threshold / xp.maximum(norms, 1e-300), 0.0)
    return (groups * scale).astype(groups.dtype)


def unit_groups(layer):
    """(num_units, group_size) matrix: each output unit's incoming weights (and bias) as one row."""
    w = layer.weight.data
    rows = w.T if w.ndim == 2 else w.reshape(w.shape[0], -1)
    if layer.bias is None:
        return rows
    xp = backend.xp_of(w)
    return xp.concatenate([rows, layer.bias.data.reshape(-1, 1)], axis=1)


def set_unit_groups(layer, groups):
    """Write unit_groups()'s layout back into the layer's weight and bias."""
    w = layer.weight.data
    n_units = w.shape[1] if w.ndim == 2 else w.shape[0]
    rows = groups[:, :-1] if layer.bias is not None else groups
    layer.weight.data = (rows.T if w.ndim == 2 else rows.reshape(w.shape)).astype(w.dtype).copy()
    if layer.bias is not None:
        layer.bias.data = groups[:, -1].reshape(n_units).astype(layer.bias.dtype).copy()


# ---------------------------------------------------------------- proximal training
class ProximalRegularizer:
    """Applies the nuclear-norm / sparse-group-lasso prox to the Dense and Conv2d layers of a model.

    tau, group_lambda, l1: one value for all layers, a list (one per layer, in
    model order) or a dict name -> value. every: prox every k optimiser steps.
    Use ``attach(optimizer)`` (a step hook) or call ``on_step(optimizer)`` after
    each step yourself.
    """

    def __init__(self, model, tau=0.0, group_lambda=0.0, l1=0.0, every=1,
                 conv_reshape=DEFAULT_CONV_RESHAPE, layers=None):
        self.conv_reshape = _check_reshape(conv_reshape, "ProximalRegularizer")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"ProximalRegularizer: every must be an int >= 1, got {every!r}")
        self.every = int(every)
        self.layers = find_layers(model, (Dense, _conv_type()), layers, "ProximalRegularizer")
        if not self.layers:
            raise ValueError("ProximalRegularizer: the model has no Dense or Conv2d layer")
        names = [n for n, _ in self.layers]
        tables = []
        for value, what in ((tau, "tau"), (group_lambda, "group_lambda"), (l1, "l1")):
            table = per_layer(value, names, what, "ProximalRegularizer")
            table = {name: 0.0 if v is None else v for name, v in table.items()}  # a dict may leave layers out
            tables.append(table)
            for name, v in table.items():
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v >= 0:
                    raise ValueError(f"ProximalRegularizer: {what} for layer {name} must be >= 0, got {v!r}")
        self.tau, self.group_lambda, self.l1 = tables
        self.steps = 0
        self.last_step_size = None

    def attach(self, optimizer):
        """Run the prox after every optimiser step (via register_step_hook); returns the remover."""
        return optimizer.register_step_hook(self.on_step)

    def on_step(self, optimizer):
        self.steps += 1
        if self.steps % self.every:
            return
        lrs = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        for name, layer in self.layers:
            lr = lrs.get(id(layer.weight))
            if lr is not None:
                self.apply_layer(name, layer, lr * self.every)
        self.last_step_size = {name: lrs.get(id(layer.weight), 0.0) * self.every
                               for name, layer in self.layers}

    def apply(self, step_size):
        """One proximal step with step size eta (a number or dict name -> eta) on every layer."""
        for name, layer in self.layers:
            eta = step_size[name] if isinstance(step_size, dict) else step_size
            self.apply_layer(name, layer, eta)

    def apply_layer(self, name, layer, eta):
        if self.l1[name] > 0:
            layer.weight.data = soft_threshold(layer.weight.data, eta * self.l1[name]).astype(layer.weight.dtype)
        if self.group_lambda[name] > 0:
            groups = unit_groups(layer)
            threshold = eta * self.group_lambda[name] * np.sqrt(groups.shape[1])
            set_unit_groups(layer, group_soft_threshold(groups, threshold))
        if self.tau[name] > 0:
            w = layer.weight.data
            matrix, _ = singular_value_threshold(weight_matrix(w, self.conv_reshape), eta * self.tau[name])
            layer.weight.data = matrix_to_weight(matrix, w.shape, self.conv_reshape).copy()

    def values(self):
        """The regulariser's terms summed over layers ('nuclear', 'group', 'l1', 'regularizer'), plus
        'rank_<layer>' (singular values above 1e-6 s_max) for each layer with tau > 0."""
        nuclear = group = l1 = 0.0
        ranks = {}
        for name, layer in self.layers:
            w = layer.weight.data
            xp = backend.xp_of(w)
            if self.tau[name] > 0:
                s = xp.linalg.svd(weight_matrix(w, self.conv_reshape).astype(xp.float64), compute_uv=False)
                nuclear += self.tau[name] * float(s.sum())
                ranks[f"rank_{name}"] = int((s > 1e-6 * s[0]).sum()) if float(s[0]) > 0 else 0
            if self.group_lambda[name] > 0:
                g = unit_groups(layer).astype(xp.float64)
                group += self.group_lambda[name] * np.sqrt(g.shape[1]) * float(xp.sqrt((g ** 2).sum(axis=1)).sum())
            if self.l1[name] > 0:
                l1 += self.l1[name] * float(xp.abs(w.astype(xp.float64)).sum())
        return {"nuclear": nuclear, "group": group, "l1": l1, "regularizer": nuclear + group + l1, **ranks}


def regularizer_value(model, tau=0.0, group_lambda=0.0, l1=0.0, conv_reshape=DEFAULT_CONV_RESHAPE,
                      layers=None):
    """sum tau ||W||_* + group and l1 terms for `model` (a float; see ProximalRegularizer.values)."""
    return ProximalRegularizer(model, tau, group_lambda, l1, 1, conv_reshape, layers).values()["regularizer"]


# ---------------------------------------------------------------- factored layers
def _make_conv(in_ch, out_ch, kernel, stride, padding, dilation, bias, weight, bias_value=None):
    """A layers.Conv2d with the given geometry holding `weight` (and bias_value)."""
    conv = _conv_type()(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation,
                        bias=bias)
    conv.weight.data = weight
    if bias:
        conv.bias.data = bias_value
    return conv


class LowRankDense(Module):
    """x -> (x A) B + b with A (n_in, r) = U_r S_r and B (r, n_out) = V_r^T: two thin Dense layers."""

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second = first, second
        self.rank = first.n_out

    @classmethod
    def from_dense(cls, dense, rank):
        w = backend.to_numpy(dense.weight.data).astype(np.float64)
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        r = min(rank, len(s))
        dtype, device = dense.weight.dtype, dense.weight.device
        first = Dense(dense.n_in, r, bias=False, dtype=dtype)
        second = Dense(r, dense.n_out, bias=dense.bias is not None, dtype=dtype)
        first.weight.data = backend.to_device((u[:, :r] * s[:r]).astype(dtype), device)
        second.weight.data = backend.to_device(vt[:r].astype(dtype), device)
        if dense.bias is not None:
            second.bias.data = dense.bias.data.copy()
        return cls(first, second)

    def forward(self, x):
        return self.second(self.first(x))

    def extra_repr(self):
        return f"{self.first.n_in} -> rank {self.rank} -> {self.second.n_out}"


class LowRankConv2d(Module):
    """A conv split at rank r: 'filters' (conv with r filters, then 1x1) or 'spatial' (kh x 1, then 1 x kw)."""

    def __init__(self, first, second, mode, rank):
        super().__init__()
        self.first, self.second = first, second
        self.mode, self.rank = mode, rank

    @classmethod
    def from_conv(cls, conv, rank, conv_reshape=DEFAULT_CONV_RESHAPE):
        stride, padding, dilation, groups = _geometry(conv)
        if groups != 1:
            raise ValueError(f"LowRankConv2d: grouped convolutions (groups={groups}) are not supported")
        weight = conv.weight.data
        n, c, kh, kw = weight.shape
        dtype, device = weight.dtype, conv.weight.device
        m = backend.to_numpy(weight_matrix(weight, conv_reshape)).astype(np.float64)
        u, s, vt = np.linalg.svd(m, full_matrices=False)
        r = min(rank, len(s))
        has_bias = conv.bias is not None
        bias = conv.bias.data.copy() if has_bias else None
        put = lambda a: backend.to_device(np.ascontiguousarray(a).astype(dtype), device)  # noqa: E731
        if conv_reshape == "filters":
            first = _make_conv(c, r, (kh, kw), stride, padding, dilation, False,
                               put(vt[:r].reshape(r, c, kh, kw)))
            second = _make_conv(r, n, (1, 1), 1, 0, 1, has_bias,
                                put((u[:, :r] * s[:r]).reshape(n, r, 1, 1)), bias)
        else:
            # M[(c,i),(j,n)] = W[n,c,i,j] = sum_r A[(c,i),r] B[r,(j,n)]
            a, b = u[:, :r] * s[:r], vt[:r]
            first = _make_conv(c, r, (kh, 1), (stride[0], 1), (padding[0], 0), (dilation[0], 1), False,
                               put(a.T.reshape(r, c, kh, 1)))
            second = _make_conv(r, n, (1, kw), (1, stride[1]), (0, padding[1]), (1, dilation[1]), has_bias,
                                put(b.reshape(r, kw, n).transpose(2, 0, 1).reshape(n, r, 1, kw)), bias)
        return cls(first, second, conv_reshape, r)

    def forward(self, x):
        return self.second(self.first(x))

    def extra_repr(self):
        return f"{self.mode}, rank {self.rank}"


# ---------------------------------------------------------------- checkpoints (Compressor.describe / rebuild)
def describe(model):
    """[config] of the model's LowRankDense / LowRankConv2d layers (ranks by path, conv mode), or []."""
    layers = [(p, m) for p, m in model.named_modules() if isinstance(m, (LowRankDense, LowRankConv2d))]
    if not layers:
        return []
    mode = next((m.mode for _, m in layers if isinstance(m, LowRankConv2d)), DEFAULT_CONV_RESHAPE)
    return [{"conv_reshape": mode, "ranks": {p: int(m.rank) for p, m in layers},
             "factored": {p: True for p, _ in layers}}]


def _resized(layer, weight_shape):
    """A plain Dense/Conv2d like `layer` whose weight has `weight_shape` (units removed by truncate)."""
    bias = layer.bias is not None
    if isinstance(layer, Dense):
        return Dense(int(weight_shape[0]), int(weight_shape[1]), bias=bias)
    return _conv_type()(int(weight_shape[1]) * layer.groups, int(weight_shape[0]), layer.kernel_size,
                        stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                        groups=layer.groups, bias=bias)


def _factored_shell(layer, rank, mode):
    """The two-layer form of `layer` at `rank` as from_dense/from_conv lay it out, with fresh values
    (no SVD: the saved state replaces the values anyway)."""
    bias = layer.bias is not None
    if isinstance(layer, Dense):
        rank = min(rank, layer.n_in, layer.n_out)
        return LowRankDense(Dense(layer.n_in, rank, bias=False), Dense(rank, layer.n_out, bias=bias))
    conv = _conv_type()
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    c, n = layer.in_ch, layer.out_ch
    if mode == "filters":
        rank = min(rank, n, c * kh * kw)
        first = conv(c, rank, (kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), bias=False)
        second = conv(rank, n, 1, bias=bias)
    else:
        rank = min(rank, c * kh, kw * n)
        first = conv(c, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), bias=False)
        second = conv(rank, n, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), bias=bias)
    return LowRankConv2d(first, second, mode, rank)


def _is_factored(layer, path, rank, config, state):
    """Whether the layer at `path` was cut in two: the state holds '<path>.first.*' (a later step
    may have replaced .first itself); without a state config['factored'], else truncate's rule."""
    if state is not None:
        return any(k.startswith(f"{path}.first.") for k in state)
    if "factored" in config:
        return bool(config["factored"].get(path, False))
    rows, cols = (layer.n_in, layer.n_out) if isinstance(layer, Dense) else (
        layer.out_ch, layer.weight.size // layer.out_ch)
    return int(rank) * (rows + cols) < rows * cols


def rebuild(model, config, state):
    """Factor the layers named in config['ranks'] (describe's, or LowRankCompressor's config after a run).

    Units removed by drop_dead_units are restored from the state's weight shapes.
    """
    ranks = config.get("ranks")
    if not ranks:
        return model                         # a run saved before truncation: still dense
    plain = (Dense, _conv_type())
    mode = config.get("conv_reshape") or DEFAULT_CONV_RESHAPE
    if state is not None:
        for path, m in list(model.named_modules()):
            key = f"{path}.weight" if path else "weight"
            if type(m) in plain and key in state and tuple(state[key].shape) != m.weight.shape:
                replace_module(model, path, _resized(m, state[key].shape))
    for path, rank in ranks.items():
        layer = module_at(model, path, "load_model (lowrank)")
        if type(layer) not in plain or not _is_factored(layer, path, rank, config, state):
            continue
        first = None if state is None else state.get(f"{path}.first.weight")
        second = None if state is None else state.get(f"{path}.second.weight")
        if first is not None and second is not None:
            if isinstance(layer, Dense):
                rank, shape = first.shape[1], (first.shape[0], second.shape[1])
            else:
                rank, shape = first.shape[0], (second.shape[0], first.shape[1]) + tuple(layer.kernel_size)
            if tuple(shape) != layer.weight.shape:    # units removed before factoring
                layer = _resized(layer, shape)
            if not isinstance(layer, Dense) and first.shape[-1] == 1 and layer.kernel_size[1] > 1:
                mode = "spatial"
        replace_module(model, path, _factored_shell(layer, int(rank), mode))
    return model


def _geometry(conv):
    return (pair(getattr(conv, "stride", 1), "stride"), pair(getattr(conv, "padding", 0), "padding"),
            pair(getattr(conv, "dilation", 1), "dilation"), int(getattr(conv, "groups", 1)))


# ---------------------------------------------------------------- dropping dead units
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
class LowRankCompressor(Compressor):
    """train.py's --compress lowrank: proximal nuclear-norm (+ group lasso) training, then truncation."""

    name = "lowrank"
    describe = staticmethod(describe)
    rebuild = staticmethod(rebuild)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--lowrank-tau", type=_number_list(float, "--lowrank-tau"), default=0.0,
                            help="nuclear-norm strength tau (one value or a comma list, one per "
                                 "Dense/Conv2d layer in model order)")
        parser.add_argument("--lowrank-group-lambda", type=_number_list(float, "--lowrank-group-lambda"),
                            default=0.0, help="group-lasso strength lambda (groups = output units)")
        parser.add_argument("--lowrank-l1", type=_number_list(float, "--lowrank-l1"), default=0.0,
                            help="l1 strength of the sparse group lasso")
        parser.add_argument("--lowrank-every", type=int, default=1,
                            help="apply the proximal step every k optimiser steps (step size k * lr)")
        parser.add_argument("--lowrank-energy", type=_number_list(float, "--lowrank-energy"), default=None,
                            help="truncate each layer to the rank keeping this energy fraction")
        parser.add_argument("--lowrank-rank", type=_number_list(int, "--lowrank-rank"), default=None,
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
        self.tau = get("lowrank_tau", 0.0)
        self.group_lambda = get("lowrank_group_lambda", 0.0)
        self.l1 = get("lowrank_l1", 0.0)
        self.every = get("lowrank_every", 1)
        self.energy = get("lowrank_energy")
        self.rank = get("lowrank_rank")
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
        if reg is not None and self.energy is None and self.rank is None and reg.last_step_size:
            reg.apply(reg.last_step_size)   # end on a proximal iterate so the dropped values are exact zeros
        example = None
        if task is not None:
            try:
                example = next(iter(task.test_batches(2)))[0]
            except Exception:   # FLOP columns are then left out
                example = None
        self.report = truncate(model, energy=self.energy, rank=self.rank, layers=self.layers,
                               conv_reshape=self.conv_reshape, example_input=example)
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
