"""Numba CPU kernels for one backward time step of an LSTM/GRU layer (see kernels/recurrent.py)."""
import numba


@numba.njit(cache=True)
def lstm_backward_step(g_out, dh, dc, acts, tc, c_prev, ga):
    """ga <- d(loss)/d(pre-activations) of one step; dc <- the gradient reaching c_prev.

    dh holds the gradient from later steps; g_out the output's own gradient at this step.
    """
    batch, hidden = dh.shape
    for b in range(batch):
        for j in range(hidden):
            i, f = acts[b, j], acts[b, hidden + j]
            g, o = acts[b, 2 * hidden + j], acts[b, 3 * hidden + j]
            t = tc[b, j]
            d_h = dh[b, j] + g_out[b, j]
            d_c = dc[b, j] + d_h * o * (1 - t * t)
            ga[b, j] = d_c * g * i * (1 - i)
            ga[b, hidden + j] = d_c * c_prev[b, j] * f * (1 - f)
            ga[b, 2 * hidden + j] = d_c * i * (1 - g * g)
            ga[b, 3 * hidden + j] = d_h * t * o * (1 - o)
            dc[b, j] = d_c * f


@numba.njit(cache=True)
def gru_backward_step(g_out, dh, gates, gh_n, h_prev, g_gi, g_gh):
    """g_gi, g_gh <- gradients of the step's input and hidden projections; dh <- the direct
    part (through z) of the gradient reaching h_prev (the caller adds g_gh @ w.T)."""
    batch, hidden = dh.shape
    for b in range(batch):
        for j in range(hidden):
            r, z, n = gates[b, j], gates[b, hidden + j], gates[b, 2 * hidden + j]
            d_h = dh[b, j] + g_out[b, j]
            da_n = d_h * (1 - z) * (1 - n * n)
            da_z = d_h * (h_prev[b, j] - n) * z * (1 - z)
            da_r = da_n * gh_n[b, j] * r * (1 - r)
            g_gi[b, j] = da_r
            g_gi[b, hidden + j] = da_z
            g_gi[b, 2 * hidden + j] = da_n
            g_gh[b, j] = da_r
            g_gh[b, hidden + j] = da_z
            g_gh[b, 2 * hidden + j] = da_n * r
            dh[b, j] = d_h * z
