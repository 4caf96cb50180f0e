"""Learnable wavelet linear layers (Wolter et al. 2020): WaveletLinear, the wavelet loss, RNN/CNN conversion, plugin.

Choices where the paper leaves details open (see METHODS.md section 1):
* the transform is the zero-padding FWT of engine.ops.wavelet (PyWavelets' index convention);
  synthesis crops every level to the length the analysis saw, so IFWT(FWT(x)) has length n;
* named wavelets padded to a longer filter_length get zeros at the end of the analysis filters
  and at the front of the synthesis filters (perfect reconstruction and zero losses are kept);
* 'random' filters are uniform in [-1, 1);
* the permutation P is drawn from the engine's generator and stored as an index buffer;
* the number of levels is limited so that every level's input is at least one filter long.
"""

import numpy as np

from engine import backend
from engine.tensor import Tensor
from engine import rng as erandom
from engine.grad_mode import is_grad_enabled
from engine.kernels import wavelet_inference
from engine.kernels.wavelet import band_length, coefficient_lengths, signal_lengths
from engine.ops.wavelet import fwt_packed, ifwt_packed, permute_last
from layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from layers.module import Module, Parameter
from layers.recurrent import GRUCell, LSTMCell
from layers.validation import check_input

from .eval_cache import cache_of
from .layer_swap import module_at, replace_module
from .plugin import Compressor, DoesNotApply
from .wavelet_filters import alias_cancellation_loss, filter_bank, perfect_reconstruction_loss


def max_levels(n, filter_length):
    """Most levels for a length-n signal such that every level's input has >= filter_length samples."""
    levels, m = 0, n
    while m >= filter_length and band_length(m, filter_length) < m:
        levels += 1
        m = band_length(m, filter_length)
    return levels


