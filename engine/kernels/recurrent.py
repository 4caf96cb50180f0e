"""One backward time step of an LSTM/GRU layer's gate math: NumPy reference (also CuPy) and Numba."""
from .. import backend
from . import load_numba_module

IMPLEMENTATIONS = ("numpy", "numba")


def _numba_kernels(array, impl):
    """The Numba module when it should run for this array, else None (NumPy/CuPy path)."""
    if impl == "numpy" or backend.is_gpu_array(array):
        return None
    kernels = load_numba_module("recurrent_numba")
    if impl == "numba" and kernels is None:
        raise RuntimeError("recurrent kernels: impl='numba' requested but numba is not importable "
                           "(or COMPACTNET_DISABLE_NUMBA disables it)")
    return kernels


def available_implementations():
    """'numpy', plus 'numba' when it imports and is enabled."""
    return IMPLEMENTATIONS if load_numba_module("recurrent_numba") is not None else ("numpy",)


def lstm_backward_step(g_out, t, dh, dc, acts, tc, c_prev, ga, impl=None):
    """In place: ga (B, 4H) <- gradient of step t's pre-activations, dc (B, H) <- gradient reaching
    c_prev. dh: gradient from later steps, g_out (B, T, H): the outputs' gradient, acts: the
    step's activated gates (i, f, g, o), tc = tanh(c), c_prev: the cell state before the step."""
    kernels = _numba_kernels(dh, impl)
    if kernels is not None:
        kernels.lstm_backward_step(g_out, t, dh, dc, acts, tc, c_prev, ga, dh.dtype.type(1))
        return
    hidden = dh.shape[1]
    i, f, g, o = (acts[:, k * hidden:(k + 1) * hidden] for k in range(4))
    d_h = dh + g_out[:, t]
    dc += d_h * o * (1 - tc * tc)
    ga[:, :hidden] = dc * g * i * (1 - i)
    ga[:, hidden:2 * hidden] = dc * c_prev * f * (1 - f)
    ga[:, 2 * hidden:3 * hidden] = dc * i * (1 - g * g)
    ga[:, 3 * hidden:] = d_h * tc * o * (1 - o)
    dc *= f


def gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh, impl=None):
    """In place: g_gi, g_gh (B, 3H) <- gradients of step t's input and hidden projections,
    dh (B, H) <- the part of h_prev's gradient through z (the caller adds g_gh @ w.T).
    g_out (B, T, H): the outputs' gradient; gates: the step's activated (r, z, n); gh_n: the
    hidden projection's n part."""
    kernels = _numba_kernels(dh, impl)
    if kernels is not None:
        kernels.gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh, dh.dtype.type(1))
        return
    hidden = dh.shape[1]
    r, z, n = (gates[:, k * hidden:(k + 1) * hidden] for k in range(3))
    d_h = dh + g_out[:, t]
    da_n = d_h * (1 - z) * (1 - n * n)
    g_gi[:, 2 * hidden:] = da_n
    g_gi[:, hidden:2 * hidden] = d_h * (h_prev - n) * z * (1 - z)
    g_gi[:, :hidden] = da_n * gh_n * r * (1 - r)
    g_gh[:, :2 * hidden] = g_gi[:, :2 * hidden]
    g_gh[:, 2 * hidden:] = da_n * r
    dh[...] = d_h * z
