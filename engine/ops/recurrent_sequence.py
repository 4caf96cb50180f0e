"""Whole-sequence LSTM and GRU ops: the time loop inside one op, backward through time by hand.

One graph node per layer instead of a few per time step, and the hidden weight's gradient
as one matrix product over all steps instead of one small product (and one accumulation)
per step. The per-step ops in recurrent.py stay for cells called on their own.
"""
import weakref

from .. import backend, buffers
from ..function import Function
from ..kernels import recurrent as kernels
from ..tensor import Tensor, as_tensor
from .broadcasting import column_sums
from .recurrent_product import hidden_product


class _SequenceOp(Function):
    """The per-step workspaces (gates, states) come from the buffer pool and go back to it when the op
    is dropped (after backward, or at once without a graph); backward's scratch goes back when it
    ends. What the op returns is always a fresh array: a transposed copy made with ascontiguousarray
    would be the workspace itself when the batch or the sequence has length 1."""

    def __init__(self, impl=None, outputs=True):
        self.impl = impl
        self.with_outputs = outputs

    def _outputs_gradient(self, grads, hs):
        """(g_out, the final states' gradients) from backward's arguments: without the outputs among
        the op's results, g_out is zeros (B, T, H), shaped from the states hs (T + 1, B, H)."""
        if self.with_outputs:
            return grads[0], grads[1:]
        steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        return backend.xp_of(hs).zeros((batch, steps, hidden), hs.dtype), grads

    def _results(self, xp, hs, *finals):
        """The op's results: the outputs (B, T, H) from the states hs (T + 1, B, H) when wanted, then the final states."""
        return ((_batch_major(xp, hs[1:]),) if self.with_outputs else ()) + finals

    def _workspace(self, shape, like):
        """A pooled array that stays with this op until the op is dropped."""
        array = buffers.take(shape, like.dtype, like=like)
        weakref.finalize(self, buffers.give_back, array).atexit = False
        return array

    def _kept_steps(self, steps):
        """(how many steps' gate workspaces to keep, step -> its slot). Backward reads every step's;
        without a graph one slot serves all steps and stays in cache (the LSTM's cell state takes
        two, in turn): a GRU step at batch 128, hidden 256 on one thread took 741-834 us so, against
        767-934 us with a slot per step (bench/results/microbench-session6.md, grufwd2.py)."""
        if self.recording:
            return steps, lambda t: t
        return 1, lambda t: 0

    def _hidden(self, xp, weights, gi, batch, steps):
        """The hidden product for this op's weights (recurrent_product), its workspaces pooled like the rest."""
        self.hidden_product = hidden_product(xp, weights, steps, batch, lambda shape: self._workspace(shape, gi),
                                             self.recording)
        return self.hidden_product


def _batch_major(xp, time_major):
    """(T, B, ...) -> a C-contiguous (B, T, ...) result (lent from the buffer pool when large)."""
    out = buffers.lend((time_major.shape[1], time_major.shape[0]) + time_major.shape[2:], time_major.dtype,
                       like=time_major)
    out[...] = time_major.transpose(1, 0, *range(2, time_major.ndim))
    return out


