"""Numba CPU kernels for one backward time step of an LSTM/GRU layer (see kernels/recurrent.py).

Each inner loop writes one array: with several outputs (which might alias the inputs, as far as
LLVM knows) the loop stayed scalar, 3x slower at hidden 128. `one` comes in typed like the
arrays, so float32 math is not promoted to float64 by an integer literal.
"""
import math

import numba
import numpy as np

# ---------------------------------------------------------------- float32 tanh
# tanh(x) ~ x P(x^2) / Q(x^2) for |x| <= 9, clamped beyond (tanh(9) rounds to 1 in float32), with the
# coefficients bench/fit_tanh.py fits (largest relative error 1.3e-7 in exact arithmetic; evaluated in
# float32 as here, at most 4e-7 from tanh, about 6 float32 spacings next to 1, where NumPy's float32
# tanh is within 1.4). Written as selects and one division, the step loops below vectorize around it;
# NumPy's tanh is a call of its own, a pass over memory each. The kernels using it take
# error_model="numpy" (else the division carries a zero check and the loop stays scalar) and allow
# contraction into fused multiply-adds. NaN stays NaN (every comparison with it is false), +-inf -> +-1.
_TANH_P = tuple(np.float32(v) for v in (
    0.999999922325602, 0.12853236412413452, 0.0028471248941170113, 8.50338471602307e-06,
    -9.749025834858552e-09, 4.196716479241388e-12, 3.437808031363225e-14))
_TANH_Q = tuple(np.float32(v) for v in (
    1.0, 0.4618651481518146, 0.023469657090754898, 0.00021740511914176036))
P0, P1, P2, P3, P4, P5, P6 = _TANH_P
Q0, Q1, Q2, Q3 = _TANH_Q
LIMIT, ONE, HALF = np.float32(9.0), np.float32(1.0), np.float32(0.5)
FAST = dict(error_model="numpy", fastmath={"contract"})


@numba.njit(inline="always", **FAST)
def tanh32(x):
    """tanh of a float32 scalar (see above), on |x| and given x's sign: each bound is then one comparison, which
    LLVM makes one vector min, where the two-sided clamps took a compare pair, a mask and a blend each
    (the GRU step at hidden 256, batch 128: 47-48 against 42-43 us; the same values bit for bit)."""
    a = abs(x)
    v = LIMIT if a > LIMIT else a
    s = v * v
    y = v * (P0 + s * (P1 + s * (P2 + s * (P3 + s * (P4 + s * (P5 + s * P6)))))) / (Q0 + s * (Q1 + s * (Q2 + s * Q3)))
    y = ONE if y > ONE else y
    return math.copysign(y, x)


@numba.njit(inline="always", **FAST)
def sigmoid32(x):
    return HALF * tanh32(HALF * x) + HALF


@numba.njit(cache=True, **FAST)
def tanh_into(x, out):
    """out <- tanh32(x), both contiguous float32 of one shape (for tests and bench/fit_tanh.py)."""
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        dst[i] = tanh32(src[i])


@numba.njit(cache=True)
def lstm_backward_step(g_out, t, dh, dc, acts, tc, c_prev, g_pre, one):
    """g_pre[:, t] <- d(loss)/d(pre-activations) of step t; dc <- the gradient reaching c_prev.

    dh holds the gradient from later steps; g_out (B, T, H) the outputs' own gradient; g_pre
    (B, T, 4H) is written one step at a time (batch-major, like the inputs it is the gradient of).
    """
    batch, hidden = dh.shape
    for b in range(batch):
        a, g_a, d_c, th, d_h, g_o, c_p = acts[b], g_pre[b, t], dc[b], tc[b], dh[b], g_out[b, t], c_prev[b]
        for j in range(hidden):          # d_c <- the whole gradient of this step's c
            d_c[j] = d_c[j] + (d_h[j] + g_o[j]) * a[3 * hidden + j] * (one - th[j] * th[j])
        for j in range(hidden):          # input gate
            g_a[j] = d_c[j] * a[2 * hidden + j] * a[j] * (one - a[j])
        for j in range(hidden):          # forget gate
            g_a[hidden + j] = d_c[j] * c_p[j] * a[hidden + j] * (one - a[hidden + j])
        for j in range(hidden):          # cell gate
            g_a[2 * hidden + j] = d_c[j] * a[j] * (one - a[2 * hidden + j] * a[2 * hidden + j])
        for j in range(hidden):          # output gate
            g_a[3 * hidden + j] = (d_h[j] + g_o[j]) * th[j] * a[3 * hidden + j] * (one - a[3 * hidden + j])
        for j in range(hidden):
            d_c[j] = d_c[j] * a[hidden + j]