class WaveletLinear(Module):
    """y = S . IFWT(G . P(FWT(B . x))) (+ bias): a square n x n map with 2n + n' + 4L values.

    x: (batch, n) or (batch, T, n). B, G, S are elementwise scales (init 1); the four filters
    dec_lo, dec_hi, rec_lo, rec_hi (length L) start from `init` and are learned unless
    learn_filters=False (then they are stored, counted as parameters, but frozen); P is a fixed
    random permutation of the n' coefficients (identity when permute=False).
    """

    def __init__(self, n, levels, filter_length, init="haar", bias=False, learn_filters=True,
                 permute=True, ac_variant="modulated", dtype=None):
        super().__init__()
        name = type(self).__name__
        for arg, v, low in (("n", n, 2), ("levels", levels, 1), ("filter_length", filter_length, 2)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name}: {arg} must be an int >= {low}, got {v!r}")
        n, levels, filter_length = int(n), int(levels), int(filter_length)
        limit = max_levels(n, filter_length)
        if levels > limit:
            raise ValueError(f"{name}: {levels} levels need a longer signal; n={n} with filter_length "
                             f"{filter_length} allows at most {limit} (each level's input must be at "
                             "least one filter long)")
        if ac_variant not in ("modulated", "sign_flip"):
            raise ValueError(f"{name}: ac_variant must be 'modulated' or 'sign_flip', got {ac_variant!r}")
        dtype = np.dtype(dtype or backend.DEFAULT_DTYPE)
        self.n, self.levels, self.filter_length = n, levels, filter_length
        self.init, self.permute, self.ac_variant = init, bool(permute), ac_variant
        self.band_sizes = coefficient_lengths(n, filter_length, levels)       # [cA_J, cD_J..cD_1]
        self.level_lengths = signal_lengths(n, filter_length, levels)[:-1]    # [m_0 = n, ..., m_{J-1}]
        self.n_coeffs = sum(self.band_sizes)

        bank = filter_bank(init, filter_length, rng=erandom.get_rng(), dtype=dtype)
        self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi = (
            Parameter(f, requires_grad=bool(learn_filters)) for f in bank)
        self.input_scale = Parameter(np.ones(n, dtype=dtype))
        self.coeff_scale = Parameter(np.ones(self.n_coeffs, dtype=dtype))
        self.output_scale = Parameter(np.ones(n, dtype=dtype))
        self.bias = Parameter(np.zeros(n, dtype=dtype)) if bias else None
        if self.permute:
            perm = erandom.get_rng().permutation(self.n_coeffs).astype(np.int64)
        else:
            perm = np.arange(self.n_coeffs, dtype=np.int64)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(self.n_coeffs, dtype=np.int64)
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", inverse)

    @property
    def learn_filters(self):
        return self.dec_lo.requires_grad

    def set_learn_filters(self, learn):
        """Freeze (False) or unfreeze (True) the four filters."""
        for f in self.filters():
            f.requires_grad = bool(learn)

    def filters(self):
        return self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi

    def forward(self, x):
        x = check_input(self, x, (2, 3), axis=-1, size=self.n)
        if x.dtype != self.input_scale.dtype:
            raise TypeError(f"{type(self).__name__}: input dtype {x.dtype} differs from the layer's "
                            f"{self.input_scale.dtype}")
        if not is_grad_enabled():
            # inference: one fused pass per row when Numba runs (the same values as the ops below)
            y = wavelet_inference.linear_map(
                x.data, *(p.data for p in (self.input_scale, self.dec_lo, self.dec_hi)), self.permutation,
                *(p.data for p in (self.coeff_scale, self.rec_lo, self.rec_hi, self.output_scale)),
                None if self.bias is None else self.bias.data, self.levels)
            if y is not None:
                return Tensor(y)
        y = self._linear_map(x)
        return y if self.bias is None else y + self.bias

    def _linear_map(self, x):
        """S . IFWT(G . P(FWT(B . x))): the layer without its bias."""
        coeffs = fwt_packed(x * self.input_scale, self.dec_lo, self.dec_hi, self.levels)
        if self.permute:
            coeffs = permute_last(coeffs, self.permutation, self.inverse_permutation)
        y = ifwt_packed(coeffs * self.coeff_scale, self.rec_lo, self.rec_hi, self.band_sizes,
                        self.level_lengths)
        return y * self.output_scale

    def sideways_map(self, lanes):
        """(run, bias): run(src, out) applies the layer without its bias to C-contiguous (n, lanes) arrays
        on their side, with the parameters' values as they are now (a GRU layer keeps its state so without
        a graph: engine.ops.gru_sequence_sideways); None where that pass does not run (no Numba, the GPU)."""
        run = wavelet_inference.sideways_map(
            *(p.data for p in (self.input_scale, self.dec_lo, self.dec_hi)), self.permutation,
            *(p.data for p in (self.coeff_scale, self.rec_lo, self.rec_hi, self.output_scale)), self.levels, lanes)
        return None if run is None else (run, self.bias)

    def as_dense(self):
        """(W, bias) with x @ W + bias equal to this layer's output; W (n, n) is differentiable.

        W's rows are the layer's map of the unit vectors, so building it costs one transform of
        an n-row batch. A recurrent layer builds it once per sequence and then does one matmul
        per step, instead of T small transforms (the parameter count is unchanged). In eval mode W
        is built once and kept (compressors.eval_cache), so inference pays no rebuild per sequence.
        """
        xp = backend.xp_of(self.input_scale.data)
        sources = [*self.parameters(), self.permutation, self.inverse_permutation]
        weight = cache_of(self, "_dense_cache").get(
            self, sources, lambda: self._linear_map(Tensor(xp.eye(self.n, dtype=self.input_scale.dtype))))
        return weight, self.bias

    def wavelet_loss(self):
        """Perfect-reconstruction plus alias-cancellation loss of this layer's filters (a scalar Tensor)."""
        filters = self.filters()
        return perfect_reconstruction_loss(*filters) + alias_cancellation_loss(
            *filters, variant=self.ac_variant)

    def flops(self, inputs, output):
        """Three elementwise scales (+ bias) and, per level, 2 bands x N_j x L multiply-adds each way."""
        rows = output.size // self.n
        transform = 2 * sum(4 * self.filter_length * band_length(m, self.filter_length)
                            for m in self.level_lengths)
        scales = 2 * self.n + self.n_coeffs + (self.n if self.bias is not None else 0)
        return rows * (transform + scales)

    def extra_repr(self):
        extra = f", init={self.init!r}" + ("" if self.learn_filters else ", fixed filters")
        return (f"{self.n}, levels={self.levels}, filter_length={self.filter_length}{extra}"
                + (", bias=True" if self.bias is not None else "")
                + ("" if self.permute else ", permute=False"))