class LSTMSequence(_SequenceOp):
    """(out (B, T, H), h_T, c_T) from the projected inputs gi (B, T, 4H), the hidden bias b (4H,)
    or empty, the initial state h0, c0 (B, H), and the hidden weight: w (H, 4H), or the factors
    a (H, 4r), c (4, r, H) of a low-rank one (recurrent_product).

    Each step: a = gi_t + h w + b; i, f, g, o = s, s, tanh, s of a's quarters (gate order
    input, forget, cell, output); c' = f c + i g; h' = o tanh(c'). Time-major buffers keep
    every per-step array contiguous.
    """

    def forward(self, gi, b, h0, c0, *weights):
        xp = backend.xp_of(gi)
        batch, steps, width = gi.shape
        hidden = width // 4
        b = b if b.size else None
        product = self._hidden(xp, weights, gi, batch, steps)
        kept, at = self._kept_steps(steps)
        acts = self._workspace((kept, batch, width), gi)             # i, f, g, o after activation
        hs = self._workspace((steps + 1, batch, hidden), gi)         # hs[t] is the state before step t
        cs = self._workspace((kept + 1, batch, hidden), gi)
        tcs = self._workspace((kept, batch, hidden), gi)             # tanh(c_{t+1})
        hs[0], cs[0] = h0, c0
        cell = (lambda t: t) if self.recording else (lambda t: t % 2)   # cs[cell(t)] is c before step t
        gate_step = kernels.lstm_forward_stepper(gi, b, self.impl)
        for t in range(steps):
            a = acts[at(t)]
            product.step(t, hs[t], a)
            gate_step(a, gi, t, cs[cell(t)], cs[cell(t + 1)], tcs[at(t)], hs[t + 1])
        self.acts, self.hs, self.cs, self.tcs = acts, hs, cs, tcs
        self.has_bias = b is not None
        return self._results(xp, hs, hs[steps].copy(), cs[cell(steps)].copy())

    def backward(self, *grads):
        acts, hs, cs, tcs, product = self.acts, self.hs, self.cs, self.tcs, self.hidden_product
        g_out, (g_hT, g_cT) = self._outputs_gradient(grads, hs)
        steps, batch, width = acts.shape
        needs = self.needs_input_grad
        # the pre-activations' gradient, batch-major like gi, so that it is gi's gradient as it stands
        g_pre = (buffers.lend if needs[0] else buffers.take)((batch, steps, width), acts.dtype, like=acts)
        dh = g_hT.copy()
        dc = g_cT.copy()
        for t in range(steps - 1, -1, -1):
            kernels.lstm_backward_step(g_out, t, dh, dc, acts[t], tcs[t], cs[t], g_pre, self.impl)
            product.step_backward(t, g_pre[:, t], dh)
        g_weights = product.weight_grads(hs[:steps], g_pre, needs[4:])
        g_b = column_sums(g_pre.reshape(steps * batch, width)) if self.has_bias and needs[1] else None
        if not needs[0]:
            buffers.give_back(g_pre)
        product.release()
        return (g_pre if needs[0] else None, g_b, dh, dc, *g_weights)


class GRUSequence(_SequenceOp):
    """(out (B, T, H), h_T) from the projected inputs gi (B, T, 3H), the hidden bias b (3H,) or
    empty, the initial state h0 (B, H), and the hidden weight: w (H, 3H), or the factors
    a (H, 3r), c (3, r, H) of a low-rank one (recurrent_product). Made with projects=True, the op
    takes the raw inputs x (B, T, n_in) in gi's place and the projection's weight w_ih (n_in, 3H)
    and bias b_ih (3H,) or empty before the hidden weight, and forms gi = x w_ih + b_ih itself.

    Each step: gh = h w + b; r = s(gi_r + gh_r), z = s(gi_z + gh_z),
    n = tanh(gi_n + r gh_n), h' = n + z (h - n) (PyTorch's equations).
    """

    def __init__(self, impl=None, outputs=True, projects=False):
        super().__init__(impl, outputs)
        self.projects = projects

    def forward(self, gi, b, h0, *weights):
        xp = backend.xp_of(gi)
        step_projects = None
        if self.projects:
            x, w_ih, b_ih = gi, weights[0], weights[1] if weights[1].size else None
            weights = weights[2:]
            if not self.recording:
                step_projects = kernels.gru_projecting_stepper(x, w_ih, b_ih, b if b.size else None, self.impl)
            if step_projects is None:
                gi = _projection(xp, x, w_ih, b_ih)
            self.x, self.w_ih, self.has_ih_bias = x, w_ih, b_ih is not None
        batch, steps = gi.shape[:2]
        hidden = weights[0].shape[0]
        width = 3 * hidden
        b = b if b.size else None
        product = self._hidden(xp, weights, gi, batch, steps)
        kept, at = self._kept_steps(steps)
        gates = self._workspace((kept, batch, width), gi)            # r, z, n after activation
        gh_n = self._workspace((kept, batch, hidden), gi)            # the hidden part of n's input
        hs = self._workspace((steps + 1, batch, hidden), gi)
        gh = buffers.take((batch, width), gi.dtype, like=gi)
        hs[0] = h0
        if step_projects is not None:
            for t in range(steps):
                product.step(t, hs[t], gh)
                step_projects(gh, t, hs[t], hs[t + 1])
        else:
            scratch = buffers.take((batch, width), gi.dtype, like=gi)   # for the float64 Numba step
            gate_step = kernels.gru_forward_stepper(gi, b, self.impl, keep=self.recording, scratch=scratch)
            for t in range(steps):
                product.step(t, hs[t], gh)
                gate_step(gates[at(t)], gh, gi, t, gh_n[at(t)], hs[t], hs[t + 1])
            buffers.give_back(scratch)
        buffers.give_back(gh)
        self.gates, self.gh_n, self.hs = gates, gh_n, hs
        self.has_bias = b is not None
        return self._results(xp, hs, hs[steps].copy())

    def backward(self, *grads):
        gates, gh_n, hs, product = self.gates, self.gh_n, self.hs, self.hidden_product
        g_out, (g_hT,) = self._outputs_gradient(grads, hs)
        steps, batch, width = gates.shape
        needs = self.needs_input_grad
        shape = (batch, steps, width)                                # batch-major, like gi
        hands_out = needs[0] and not self.projects                  # gi's gradient is a result as it stands
        g_gi = (buffers.lend if hands_out else buffers.take)(shape, gates.dtype, like=gates)   # n part: of gi_n alone
        # the gradient of gh_t = h_t w + b, time-major: each step writes and its product reads one block, and
        # the weight gradient is one product with the states as they lie (the GRU train step of bench/speed.py,
        # 2 threads, ten processes each way in turn: median 25.5 -> 24.6 ms)
        g_gh = buffers.take((steps, batch, width), gates.dtype, like=gates)
        dh = g_hT.copy()
        through = backend.xp_of(dh).empty_like(dh)
        for t in range(steps - 1, -1, -1):
            kernels.gru_backward_step(g_out, t, dh, gates[t], gh_n[t], hs[t], g_gi, g_gh.transpose(1, 0, 2),
                                      self.impl)
            product.step_backward(t, g_gh[t], through)
            dh += through
        first = 5 if self.projects else 3                            # where the hidden weights start
        g_weights = product.weight_grads(hs[:steps], g_gh, needs[first:], time_major=True)
        g_b = column_sums(g_gh.reshape(steps * batch, width)) if self.has_bias and needs[1] else None
        g_inputs = (g_gi if needs[0] else None,)
        if self.projects:
            g_inputs = _projection_grads(self.x, self.w_ih, self.has_ih_bias, g_gi, needs)
        if not hands_out:
            buffers.give_back(g_gi)
        buffers.give_back(g_gh)
        product.release()
        return (g_inputs[0], g_b, dh, *g_inputs[1:], *g_weights)