@numba.njit(cache=True)
def gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh_t, one):
    """g_gi[:, t] (g_gi (B, T, 3H)), g_gh_t (B, 3H) <- gradients of step t's input and hidden projections;
    dh <- the direct part (through z) of the gradient reaching h_prev (the caller adds g_gh_t @ w.T);
    g_out whole.

    Each product is formed again for each array it goes to rather than read back from the one
    already written: a loop reading g_gi at one offset while writing it at another stayed scalar
    (20-29 against 10-14 us a step at batch 50, hidden 128; 75-103 against 51-58 us over a whole
    sequence, where the strided rows leave cache)."""
    batch, hidden = dh.shape
    for b in range(batch):
        a, gi, gh, d_h, g_o, hp, ghn = gates[b], g_gi[b, t], g_gh_t[b], dh[b], g_out[b, t], h_prev[b], gh_n[b]
        r, z, n = a[:hidden], a[hidden:2 * hidden], a[2 * hidden:]
        gi_r, gi_z, gi_n = gi[:hidden], gi[hidden:2 * hidden], gi[2 * hidden:]
        gh_r, gh_z, gh_n_part = gh[:hidden], gh[hidden:2 * hidden], gh[2 * hidden:]
        for j in range(hidden):          # d_h <- the whole gradient of this step's output
            d_h[j] = d_h[j] + g_o[j]
        for j in range(hidden):          # n's pre-activation (its input part)
            gi_n[j] = d_h[j] * (one - z[j]) * (one - n[j] * n[j])
        for j in range(hidden):          # n's hidden part, scaled by r
            gh_n_part[j] = d_h[j] * (one - z[j]) * (one - n[j] * n[j]) * r[j]
        for j in range(hidden):          # update gate
            gi_z[j] = d_h[j] * (hp[j] - n[j]) * z[j] * (one - z[j])
        for j in range(hidden):
            gh_z[j] = d_h[j] * (hp[j] - n[j]) * z[j] * (one - z[j])
        for j in range(hidden):          # reset gate
            gi_r[j] = d_h[j] * (one - z[j]) * (one - n[j] * n[j]) * ghn[j] * r[j] * (one - r[j])
        for j in range(hidden):
            gh_r[j] = d_h[j] * (one - z[j]) * (one - n[j] * n[j]) * ghn[j] * r[j] * (one - r[j])
        for j in range(hidden):
            d_h[j] = d_h[j] * z[j]


# ---------------------------------------------------------------- forward steps
# After the step's hidden product: the gates' pre-activations are formed here, the caller takes
# NumPy's vectorised tanh of them in place, and the next kernel finishes the step. Sigmoids are
# taken as 0.5 tanh(0.5 x) + 0.5, so one tanh call covers every gate. `half` comes in typed like
# the arrays (0.5 as a Python float would turn float32 math into float64).

@numba.njit(cache=True)
def lstm_pre_activations(a, gi, t, b, half):
    """a (B, 4H) holds h w; a <- its gates' tanh arguments: half (a + gi_t + b) for i, f, o, the sum for g."""
    batch, width = a.shape
    hidden = width // 4
    for r in range(batch):
        row, x = a[r], gi[r, t]
        for j in range(2 * hidden):
            row[j] = half * (row[j] + x[j] + b[j])
        for j in range(2 * hidden, 3 * hidden):
            row[j] = row[j] + x[j] + b[j]
        for j in range(3 * hidden, width):
            row[j] = half * (row[j] + x[j] + b[j])