def wavelet_layers(model):
    """Every WaveletLinear inside `model`."""
    return [m for m in model.modules() if isinstance(m, WaveletLinear)]


def wavelet_loss(model, weight=1.0):
    """weight * sum of (PR + AC) over every WaveletLinear in the model; None when it has none."""
    layers = wavelet_layers(model)
    if not layers:
        return None
    total = layers[0].wavelet_loss()
    for layer in layers[1:]:
        total = total + layer.wavelet_loss()
    return total if weight == 1.0 else total * weight


# ---------------------------------------------------------------- conversions
GRU_GATES = {"state": "hh_state", "reset": "hh_reset", "update": "hh_update"}
LSTM_GATES = {"input": "hh_input", "forget": "hh_forget", "cell": "hh_cell", "output": "hh_output"}
GRU_GROUPS = {"gates": ("reset", "update"), "full": ("state", "reset", "update")}
LSTM_GROUPS = {"gates": ("input", "forget", "output"), "full": ("input", "forget", "cell", "output")}
# which=None: the candidate transform and one gate, per cell kind (an LSTM has no 'state' or 'reset')
DEFAULT_WHICH = {"GRU": "state_reset", "LSTM": "cell_forget"}


def gates_for(cell, which):
    """The hh_* attribute names a choice like 'state_reset', 'gates', 'full' or 'input_forget' names
    (None: DEFAULT_WHICH of the cell's kind)."""
    if isinstance(cell, GRUCell):
        gates, groups, kind = GRU_GATES, GRU_GROUPS, "GRU"
    elif isinstance(cell, LSTMCell):
        gates, groups, kind = LSTM_GATES, LSTM_GROUPS, "LSTM"
    else:
        raise TypeError(f"compress_recurrent: expected a GRUCell or LSTMCell, got {type(cell).__name__}")
    if which is None:
        which = DEFAULT_WHICH[kind]
    words = list(which) if isinstance(which, (list, tuple)) else (
        list(groups[which]) if which in groups else str(which).split("_"))
    names = []
    for word in words:
        if word not in gates:
            raise ValueError(f"compress_recurrent: unknown {kind} transform {word!r} in {which!r}; "
                             f"use {', '.join(gates)}, combinations joined by '_', or "
                             f"{', '.join(groups)}")
        if gates[word] not in names:
            names.append(gates[word])
    return names


def _replace_child(parent, name, new):
    """Swap a registered sub-module in place, keeping its position (Sequential order matters)."""
    parent._modules[name] = new
    object.__setattr__(parent, name, new)


def _like(new, old_weight):
    """Give a new layer the dtype and device of the weight it replaces."""
    new.astype(old_weight.dtype)
    return new.to(old_weight.device)


def wavelet_from_dense(dense, levels=None, filter_length=6, init="haar", **layer_kw):
    """A WaveletLinear for a square Dense (its bias carried over); the weight itself is dropped."""
    if not isinstance(dense, Dense) or dense.n_in != dense.n_out:
        shape = (dense.n_in, dense.n_out) if isinstance(dense, Dense) else type(dense).__name__
        raise ValueError(f"wavelet_from_dense: expected a square Dense layer, got {shape}")
    n = dense.n_in
    if levels is None:
        levels = min(8, max_levels(n, filter_length))
        if levels < 1:
            raise ValueError(f"wavelet_from_dense: a filter of length {filter_length} is longer than "
                             f"the layer's {n} inputs, so no wavelet level fits; use a filter length "
                             f"of at most {n}")
    layer = WaveletLinear(n, levels, filter_length, init=init, bias=dense.bias is not None,
                          dtype=dense.weight.dtype, **layer_kw)
    if dense.bias is not None:
        layer.bias.data = dense.bias.data.astype(layer.bias.dtype).copy()
    return _like(layer, dense.weight)


