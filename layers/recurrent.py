"""GRU and LSTM cells with replaceable hidden-to-hidden transforms, and batch-first stacked GRU/LSTM."""
import math

import engine.ops as F
from engine import backend
from engine.grad_mode import is_grad_enabled
from engine.ops import recurrent_sideways as sideways
from engine.tensor import Tensor, as_tensor

from . import init
from .validation import check_input
from .dense import Dense
from .module import Module, ModuleList

_AUTO = object()
HH_INITS = ("uniform", "orthogonal")  # "decide the fast path yourself" for a cell called on its own
GRU_FEATURES_PROJECTED_IN_STEP = 4    # a GRU layer's input projection runs inside its steps up to this many features
GRU_MIN_BATCH_ON_SIDE = 32            # the fewest examples for which a GRU keeps its state on its side (see GRU._on_side)
GRU_ON_SIDE_MULTIPLE = 16             # ... and, without a wavelet layer, what the batch must be a multiple of


class _RecurrentCell(Module):
    """Shared machinery: `ih` = Dense(n_in, k*H) holds the per-gate biases; one hh_* module per gate.

    Each hh_* maps (B, H) -> (B, H) and may be replaced by any Module (the compressors
    swap them independently). While all of them are plain Dense layers without hooks, a
    call concatenates their weights and does one matmul (the fast path); otherwise each
    hh_* module is called (the slow path). Both compute the same thing.
    """

    gate_names = ()
    elementwise_flops = 0  # FLOPs per hidden unit per example of the gate math itself

    def __init__(self, n_in, hidden, hh_bias=True, hh_init="uniform", dtype=None):
        super().__init__()
        name = type(self).__name__
        for arg, v in (("n_in", n_in), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        if hh_init not in HH_INITS:
            raise ValueError(f"{name}: hh_init must be one of {HH_INITS}, got {hh_init!r}")
        self.n_in, self.hidden, self.hh_bias, self.hh_init = n_in, hidden, bool(hh_bias), hh_init
        self.ih = Dense(n_in, len(self.gate_names) * hidden, bias=True, dtype=dtype)
        for gate in self.gate_names:
            setattr(self, gate, Dense(hidden, hidden, bias=hh_bias, dtype=dtype))
        self._fused_flops = 0
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: every weight and bias U(-1/sqrt(H), 1/sqrt(H)); with
        hh_init='orthogonal' each hh_* Dense weight is then a random orthogonal matrix (Keras's
        default for recurrent kernels), which keeps the state's norm through many steps."""
        bound = 1.0 / math.sqrt(self.hidden)
        for p in self.parameters():
            p.data = backend.to_device(init.uniform(p.shape, bound, p.dtype), p.device)
        if self.hh_init == "orthogonal":
            for m in self.hh_modules():
                if isinstance(m, Dense):
                    w = m.weight
                    w.data = backend.to_device(init.orthogonal(*w.shape, dtype=w.dtype), w.device)

    def hh_modules(self):
        return [getattr(self, gate) for gate in self.gate_names]

    def _dense_form(self, m, materialize):
        """(weight (H, H), bias or None) standing for hh module m, or None when m must be called."""
        if m._pre_hooks or m._post_hooks:
            return None
        if type(m) is Dense:
            if m.n_in == self.hidden and m.n_out == self.hidden:
                return m.weight, m.bias
            return None
        as_dense = getattr(m, "as_dense", None) if materialize else None
        return as_dense() if as_dense is not None else None

    def fused_hh(self, materialize=False):
        """(W, b) with the hh_* weights side by side (H, k*H), or None when the slow path is needed.

        Plain Dense modules always fuse. With materialize=True, modules offering `as_dense()`
        (a differentiable weight for a structured linear map, e.g. WaveletLinear) fuse too: worth
        it when the weight is reused over many steps, as in a sequence.
        """
        forms = [self._dense_form(m, materialize) for m in self.hh_modules()]
        if any(form is None for form in forms):
            return None
        weight = F.concat([w for w, _ in forms], axis=1)
        return weight, self._joined_biases([b for _, b in forms], weight)

    def factored_hh(self):
        """((a, c), b) for a low-rank hidden transform run inside the whole-sequence op, or None.

        Every hh_* module must offer `as_factors()` -> (first (H, r), second (r, H), bias or None), all at
        the same rank r, with no hooks: a is the first factors side by side (H, k r), c the second
        factors stacked (k, r, H), b their biases side by side or None.
        """
        factors = []
        for m in self.hh_modules():
            as_factors = getattr(m, "as_factors", None)
            form = as_factors() if as_factors is not None and not (m._pre_hooks or m._post_hooks) else None
            if form is None:
                return None
            factors.append(form)
        first, second, biases = zip(*factors)
        rank = first[0].shape[1]
        if any(w.shape != (self.hidden, rank) for w in first) or any(w.shape != (rank, self.hidden) for w in second):
            return None
        return (F.concat(list(first), axis=1), F.stack(list(second), axis=0)), self._joined_biases(biases, first[0])

    def _joined_biases(self, biases, like):
        """The gates' hh biases side by side (k*H,), zeros for a gate without one; None when none has one."""
        if all(b is None for b in biases):
            return None
        zeros = Tensor(backend.xp_of(like.data).zeros(self.hidden, dtype=like.dtype))
        return F.concat([zeros if b is None else b for b in biases], axis=0)

    def _hh(self, h, fused):
        """The hidden-to-hidden transforms of h: one (B, k*H) tensor (fast path) or k of (B, H)."""
        k, batch = len(self.gate_names), h.shape[0]
        if fused is not None:
            weight, bias = fused
            self._fused_flops = batch * k * self.hidden * (2 * self.hidden + (bias is not None))
            return [F.linear(h, weight, bias)]
        self._fused_flops = 0
        outs = []
        for gate, m in zip(self.gate_names, self.hh_modules()):
            y = as_tensor(m(h))
            if y.shape != h.shape:
                raise ValueError(f"{type(self).__name__}: {gate} must map {h.shape} -> {h.shape}, "
                                 f"got output shape {y.shape}")
            outs.append(y)
        return outs

    def _gate_inputs(self, x, projected):
        """The input projection x W_ih + b_ih of shape (B, k*H)."""
        name, width = type(self).__name__, len(self.gate_names) * self.hidden
        if projected:
            x = as_tensor(x)
            if x.ndim != 2 or x.shape[1] != width:
                raise ValueError(f"{name}: expected a projected input of shape (batch, {width}), "
                                 f"got shape {x.shape}")
            return x
        return self.ih(check_input(self, x, 2, axis=1, size=self.n_in))

    def _state_part(self, value, batch, like, what):
        name = type(self).__name__
        if value is None:
            xp = backend.xp_of(like.data)
            return Tensor(xp.zeros((batch, self.hidden), dtype=like.dtype))
        value = as_tensor(value)
        if value.shape != (batch, self.hidden):
            raise ValueError(f"{name}: expected {what} of shape ({batch}, {self.hidden}), "
                             f"got shape {value.shape}")
        return value

    def flops(self, inputs, output):
        """The gate math, plus the hh matmuls when the fast path ran them (no hh_* call counted them)."""
        h = output[0] if isinstance(output, tuple) else output
        return h.size * self.elementwise_flops + self._fused_flops

    def extra_repr(self):
        return (f"{self.n_in}, {self.hidden}" + ("" if self.hh_bias else ", hh_bias=False")
                + ("" if self.hh_init == "uniform" else f", hh_init={self.hh_init!r}"))


class GRUCell(_RecurrentCell):
    """r = s(x W_ir + b_ir + hh_reset(h)), z = s(x W_iz + b_iz + hh_update(h)),
    n = tanh(x W_in + b_in + r * hh_state(h)), h' = (1 - z) * n + z * h.

    Call: cell(x (B, n_in), h (B, H) or None) -> h'. FLOPs of its own gate math: 10 per
    hidden unit (activations count 1; h' is computed as n + z * (h - n)).
    """

    gate_names = ("hh_reset", "hh_update", "hh_state")
    elementwise_flops = 10

    def forward(self, x, h=None, projected=False, fused=_AUTO):
        gi = self._gate_inputs(x, projected)
        h = self._state_part(h, gi.shape[0], gi, "hidden state h")
        return F.gru_gates(gi, h, *self._hh(h, self.fused_hh() if fused is _AUTO else fused))


class LSTMCell(_RecurrentCell):
    """i, f, g, o = s(.), s(.), tanh(.), s(.) of x W_i* + b_i* + hh_*(h); c' = f c + i g; h' = o tanh(c').

    Call: cell(x (B, n_in), (h, c) or None) -> (h', c'). forget_bias is added to the forget
    gate's input bias after PyTorch's default init (0 = PyTorch's behaviour). FLOPs of its
    own gate math: 13 per hidden unit.
    """

    gate_names = ("hh_input", "hh_forget", "hh_cell", "hh_output")
    elementwise_flops = 13

    def __init__(self, n_in, hidden, hh_bias=True, forget_bias=0.0, hh_init="uniform", dtype=None):
        super().__init__(n_in, hidden, hh_bias=hh_bias, hh_init=hh_init, dtype=dtype)
        self.forget_bias = float(forget_bias)
        if self.forget_bias:
            self.ih.bias.data[hidden:2 * hidden] += self.forget_bias

    def forward(self, x, state=None, projected=False, fused=_AUTO):
        gi = self._gate_inputs(x, projected)
        if state is None:
            state = (None, None)
        elif not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"LSTMCell: expected state (h, c) or None, got {type(state).__name__}")
        h = self._state_part(state[0], gi.shape[0], gi, "hidden state h")
        c = self._state_part(state[1], gi.shape[0], gi, "cell state c")
        return F.lstm_gates(gi, c, *self._hh(h, self.fused_hh() if fused is _AUTO else fused))


