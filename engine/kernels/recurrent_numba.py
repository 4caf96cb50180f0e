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
    g_out whole."""
    batch, hidden = dh.shape
    for b in range(batch):
        a, gi, gh, d_h, g_o, hp, ghn = gates[b], g_gi[b, t], g_gh[b, t], dh[b], g_out[b, t], h_prev[b], gh_n[b]
        for j in range(hidden):          # d_h <- the whole gradient of this step's output
            d_h[j] = d_h[j] + g_o[j]
        for j in range(hidden):          # n's pre-activation
            gi[2 * hidden + j] = d_h[j] * (one - a[hidden + j]) * (one - a[2 * hidden + j] * a[2 * hidden + j])
        for j in range(hidden):          # update gate
            gi[hidden + j] = d_h[j] * (hp[j] - a[2 * hidden + j]) * a[hidden + j] * (one - a[hidden + j])
        for j in range(hidden):          # reset gate
            gi[j] = gi[2 * hidden + j] * ghn[j] * a[j] * (one - a[j])
        for j in range(2 * hidden):
            gh[j] = gi[j]
        for j in range(hidden):
            gh[2 * hidden + j] = gi[2 * hidden + j] * a[j]
        for j in range(hidden):
            d_h[j] = d_h[j] * a[hidden + j]


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
def gru_pre_activations(a, gh, gi, t, b, gh_n, half):
    """gh (B, 3H) holds h w; a[:, :2H] <- half (gi_t + gh + b) for r, z; gh_n <- the n part of gh + b."""
    batch, width = a.shape
    hidden = width // 3
    for r in range(batch):
        row, x, g, n_part = a[r], gi[r, t], gh[r], gh_n[r]
        for j in range(2 * hidden):
            row[j] = half * (x[j] + g[j] + b[j])
        for j in range(hidden):
            n_part[j] = g[2 * hidden + j] + b[2 * hidden + j]


@numba.njit(cache=True)
def gru_candidate(a, gi, t, gh_n, half):
    """a[:, :2H] holds tanh of the arguments: r, z <- half t + half; a[:, 2H:] <- gi_n + r gh_n
    (the candidate's tanh argument)."""
    batch, width = a.shape
    hidden = width // 3
    for r in range(batch):
        row, x, n_part = a[r], gi[r, t], gh_n[r]
        for j in range(2 * hidden):
            row[j] = half * row[j] + half
        for j in range(hidden):
            row[2 * hidden + j] = x[2 * hidden + j] + row[j] * n_part[j]


@numba.njit(cache=True)
def gru_state(a, h_prev, h):
    """h <- n + z (h_prev - n) from the activated gates a = (r, z, n)."""
    batch, width = a.shape
    hidden = width // 3
    for r in range(batch):
        row, hp, hn = a[r], h_prev[r], h[r]
        for j in range(hidden):
            n = row[2 * hidden + j]
            hn[j] = n + row[hidden + j] * (hp[j] - n)
