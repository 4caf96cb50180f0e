"""A GRU layer's time loop without a graph, with the batch as the vector lanes: the state and the gates as
(H, B) arrays, so that a hidden transform that runs best on that layout (WaveletLinear's sideways pass)
needs no turning at each step. Float32, on the CPU, with Numba; the layer chooses it (layers/recurrent.py)."""
import numpy as np

from .. import backend, buffers
from ..function import Function
from ..grad_mode import is_grad_enabled
from ..kernels import load_numba_module
from ..tensor import Tensor, as_tensor


def available(like):
    """Whether the loop runs for arrays like `like`: float32 NumPy arrays, with Numba in use."""
    return (not backend.is_gpu_array(like) and like.dtype == np.float32
            and load_numba_module("recurrent_sideways_numba") is not None)


class GRUSequenceSideways(Function):
    """(out (B, T, H) when wanted, h_T) from x (B, T, n_in), w_ih (n_in, 3H), the biases b (4H,): b_ih + b_hh
    for r and z, then b_ih and b_hh of n; h0 (B, H), or (0, H) for zeros; and the weights of the gates whose
    hidden transform is a product (in `hidden`'s order); the other gates' transforms are the callables in
    `hidden`. Each step forms its input projection from the features (project_in_step) or with one
    product. No backward."""

    def __init__(self, hidden, outputs, project_in_step):
        self.hidden, self.with_outputs, self.project_in_step = hidden, outputs, project_in_step

    def forward(self, x, w_ih, b, h0, *weights):
        kernels = load_numba_module("recurrent_sideways_numba")
        batch, steps, n_in = x.shape
        size = h0.shape[1]
        take = lambda shape: buffers.take(shape, x.dtype, like=x)          # noqa: E731
        gh, gates, h, h_next = take((3 * size, batch)), take((3, batch)), take((size, batch)), \
            take((size, batch))
        turning, zero_bias = load_numba_module("turn_numba"), np.zeros(size, x.dtype)
        if h0.shape[0]:
            turning.rows_on_side(h0, 0, batch, np.ones(size, x.dtype), h)
        else:                               # no initial state given: zeros
            h[...] = 0
        if self.project_in_step:
            features = np.ascontiguousarray(x.transpose(1, 2, 0))
        else:
            w_ih_t, pre = np.ascontiguousarray(w_ih.T), take((3 * size, batch))
        products, maps = _groups(self.hidden, weights, size)
        out = np.empty((batch, steps, size), x.dtype) if self.with_outputs else None
        for t in range(steps):
            for rows, w_t in products:
                np.matmul(w_t, h, out=gh[rows])
            for rows, run in maps:
                run(h, gh[rows])
            if self.project_in_step:
                kernels.gru_step_on_side(gh, b, h, h_next, gates, features, t, w_ih)
            else:
                np.matmul(w_ih_t, x[:, t].T, out=pre)
                kernels.gru_step_on_side_projected(gh, b, h, h_next, gates, pre)
            if out is not None:
                turning.rows_back(h_next, 0, batch, zero_bias, out[:, t])
            h, h_next = h_next, h
        final = np.empty((batch, size), x.dtype)
        turning.rows_back(h, 0, batch, zero_bias, final)
        for array in (gh, gates, h, h_next) + (() if self.project_in_step else (pre,)):
            buffers.give_back(array)
        return (out, final) if out is not None else final

    def backward(self, *grads):
        raise RuntimeError("GRUSequenceSideways runs only without a graph")


def _groups(hidden, weights, size):
    """([(rows of gh, the weights joined side by side, transposed as a view)] for each run of neighbouring
    product gates,
    [(rows of gh, callable)] for the others); one callable for all three gates takes every row."""
    if callable(hidden):
        return [], [(slice(0, 3 * size), hidden)]
    products, maps, start, stacked = [], [], None, []
    weights = list(weights)
    for gate, part in enumerate(list(hidden) + [None]):
        if part is not None and not callable(part):
            stacked.append(weights.pop(0))
            start = gate if start is None else start
            continue
        if stacked:
            # (H, k H) side by side, used through its transpose: BLAS takes the view as it is (a copy of the
            # transposed weights a call cost more than a short sequence's steps)
            joined = stacked[0] if len(stacked) == 1 else np.concatenate(stacked, axis=1)
            products.append((slice(start * size, gate * size), joined.T))
            start, stacked = None, []
        if part is not None:
            maps.append((slice(gate * size, (gate + 1) * size), part))
    return products, maps


