"""Numba CPU kernels for one backward time step of an LSTM/GRU layer (see kernels/recurrent.py).

Each inner loop writes one array: with several outputs (which might alias the inputs, as far as
LLVM knows) the loop stayed scalar, 3x slower at hidden 128. `one` comes in typed like the
arrays, so float32 math is not promoted to float64 by an integer literal.
"""
import numba


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
def gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh, one):
    """g_gi[:, t], g_gh[:, t] <- gradients of step t's input and hidden projections (both (B, T, 3H));
    dh <- the direct part (through z) of the gradient reaching h_prev (the caller adds g_gh @ w.T);
    g_out whole.

    Each product is formed again for each array it goes to rather than read back from the one
    already written: a loop reading g_gi at one offset while writing it at another stayed scalar
    (20-29 against 10-14 us a step at batch 50, hidden 128; 75-103 against 51-58 us over a whole
    sequence, where the strided rows leave cache)."""
    batch, hidden = dh.shape
    for b in range(batch):
        a, gi, gh, d_h, g_o, hp, ghn = gates[b], g_gi[b, t], g_gh[b, t], dh[b], g_out[b, t], h_prev[b], gh_n[b]
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
