"""Numba kernels of a GRU time loop with the batch as the vector lanes: states and gates as (H, B) arrays
(float32; see engine/ops/recurrent_sideways.py). Each loop runs over the B lanes of one unit, writing
one array, so every loop vectorises."""
import numba

from .recurrent_numba import FAST, sigmoid32, tanh32


@numba.njit(inline="always", **FAST)
def _sigmoid_row(row):
    for k in range(row.shape[0]):
        row[k] = sigmoid32(row[k])


@numba.njit(inline="always", **FAST)
def _new_state(candidate, z, previous, new):
    """new <- n + z (previous - n) with n = tanh(candidate), lane by lane."""
    for k in range(candidate.shape[0]):
        n = tanh32(candidate[k])
        new[k] = n + z[k] * (previous[k] - n)


# Two kernels, by where the input projection comes from: one loop body choosing at run time between
# them made the step 89 against 52 us (hidden 256, batch 128, two features; LLVM kept the choice inside
# the loops, which then stayed scalar).

@numba.njit(inline="always", **FAST)
def _add_features(row, j, x, t, w_ih):
    """row += sum_f w_ih[f, j] x[t, f]: unit j's input projection, lane by lane."""
    for f in range(x.shape[1]):
        weight, feature = w_ih[f, j], x[t, f]
        for k in range(row.shape[0]):
            row[k] += weight * feature[k]


@numba.njit(cache=True, **FAST)
def gru_step_on_side(gh, b, h, h_next, gates, x, t, w_ih):
    """h_next <- one GRU step on (H, B) arrays, the input projection formed here from the features of x
    (T, F, B): sum_f w_ih[f] x[t, f]. gh (3H, B): the hidden products of h (r, z, n rows); b (4H,): both
    biases summed for r and z, then the input bias of n and its hidden bias; gates (3, B): scratch, one
    unit's r, z and candidate at a time (with every unit's r and z in a (2H, B) scratch, 0.26 MB more to
    keep in cache, the step took 50-52 against 46-47 us at hidden 256, batch 128, two features)."""
    hidden = h.shape[0]
    r, z, candidate = gates[0], gates[1], gates[2]
    for u in range(hidden):
        for row, j in ((r, u), (z, hidden + u)):
            g, bias = gh[j], b[j]
            for k in range(row.shape[0]):
                row[k] = g[k] + bias
            _add_features(row, j, x, t, w_ih)
            _sigmoid_row(row)
        j = 2 * hidden + u
        g, input_bias, hidden_bias = gh[j], b[j], b[j + hidden]
        for k in range(candidate.shape[0]):
            candidate[k] = input_bias + r[k] * (g[k] + hidden_bias)
        _add_features(candidate, j, x, t, w_ih)
        _new_state(candidate, z, h[u], h_next[u])


@numba.njit(cache=True, **FAST)
def gru_step_on_side_projected(gh, b, h, h_next, gates, pre):
    """gru_step_on_side with the input projection given: pre (3H, B), x_t w_ih from one product."""
    hidden = h.shape[0]
    r, z, candidate = gates[0], gates[1], gates[2]
    for u in range(hidden):
        for row, j in ((r, u), (z, hidden + u)):
            g, p, bias = gh[j], pre[j], b[j]
            for k in range(row.shape[0]):
                row[k] = g[k] + p[k] + bias
            _sigmoid_row(row)
        j = 2 * hidden + u
        g, p, input_bias, hidden_bias = gh[j], pre[j], b[j], b[j + hidden]
        for k in range(candidate.shape[0]):
            candidate[k] = p[k] + input_bias + r[k] * (g[k] + hidden_bias)
        _new_state(candidate, z, h[u], h_next[u])