def compress_recurrent(module, which=None, levels=None, filter_length=6, init="haar",
                       **layer_kw):
    """Replace the chosen hidden-to-hidden transforms of every GRU/LSTM cell in `module` by WaveletLinear.

    which: GRU 'state', 'reset', 'update', 'gates' (reset+update), 'state_reset', 'state_update',
    'full'; LSTM 'input', 'forget', 'cell', 'output', combinations such as 'input_forget',
    'gates' (input+forget+output), 'full'; or a list of those words; None: DEFAULT_WHICH (GRU
    'state_reset', LSTM 'cell_forget'). An hh bias is carried over.
    levels=None picks min(8, the most the hidden size allows). Returns the module (changed in place).
    """
    cells = [m for m in module.modules() if isinstance(m, (GRUCell, LSTMCell))]
    if not cells:
        raise ValueError(f"compress_recurrent: {type(module).__name__} holds no GRUCell or LSTMCell")
    for cell in cells:
        for gate in gates_for(cell, which):
            old = getattr(cell, gate)
            if isinstance(old, WaveletLinear):
                continue
            _replace_child(cell, gate, wavelet_from_dense(old, levels, filter_length, init, **layer_kw))
    return module


def compress_square_dense(model, levels=None, filter_length=6, init="haar", **layer_kw):
    """Replace every square Dense layer of a model by WaveletLinear; returns how many were replaced."""
    count = 0
    for _, parent in list(model.named_modules()):
        if isinstance(parent, (GRUCell, LSTMCell)):
            continue
        for name, child in list(parent._modules.items()):
            if type(child) is Dense and child.n_in == child.n_out:
                _replace_child(parent, name, wavelet_from_dense(child, levels, filter_length, init,
                                                                **layer_kw))
                count += 1
    return count


def wavelet_cnn(n_classes=10, levels=6, filter_length=6, init="haar"):
    """The paper's MNIST network: conv 1->20 5x5, pool, conv 20->50 5x5, pool, WaveletLinear(800), dense.

    ReLU after each convolution and after the wavelet layer (no parameters). With 10 classes,
    J = 6 and L = 6 it stores 36,030 values, the paper's count.
    """
    from layers.models import FeedForward
    return FeedForward(Conv2d(1, 20, 5), ReLU(), MaxPool2d(2), Conv2d(20, 50, 5), ReLU(), MaxPool2d(2),
                       Flatten(), WaveletLinear(800, levels, filter_length, init=init), ReLU(),
                       Dense(800, n_classes))


# ---------------------------------------------------------------- checkpoints (Compressor.describe / rebuild)
def describe(model):
    """[config] of the model's WaveletLinear layers (their full settings by path), or []."""
    layers = {p: m for p, m in model.named_modules() if isinstance(m, WaveletLinear)}
    if not layers:
        return []
    return [{"per_layer": {p: {"n": m.n, "levels": m.levels, "filter_length": m.filter_length, "init": m.init,
                               "bias": m.bias is not None, "learn_filters": bool(m.learn_filters),
                               "permute": m.permute, "ac_variant": m.ac_variant}
                           for p, m in layers.items()}}]