def _projection(xp, x, w_ih, b_ih):
    """gi = x w_ih + b_ih (B, T, kH) from x (B, T, n_in)."""
    batch, steps, n_in = x.shape
    gi = xp.matmul(x.reshape(batch * steps, n_in), w_ih)
    if b_ih is not None:
        gi += b_ih
    return gi.reshape(batch, steps, w_ih.shape[1])


def _projection_grads(x, w_ih, has_bias, g_gi, needs):
    """(g_x, g_w_ih, g_b_ih) of gi = x w_ih + b_ih from gi's gradient (None where not needed)."""
    batch, steps, n_in = x.shape
    rows = g_gi.reshape(batch * steps, w_ih.shape[1])
    g_x = (rows @ w_ih.T).reshape(x.shape) if needs[0] else None
    g_w = x.reshape(batch * steps, n_in).T @ rows if needs[3] else None
    g_b = column_sums(rows) if has_bias and needs[4] else None
    return g_x, g_w, g_b


def _hidden_weights(name, w, gi, hidden, gates):
    """The hidden weight as a tuple of tensors: (w,) with w (H, kH), or the factors (a, c) of a
    low-rank one, a (H, k r) and c (k, r, H)."""
    if isinstance(w, (tuple, list)):
        if len(w) != 2:
            raise ValueError(f"{name}: a factored hidden weight is a pair (a, c), got {len(w)} arrays")
        a, c = (as_tensor(f, like=gi) for f in w)
        if c.ndim != 3 or c.shape[0] != gates or c.shape[2] != hidden:
            raise ValueError(f"{name}: second factors must be ({gates}, rank, {hidden}), got {c.shape}")
        if a.shape != (hidden, gates * c.shape[1]):
            raise ValueError(f"{name}: first factors must be ({hidden}, {gates * c.shape[1]}), got {a.shape}")
        return a, c
    w = as_tensor(w, like=gi)
    if w.shape != (hidden, gates * hidden):
        raise ValueError(f"{name}: hidden weight must be ({hidden}, {gates * hidden}), got {w.shape}")
    return (w,)