class _RecurrentLayer(Module):
    """Stacked cells over batch-first sequences (B, T, n_in) -> (outputs (B, T, H), final state).

    Each layer projects its whole input sequence with one matmul (the cell's `ih`), then
    runs the time loop: as one whole-sequence op (F.lstm_sequence / F.gru_sequence) when the
    cell is a plain GRUCell/LSTMCell without hooks whose hh_* transforms fuse into one weight or
    are low-rank factor pairs of one rank (factored_hh), else by calling the cell on each
    projected slice (replaced hh modules, hooks such as the FLOP report's). Both compute the
    same thing.
    """

    cell_class = None
    has_cell_state = False

    def __init__(self, n_in, hidden, num_layers=1, hh_bias=True, dropout=0.0, dtype=None, **cell_kw):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        self.n_in, self.hidden, self.num_layers = n_in, hidden, num_layers
        self.hh_bias, self.dropout = bool(hh_bias), float(dropout)
        self.cells = ModuleList([self.cell_class(n_in if layer == 0 else hidden, hidden,
                                                 hh_bias=hh_bias, dtype=dtype, **cell_kw)
                                 for layer in range(num_layers)])

    def _layer_states(self, state, batch, what):
        """Split an initial state (num_layers, B, H) into per-layer (B, H) tensors (None: zeros)."""
        if state is None:
            return [None] * self.num_layers
        state = as_tensor(state)
        expected = (self.num_layers, batch, self.hidden)
        if state.shape != expected:
            raise ValueError(f"{type(self).__name__}: expected initial {what} of shape "
                             f"(num_layers, batch, hidden) = {expected}, got shape {state.shape}")
        return [F.reshape(s, (batch, self.hidden)) for s in F.split(state, self.num_layers, axis=0)]

    def _initial_states(self, state, batch):
        raise NotImplementedError

    def forward(self, x, state=None, outputs=True):
        """(outputs (B, T, H), final state); outputs=False: (None, final state), the last layer's
        per-step outputs not formed (for a caller that reads only the final state)."""
        x = check_input(self, x, 3, axis=2, size=self.n_in)
        batch = x.shape[0]
        states = self._initial_states(state, batch)
        inputs, finals = x, []
        for layer, cell in enumerate(self.cells):
            if layer > 0 and self.dropout and self.training:
                inputs = F.dropout(inputs, self.dropout, True)
            wanted = outputs or layer < self.num_layers - 1
            s = states[layer]
            on_side = self._on_side(cell, inputs, s, wanted)
            if on_side is not None:
                inputs, s = on_side
                finals.append(s)
                continue
            fused = cell.fused_hh(materialize=inputs.shape[1] > 1)
            whole = fused if fused is not None else cell.factored_hh()
            if whole is not None and self._one_op_per_layer(cell):
                inputs, s = self._sequence_op(*self._project(cell, inputs, whole), s, wanted)
            else:   # a cell call per step, so cell hooks (e.g. the FLOP report's) see each step
                projected = cell.ih(inputs)
                steps = []
                for step in F.unstack(projected, axis=1):
                    s = cell(step, s, projected=True, fused=fused)
                    steps.append(s[0] if self.has_cell_state else s)
                inputs = F.stack(steps, axis=1) if wanted else None
            finals.append(s)
        return inputs, self._final_state(finals)

    def _on_side(self, cell, inputs, state, outputs):
        """(outputs or None, final state) of one layer run with its state on its side (engine.ops.recurrent_sideways),
        or None where that loop does not apply (the GRU's rule)."""
        return None

    def _one_op_per_layer(self, cell):
        """Whether the whole-sequence op may stand in for the cell's per-step calls."""
        return type(cell) is self.cell_class and not (cell._pre_hooks or cell._post_hooks)

    def _project(self, cell, inputs, whole):
        """(projected inputs (B, T, k H), (hidden weight, hidden bias)) for the whole-sequence op."""
        return cell.ih(inputs), whole

    def _sequence_op(self, projected, fused, state, outputs=True):
        """(outputs (B, T, H) or None when not wanted, final state) of one layer from one whole-sequence op."""
        raise NotImplementedError

    def extra_repr(self):
        s = f"{self.n_in}, {self.hidden}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.hh_bias:
            s += ", hh_bias=False"
        return s + (f", dropout={self.dropout}" if self.dropout else "")