def rebuild(model, config, state):
    """WaveletLinear layers from describe's per-layer specs, or replaying WaveletCompressor's config."""
    per_layer = config.get("per_layer")
    if per_layer:
        for path, s in per_layer.items():
            module_at(model, path, "load_model (wavelet)")
            replace_module(model, path, WaveletLinear(
                int(s["n"]), int(s["levels"]), int(s["filter_length"]), init=s.get("init", "haar"),
                bias=bool(s.get("bias")), learn_filters=bool(s.get("learn_filters", True)),
                permute=bool(s.get("permute", True)), ac_variant=s.get("ac_variant", "modulated")))
        return model
    layer_kw = dict(learn_filters=not config.get("fixed", False), ac_variant=config.get("ac_variant", "modulated"))
    args = (config.get("levels"), config.get("filter_length", 6), config.get("init", "haar"))
    replaced = str(config.get("replaced") or "")
    if replaced.startswith("recurrent:"):
        compress_recurrent(model, config.get("which"), *args, **layer_kw)
    elif replaced == "square dense layers":
        compress_square_dense(model, *args, **layer_kw)
    for layer in wavelet_layers(model):
        layer.set_learn_filters(layer_kw["learn_filters"])
    return model


# ---------------------------------------------------------------- train.py plugin
class WaveletCompressor(Compressor):
    """train.py's --compress wavelet: convert recurrent (or square dense) transforms, add the wavelet loss."""

    name = "wavelet"
    describe = staticmethod(describe)
    rebuild = staticmethod(rebuild)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--wavelet-levels", type=int, default=None,
                            help="FWT levels J (default: min(8, most the width allows))")
        parser.add_argument("--wavelet-filter-length", type=int, default=6,
                            help="filter length L (named wavelets are zero-padded to it)")
        parser.add_argument("--wavelet-init", default="haar",
                            help="haar, db2..db6, sym2..sym6 or random")
        parser.add_argument("--wavelet-loss-weight", type=float, default=1.0,
                            help="weight of the PR + AC wavelet loss")
        parser.add_argument("--wavelet-which", default=None,
                            help="recurrent transforms to replace: GRU state, reset, update, gates, "
                                 "state_reset, state_update, full; LSTM input, forget, cell, output, "
                                 "combinations joined by '_', gates, full (default: GRU state_reset, "
                                 "LSTM cell_forget)")
        parser.add_argument("--wavelet-fixed", action="store_true",
                            help="keep the initial filters fixed (not learned)")
        parser.add_argument("--wavelet-ac-variant", default="modulated", choices=("modulated", "sign_flip"),
                            help="alias-cancellation loss form")

    def __init__(self, args):
        super().__init__(args)
        get = lambda key, default: getattr(args, key, default)  # noqa: E731
        self.levels = get("wavelet_levels", None)
        self.filter_length = get("wavelet_filter_length", 6)
        self.init = get("wavelet_init", "haar")
        self.loss_weight = get("wavelet_loss_weight", 1.0)
        self.which = get("wavelet_which", None)
        self.fixed = bool(get("wavelet_fixed", False))
        self.ac_variant = get("wavelet_ac_variant", "modulated")
        self.replaced = None

    def apply(self, model, task=None):
        has_cells = any(isinstance(m, (GRUCell, LSTMCell)) for m in model.modules())
        layer_kw = dict(learn_filters=not self.fixed, ac_variant=self.ac_variant)
        if has_cells:
            compress_recurrent(model, self.which, self.levels, self.filter_length, self.init, **layer_kw)
            self.replaced = f"recurrent:{self.which or 'default'}"
        elif compress_square_dense(model, self.levels, self.filter_length, self.init, **layer_kw):
            self.replaced = "square dense layers"
        elif wavelet_layers(model):
            self.replaced = "model already has wavelet layers"
        else:
            raise DoesNotApply("wavelet compressor: the model has no GRU/LSTM cell, square Dense layer or "
                               "WaveletLinear to train "
                               "(--model wavelet_cnn is LeNet-5 with a wavelet layer)")
        for layer in wavelet_layers(model):
            layer.set_learn_filters(not self.fixed)
        return model

    def extra_loss(self, model):
        if self.loss_weight == 0:
            return None
        return wavelet_loss(model, self.loss_weight)

    def config(self):
        return {"name": self.name, "levels": self.levels, "filter_length": self.filter_length,
                "init": self.init, "loss_weight": self.loss_weight, "which": self.which,
                "fixed": self.fixed, "ac_variant": self.ac_variant, "replaced": self.replaced}