def _sequence_args(name, gi, w, b, states, gates, width=None):
    """Checked tensors for a sequence op; width: the projected width when gi is the raw input (ih given)."""
    gi = as_tensor(gi)
    if width is None and (gi.ndim != 3 or gi.shape[2] % gates):
        raise ValueError(f"{name}: projected input must be (batch, steps, {gates} * hidden), got {gi.shape}")
    batch, hidden = gi.shape[0], (gi.shape[2] if width is None else width) // gates
    weights = _hidden_weights(name, w, gi, hidden, gates)
    if b is not None:
        b = as_tensor(b, like=gi)
        if b.shape != (gates * hidden,):
            raise ValueError(f"{name}: hidden bias must be ({gates * hidden},), got {b.shape}")
    xp = backend.xp_of(gi.data)
    out = []
    for what, s in states:
        if s is None:
            s = Tensor(xp.zeros((batch, hidden), dtype=gi.dtype))
        s = as_tensor(s, like=gi)
        if s.shape != (batch, hidden):
            raise ValueError(f"{name}: {what} must be ({batch}, {hidden}), got {s.shape}")
        out.append(s)
    # a missing bias travels as an empty array, so the op's inputs keep fixed positions
    return gi, weights, (b if b is not None else Tensor(xp.zeros(0, dtype=gi.dtype))), out


def lstm_sequence(gi, w, b=None, h0=None, c0=None, impl=None, outputs=True):
    """A whole LSTM layer over time: gi (B, T, 4H) = x W_ih + b_ih, w (H, 4H) or the pair (a, c) of a
    low-rank hidden weight (a (H, 4r) the gates' first factors side by side, c (4, r, H) their second
    factors), b (4H,) or None, h0, c0 (B, H) or None (zeros) -> (out (B, T, H), h_T, c_T). impl picks
    the step kernels ('numpy': the reference everywhere; 'numba' or None: Numba on the CPU when
    available, one CuPy kernel a step on a GPU). outputs=False: out is not formed
    (None in its place; a model reading only the last state saves the (B, T, H) copy)."""
    gi, weights, b, (h0, c0) = _sequence_args("lstm_sequence", gi, w, b, [("h0", h0), ("c0", c0)], 4)
    results = LSTMSequence(impl, outputs)(gi, b, h0, c0, *weights)
    return tuple(results) if outputs else (None, *results)


def gru_sequence(gi, w, b=None, h0=None, impl=None, outputs=True, ih=None):
    """A whole GRU layer over time: gi (B, T, 3H) = x W_ih + b_ih, w (H, 3H) or the pair (a, c) of a
    low-rank hidden weight (a (H, 3r), c (3, r, H)), b (3H,) or None, h0 (B, H) or None (zeros) ->
    (out (B, T, H), h_T). impl and outputs as for lstm_sequence.

    ih=(w_ih, b_ih or None): gi is the raw input x (B, T, n_in) and the op projects it, w_ih
    (n_in, 3H). Without a graph, in float32 with Numba, each step then forms its own projection as
    it goes, which pays for a few input features (GRU layers pass theirs for up to
    GRU_FEATURES_PROJECTED_IN_STEP); otherwise the whole sequence is projected first."""
    if ih is None:
        gi, weights, b, (h0,) = _sequence_args("gru_sequence", gi, w, b, [("h0", h0)], 3)
        results = GRUSequence(impl, outputs)(gi, b, h0, *weights)
    else:
        x, w_ih, b_ih = _projection_args("gru_sequence", gi, ih, 3)
        _, weights, b, (h0,) = _sequence_args("gru_sequence", x, w, b, [("h0", h0)], 3, width=w_ih.shape[1])
        results = GRUSequence(impl, outputs, projects=True)(x, b, h0, w_ih, b_ih, *weights)
    return tuple(results) if outputs else (None, *results)


def _projection_args(name, x, ih, gates):
    """(x, w_ih, b_ih) as tensors, checked; a missing b_ih travels as an empty array."""
    if not isinstance(ih, (tuple, list)) or len(ih) != 2:
        raise ValueError(f"{name}: ih must be a pair (w_ih, b_ih or None), got {type(ih).__name__}")
    x = as_tensor(x)
    w_ih = as_tensor(ih[0], like=x)
    if x.ndim != 3 or w_ih.ndim != 2 or w_ih.shape[0] != x.shape[2] or w_ih.shape[1] % gates:
        raise ValueError(f"{name}: with ih, the input must be (batch, steps, n_in) and w_ih (n_in, {gates} * hidden), "
                         f"got {x.shape} and {w_ih.shape}")
    if ih[1] is None:
        return x, w_ih, Tensor(backend.xp_of(x.data).zeros(0, dtype=x.dtype))
    b_ih = as_tensor(ih[1], like=x)
    if b_ih.shape != (w_ih.shape[1],):
        raise ValueError(f"{name}: b_ih must be ({w_ih.shape[1]},), got {b_ih.shape}")
    return x, w_ih, b_ih