class GRU(_RecurrentLayer):
    """GRU(n_in, hidden, num_layers=1, hh_bias=True, dropout=0.0, hh_init='uniform');
    call gru(x, h0=None) -> (out, h_n); gru(x, h0, outputs=False) -> (None, h_n).

    x (B, T, n_in); h0 and h_n (num_layers, B, H); dropout acts between stacked layers;
    hh_init='orthogonal' starts each recurrent weight as a random orthogonal matrix.
    """

    cell_class = GRUCell

    def _initial_states(self, state, batch):
        return self._layer_states(state, batch, "state h0")

    def _project(self, cell, inputs, whole):
        """A plain Dense projection of at most GRU_FEATURES_PROJECTED_IN_STEP input features goes into
        the sequence op (its ih argument), unapplied: without a graph each step forms its own
        projection there instead of reading a (B, T, 3H) array written first (batch 128, T 32, 2
        features, hidden 256: 2.0-2.3 against 3.1-3.8 ms for the projection and the gate steps,
        bench/results/microbench-session8.md)."""
        ih = cell.ih
        if type(ih) is not Dense or ih._pre_hooks or ih._post_hooks or ih.n_in > GRU_FEATURES_PROJECTED_IN_STEP:
            return super()._project(cell, inputs, whole)
        return check_input(ih, inputs, 3, axis=2, size=ih.n_in), (*whole, (ih.weight, ih.bias))

    def _on_side(self, cell, inputs, state, outputs):
        """Without a graph, from GRU_MIN_BATCH_ON_SIDE examples on (float32, Numba, the CPU), the time loop
        runs with the state as (H, B) (engine.ops.gru_sequence_sideways) when every hidden transform is a
        plain Dense, the layer's hidden weight is a low-rank factor pair (factored_hh), or the transforms
        are plain Dense and ones that run on their side (WaveletLinear's sideways_map); the first two only
        for a batch that is a multiple of GRU_ON_SIDE_MULTIPLE. One thread, 32 steps, two features (ms, by
        rows against on the side): hidden 256 at batch 128 dense 14.0 / 13.2, rank 32 6.3 / 5.6; at batch
        50 dense 6.0 / 7.0, rank 32 2.5 / 2.7; the wavelet GRU of bench/inference.py, whose layers were made
        dense before, 14.1 / 8.9 (bench/results/microbench-session13.md)."""
        ih = cell.ih
        if is_grad_enabled() or inputs.shape[0] < GRU_MIN_BATCH_ON_SIDE or not self._one_op_per_layer(cell) \
                or type(ih) is not Dense or ih._pre_hooks or ih._post_hooks or not sideways.available(inputs.data):
            return None
        hidden = self._hidden_on_side(cell, inputs.shape[0])
        if hidden is None or (inputs.shape[0] % GRU_ON_SIDE_MULTIPLE
                              and (callable(hidden[0]) or all(isinstance(p, Tensor) for p in hidden[0]))):
            return None
        return F.gru_sequence_sideways(inputs, ih.weight, ih.bias, hidden[0], hidden[1], state, outputs,
                                       project_in_step=ih.n_in <= GRU_FEATURES_PROJECTED_IN_STEP)

    def _hidden_on_side(self, cell, batch):
        """(the hidden transforms as gru_sequence_sideways takes them, the joined hidden bias or None), or None."""
        modules = cell.hh_modules()
        if any(m._pre_hooks or m._post_hooks for m in modules):
            return None
        factored = cell.factored_hh()
        if factored is not None:
            (first, second), bias = factored
            return sideways.factored_hidden(first.data, second.data, batch), bias
        parts, biases = [], []
        for m in modules:
            form = cell._dense_form(m, materialize=False)        # a plain (H, H) Dense: its weight as it is
            if form is None:
                on_side = getattr(m, "sideways_map", None)
                form = on_side(batch) if on_side is not None else None
            if form is None:
                return None
            parts.append(form[0])
            biases.append(form[1])
        return parts, cell._joined_biases(biases, cell.ih.weight)

    def _sequence_op(self, projected, fused, state, outputs=True):
        w, b, *ih = fused
        return F.gru_sequence(projected, w, b, state, outputs=outputs, ih=ih[0] if ih else None)

    def _final_state(self, finals):
        return F.stack(finals, axis=0)