@numba.njit(cache=True)
def lstm_cell_update(a, c_prev, c, half):
    """a holds tanh of the arguments: i, f, o <- half t + half (the sigmoids); c <- f c_prev + i g."""
    batch, width = a.shape
    hidden = width // 4
    for r in range(batch):
        row, cp, cn = a[r], c_prev[r], c[r]
        for j in range(2 * hidden):
            row[j] = half * row[j] + half
        for j in range(3 * hidden, width):
            row[j] = half * row[j] + half
        for j in range(hidden):
            cn[j] = row[hidden + j] * cp[j] + row[j] * row[2 * hidden + j]


@numba.njit(cache=True)
def gru_pre_activations(rz, gh, gi, t, b, gh_n, half):
    """gh (B, 3H) holds h w; rz (B, 2H) <- half (gi_t + gh + b) for r, z; gh_n <- the n part of gh + b."""
    batch, hidden = gh_n.shape
    for r in range(batch):
        arg, x, g, n_part = rz[r], gi[r, t], gh[r], gh_n[r]
        for j in range(2 * hidden):
            arg[j] = half * (x[j] + g[j] + b[j])
        for j in range(hidden):
            n_part[j] = g[2 * hidden + j] + b[2 * hidden + j]


@numba.njit(cache=True)
def gru_candidate(a, rz, gi, t, gh_n, n_arg, half):
    """rz holds tanh of r's and z's arguments: a[:, :2H] <- half rz + half (the sigmoids); n_arg (B, H)
    <- gi_n + r gh_n (the candidate's tanh argument)."""
    batch, hidden = gh_n.shape
    for r in range(batch):
        row, t_rz, x, n_part, arg = a[r], rz[r], gi[r, t], gh_n[r], n_arg[r]
        for j in range(2 * hidden):
            row[j] = half * t_rz[j] + half
        for j in range(hidden):
            arg[j] = x[2 * hidden + j] + row[j] * n_part[j]


@numba.njit(cache=True)
def gru_state(a, n, h_prev, h):
    """a[:, 2H:] <- the activated candidate n (B, H); h <- n + z (h_prev - n)."""
    batch, hidden = n.shape
    for r in range(batch):
        row, n_r, hp, hn = a[r], n[r], h_prev[r], h[r]
        for j in range(hidden):
            row[2 * hidden + j] = n_r[j]
        for j in range(hidden):
            hn[j] = n_r[j] + row[hidden + j] * (hp[j] - n_r[j])


# ---------------------------------------------------------------- float32 forward steps, one pass
# A GRU step at batch 128, hidden 256 took 42-47 us so against 89-93 us for the three kernels and two
# NumPy tanh calls above (bench/results/microbench-session8.md). Each loop writes one array, as the
# backward kernels do; what a later loop needs from an earlier one is formed again where that is
# cheaper than reading it back. The GRU steps that keep nothing are the exception: there r and z go
# to a scratch row and are read back (see _gru_row), while in gru_step32_kept, whose row is also its
# output, reading them back ran 1.7x slower than forming them again.

@numba.njit(inline="always", **FAST)
def _gru_row(x, g, b, hp, hn, gates, hidden):
    """One row of a GRU step from its projected input x (3H), hidden product g (3H), bias b (3H) and
    previous state hp: gates[:2H] <- the sigmoids r, z (scratch; may be x itself), hn <- the new
    state. Two loops, the sigmoids first: one loop forming all three activations per unit ran
    56 against 46 us at batch 128, hidden 256 (the same values)."""
    for j in range(2 * hidden):
        gates[j] = sigmoid32(x[j] + g[j] + b[j])
    for j in range(hidden):
        n = tanh32(x[2 * hidden + j] + gates[j] * (g[2 * hidden + j] + b[2 * hidden + j]))
        hn[j] = n + gates[hidden + j] * (hp[j] - n)