def factored_hidden(first, second, batch):
    """run(src, out) for a low-rank hidden weight on its side: first (H, k r) every gate's first factor side
    by side, second (k, r, H) the second factors (as recurrent_product.FactoredHidden takes them); src (H, B),
    out (k H, B): u (k r, B) = first^T src, then every gate's block of out, second_g^T u_g, in one batched
    product."""
    gates, rank, size = second.shape
    first_t = np.ascontiguousarray(first.T)
    second_t = np.ascontiguousarray(second.transpose(0, 2, 1))
    u = np.empty((gates * rank, batch), first.dtype)

    def run(src, out):
        np.matmul(first_t, src, out=u)
        np.matmul(second_t, u.reshape(gates, rank, batch), out=out.reshape(gates, size, batch))
    return run


def gru_sequence_sideways(x, w_ih, b_ih, hidden, b_hh=None, h0=None, outputs=True, project_in_step=True):
    """A whole GRU layer over time without a graph, its state kept as (H, B): x (B, T, n_in), the input
    projection w_ih (n_in, 3H) and b_ih (3H,) or None, `hidden` the three gates' hidden transforms (r, z,
    n) each a weight (H, H) (h @ w) or a callable run(src, out) on C-contiguous (H, B) arrays, or one
    callable run(src, out) writing all three, out (3H, B) (a low-rank hidden weight's two products), b_hh
    (3H,) or None, h0 (B, H) or None (zeros) -> (out (B, T, H) or None when outputs=False, h_T (B, H)).
    project_in_step: each step forms x_t w_ih from the features (a few of them), else by one product.
    Needs available(x); the caller falls back to gru_sequence otherwise. No graph: under one, with a
    tensor that requires a gradient, a ValueError."""
    x, w_ih = as_tensor(x), as_tensor(w_ih, like=x)
    tensors = [x, w_ih] + [as_tensor(v) for v in (b_ih, b_hh, h0) if v is not None] + \
        [part for part in ([] if callable(hidden) else hidden) if isinstance(part, Tensor)]
    if is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise ValueError("gru_sequence_sideways runs without a graph: call it under engine.no_grad() "
                         "(gru_sequence records one)")
    if not available(x.data):
        raise ValueError(f"gru_sequence_sideways needs float32 CPU arrays and Numba, got {x.dtype} "
                         f"{'on the GPU' if backend.is_gpu_array(x.data) else 'on the CPU'}")
    batch, steps, n_in = x.shape
    if (not callable(hidden) and len(hidden) != 3) or w_ih.shape[0] != n_in or w_ih.shape[1] % 3:
        raise ValueError(f"gru_sequence_sideways: expected three hidden transforms and w_ih ({n_in}, 3H), "
                         f"got {1 if callable(hidden) else len(hidden)} and {w_ih.shape}")
    size = w_ih.shape[1] // 3
    zeros = np.zeros(3 * size, x.dtype)
    b_ih = zeros if b_ih is None else as_tensor(b_ih).data
    b_hh = zeros if b_hh is None else as_tensor(b_hh).data
    b = np.concatenate([b_ih[:2 * size] + b_hh[:2 * size], b_ih[2 * size:], b_hh[2 * size:]]).astype(x.dtype)
    # no initial state travels as an empty (0, H) array: the loop then starts from zeros without a copy
    h0 = Tensor(np.zeros((0, size), x.dtype)) if h0 is None else as_tensor(h0)
    parts = hidden if callable(hidden) else list(hidden)
    weights = [] if callable(hidden) else [as_tensor(part) for part in hidden if not callable(part)]
    results = GRUSequenceSideways(parts, outputs, project_in_step)(x, w_ih, Tensor(b), h0, *weights)
    return (results[0], results[1]) if outputs else (None, results)
