"""The thin two-factor layers that low-rank truncation leaves (LowRankDense, LowRankConv2d), and how a
checkpoint describes and rebuilds them."""
import numpy as np

import engine.ops as F
from engine import backend
from engine.ops.conv import pair
from layers.conv import Conv2d
from layers.dense import Dense
from layers.module import Module
from layers.validation import check_input

from .layer_swap import module_at, replace_module
from .lowrank_prox import DEFAULT_CONV_RESHAPE, _conv_type, weight_matrix


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
        factors = self.as_factors()
        if factors is None:     # a hook watches a factor, or a factor is not a plain Dense
            return self.second(self.first(x))
        x = check_input(self, x, (2, 3), axis=-1, size=self.first.n_in)
        return F.low_rank_linear(x, *factors)    # one op, one graph node (2.5 us less a call at batch 1)

    def as_factors(self):
        """(first weight (n_in, r), second weight (r, n_out), bias or None): what a recurrent layer's
        whole-sequence op runs instead of calling this layer each step; None while a hook watches
        either factor (the hook must see each call)."""
        parts = (self.first, self.second)
        if any(type(m) is not Dense or m._pre_hooks or m._post_hooks for m in parts) or self.first.bias is not None:
            return None
        return self.first.weight, self.second.weight, self.second.bias

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
        first, second = self.first, self.second
        if self.mode == "filters" and type(first) is Conv2d and type(second) is Conv2d and first.bias is None \
                and not (first._pre_hooks or first._post_hooks or second._pre_hooks or second._post_hooks):
            # r filters, then their 1x1 mix: one op (without a graph, one pass with the r maps in cache)
            x = check_input(first, x, 4, axis=1, size=first.in_ch)
            return F.conv2d_pointwise(x, first.weight, second.weight, second.bias, first.stride, first.padding,
                                      first.dilation)
        return second(first(x))

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