@numba.njit(cache=True, **FAST)
def gru_step32(gh, gi, t, b, h_prev, h, gates):
    """h <- step t of a GRU from gh = h_prev w (B, 3H), gi (B, T, 3H), the bias b (3H,): nothing kept
    (gates: a (2H,) or longer scratch row)."""
    batch, hidden = h.shape
    for r in range(batch):
        _gru_row(gi[r, t], gh[r], b, h_prev[r], h[r], gates, hidden)


@numba.njit(cache=True, **FAST)
def gru_step32_projected(gh, x, t, w_ih, b_ih, b, h_prev, h, row):
    """gru_step32 with the input projection formed here, row by row: gi_t = x_t w_ih + b_ih with x
    (B, T, n_in), w_ih (n_in, 3H), into row (3H,), which stays in cache (and then holds the
    sigmoids). For a few input features this replaces a (B, T, 3H) array written by one product and
    read back by every step."""
    batch, hidden = h.shape
    for r in range(batch):
        inputs = x[r, t]
        first, weights = inputs[0], w_ih[0]     # the bias and the first feature in one pass (69 -> 65 us a
        for j in range(3 * hidden):               # step at batch 128, hidden 256, two features; same values)
            row[j] = b_ih[j] + first * weights[j]
        for k in range(1, inputs.shape[0]):
            feature, weights = inputs[k], w_ih[k]
            for j in range(3 * hidden):
                row[j] = row[j] + feature * weights[j]
        _gru_row(row, gh[r], b, h_prev[r], h[r], row, hidden)


@numba.njit(cache=True, **FAST)
def gru_step32_kept(a, gh, gi, t, b, gh_n, h_prev, h):
    """gru_step32, keeping what backward reads: a (B, 3H) <- the activated r, z, n; gh_n <- the n part of gh + b."""
    batch, hidden = h.shape
    for r in range(batch):
        row, g, x, hp, hn, n_part = a[r], gh[r], gi[r, t], h_prev[r], h[r], gh_n[r]
        for j in range(2 * hidden):
            row[j] = sigmoid32(x[j] + g[j] + b[j])
        for j in range(hidden):
            n_part[j] = g[2 * hidden + j] + b[2 * hidden + j]
        for j in range(hidden):
            row[2 * hidden + j] = tanh32(x[2 * hidden + j] + sigmoid32(x[j] + g[j] + b[j]) * n_part[j])
        for j in range(hidden):
            hn[j] = row[2 * hidden + j] + row[hidden + j] * (hp[j] - row[2 * hidden + j])


@numba.njit(cache=True, **FAST)
def lstm_step32(a, gi, t, b, scale, shift, c_prev, c, tc, h):
    """a (B, 4H) holds h_prev w: a <- the activated i, f, g, o; c <- f c_prev + i g; tc <- tanh(c); h <- o tc.

    Every gate in one loop, as scale tanh(scale v) + shift with scale (4H,) 0.5 and shift 0.5 for
    the sigmoid gates, 1 and 0 for the cell gate (exact: the products by 1 and the sum with 0 do not
    round). Three loops, one per kind of gate, ran 49 against 12 us at batch 50, hidden 128."""
    batch, width = a.shape
    hidden = width // 4
    for r in range(batch):
        row, x = a[r], gi[r, t]
        for j in range(width):
            row[j] = tanh32(scale[j] * (row[j] + x[j] + b[j])) * scale[j] + shift[j]
        cp, cn, th, hn = c_prev[r], c[r], tc[r], h[r]
        for j in range(hidden):
            cn[j] = row[hidden + j] * cp[j] + row[j] * row[2 * hidden + j]
        for j in range(hidden):
            th[j] = tanh32(cn[j])
        for j in range(hidden):
            hn[j] = row[3 * hidden + j] * th[j]
