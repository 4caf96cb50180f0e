"""The proximal steps of compression-aware low-rank training: matrix views of a layer's weight,
singular-value and (group) soft thresholding, and the regularizer that applies them after a step."""
import numpy as np

from engine import backend
from layers.dense import Dense

from .layer_swap import find_layers
from .settings import per_layer


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