class LSTM(_RecurrentLayer):
    """LSTM(n_in, hidden, num_layers=1, hh_bias=True, dropout=0.0, forget_bias=0.0);
    call lstm(x, (h0, c0)=None) -> (out, (h_n, c_n)), each state (num_layers, B, H); outputs=False
    gives (None, (h_n, c_n)).
    """

    cell_class = LSTMCell
    has_cell_state = True

    def __init__(self, n_in, hidden, num_layers=1, hh_bias=True, dropout=0.0, forget_bias=0.0,
                 hh_init="uniform", dtype=None):
        super().__init__(n_in, hidden, num_layers, hh_bias, dropout, dtype, forget_bias=forget_bias,
                         hh_init=hh_init)

    def _project(self, cell, inputs, whole):
        """The input projection without its bias, which joins the hidden bias instead: an LSTM adds both
        to every step's pre-activations, so one add inside the sequence op stands for two, and the
        projection's pass over (B, T, 4H) and its bias gradient's reduction over it are saved. A
        replaced or hooked `ih` is called as it is."""
        ih = cell.ih
        if type(ih) is not Dense or ih.bias is None or ih._pre_hooks or ih._post_hooks:
            return super()._project(cell, inputs, whole)
        weight, hidden_bias = whole
        bias = ih.bias if hidden_bias is None else F.add(ih.bias, hidden_bias)
        return F.linear(check_input(ih, inputs, 3, axis=2, size=ih.n_in), ih.weight), (weight, bias)

    def _initial_states(self, state, batch):
        if state is None:
            return [None] * self.num_layers
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"LSTM: expected initial state (h0, c0), got {type(state).__name__}")
        hs = self._layer_states(state[0], batch, "state h0")
        cs = self._layer_states(state[1], batch, "state c0")
        return list(zip(hs, cs))

    def _final_state(self, finals):
        return F.stack([h for h, _ in finals], axis=0), F.stack([c for _, c in finals], axis=0)

    def _sequence_op(self, projected, fused, state, outputs=True):
        h0, c0 = (None, None) if state is None else state
        out, h, c = F.lstm_sequence(projected, *fused, h0, c0, outputs=outputs)
        return out, (h, c)


def detach_state(state):
    """A recurrent state (a Tensor, or a tuple of them) cut from its graph, for truncated BPTT."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(detach_state(s) for s in state)
    return as_tensor(state).detach()
