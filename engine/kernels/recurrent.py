"""One time step of an LSTM/GRU layer's gate math, forward and backward: NumPy reference (also CuPy) and Numba."""
from .. import backend, buffers
from . import load_numba_module
from .elementwise import sigmoid_into

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


def lstm_forward_step(a, gi, t, b, c_prev, c, tc, h, impl=None):
    """In place, step t of an LSTM layer after its hidden product: a (B, 4H) holds h_prev w on entry
    and the activated gates (i, f, g, o) on exit; c <- f c_prev + i g, tc <- tanh(c), h <- o tc.
    gi (B, T, 4H): the projected inputs; b (4H,) or None: the hidden bias."""
    xp = backend.xp_of(a)
    hidden = a.shape[1] // 4
    kernels = _numba_kernels(a, impl)
    if kernels is not None:
        half = a.dtype.type(0.5)
        kernels.lstm_pre_activations(a, gi, t, xp.zeros(a.shape[1], a.dtype) if b is None else b, half)
        xp.tanh(a, out=a)
        kernels.lstm_cell_update(a, c_prev, c, half)
        xp.tanh(c, out=tc)
        xp.multiply(a[:, 3 * hidden:], tc, out=h)
        return
    a += gi[:, t]
    if b is not None:
        a += b
    i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
    sigmoid_into(xp, a[:, :2 * hidden], a[:, :2 * hidden])      # i and f side by side
    xp.tanh(g, out=g)
    sigmoid_into(xp, o, o)
    xp.multiply(f, c_prev, out=c)
    c += i * g
    xp.tanh(c, out=tc)
    xp.multiply(o, tc, out=h)


def gru_forward_step(a, gh, gi, t, b, gh_n, h_prev, h, impl=None, scratch=None):
    """In place, step t of a GRU layer after its hidden product gh = h_prev w (B, 3H): a (B, 3H) <-
    the activated gates (r, z, n), gh_n <- the n part of gh + b, h <- n + z (h_prev - n).
    gi (B, T, 3H): the projected inputs; b (3H,) or None: the hidden bias (gh may be overwritten).
    scratch: a C-contiguous array of a's shape and dtype for the Numba path (else one is taken
    from the buffer pool): the tanh arguments go there, contiguous, because NumPy's tanh ran about
    twice as fast on a contiguous (B, 2H) array as on the view a[:, :2H] (25 against 46 us at
    batch 128, hidden 256)."""
    xp = backend.xp_of(a)
    hidden = a.shape[1] // 3
    kernels = _numba_kernels(a, impl)
    if kernels is not None:
        half = a.dtype.type(0.5)
        own = scratch is None
        if own:
            scratch = buffers.take(a.shape, a.dtype, like=a)
        batch, flat = a.shape[0], scratch.reshape(-1)
        rz = flat[:batch * 2 * hidden].reshape(batch, 2 * hidden)
        n_arg = flat[batch * 2 * hidden:batch * 3 * hidden].reshape(batch, hidden)
        kernels.gru_pre_activations(rz, gh, gi, t, xp.zeros(a.shape[1], a.dtype) if b is None else b,
                                    gh_n, half)
        xp.tanh(rz, out=rz)
        kernels.gru_candidate(a, rz, gi, t, gh_n, n_arg, half)
        xp.tanh(n_arg, out=n_arg)
        kernels.gru_state(a, n_arg, h_prev, h)
        if own:
            buffers.give_back(scratch)
        return
    if b is not None:
        gh += b
    xp.add(gi[:, t, :2 * hidden], gh[:, :2 * hidden], out=a[:, :2 * hidden])
    sigmoid_into(xp, a[:, :2 * hidden], a[:, :2 * hidden])
    r, z, n = (a[:, k * hidden:(k + 1) * hidden] for k in range(3))
    gh_n[...] = gh[:, 2 * hidden:]
    xp.multiply(r, gh_n, out=n)
    n += gi[:, t, 2 * hidden:]
    xp.tanh(n, out=n)
    xp.subtract(h_prev, n, out=h)
    h *= z
    h += n


def lstm_backward_step(g_out, t, dh, dc, acts, tc, c_prev, g_pre, impl=None):
    """In place: g_pre[:, t] (g_pre (B, T, 4H)) <- gradient of step t's pre-activations, dc (B, H) <-
    gradient reaching c_prev. dh: gradient from later steps, g_out (B, T, H): the outputs' gradient,
    acts: the step's activated gates (i, f, g, o), tc = tanh(c), c_prev: the cell state before the step."""
    kernels = _numba_kernels(dh, impl)
    if kernels is not None:
        kernels.lstm_backward_step(g_out, t, dh, dc, acts, tc, c_prev, g_pre, dh.dtype.type(1))
        return
    hidden = dh.shape[1]
    ga = g_pre[:, t]
    i, f, g, o = (acts[:, k * hidden:(k + 1) * hidden] for k in range(4))
    d_h = dh + g_out[:, t]
    dc += d_h * o * (1 - tc * tc)
    ga[:, :hidden] = dc * g * i * (1 - i)
    ga[:, hidden:2 * hidden] = dc * c_prev * f * (1 - f)
    ga[:, 2 * hidden:3 * hidden] = dc * i * (1 - g * g)
    ga[:, 3 * hidden:] = d_h * tc * o * (1 - o)
    dc *= f


def gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh, impl=None):
    """In place: g_gi[:, t], g_gh[:, t] (both (B, T, 3H)) <- gradients of step t's input and hidden
    projections, dh (B, H) <- the part of h_prev's gradient through z (the caller adds g_gh @ w.T).
    g_out (B, T, H): the outputs' gradient; gates: the step's activated (r, z, n); gh_n: the
    hidden projection's n part."""
    kernels = _numba_kernels(dh, impl)
    if kernels is not None:
        kernels.gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh, dh.dtype.type(1))
        return
    hidden = dh.shape[1]
    gi_t, gh_t = g_gi[:, t], g_gh[:, t]
    r, z, n = (gates[:, k * hidden:(k + 1) * hidden] for k in range(3))
    d_h = dh + g_out[:, t]
    da_n = d_h * (1 - z) * (1 - n * n)
    gi_t[:, 2 * hidden:] = da_n
    gi_t[:, hidden:2 * hidden] = d_h * (h_prev - n) * z * (1 - z)
    gi_t[:, :hidden] = da_n * gh_n * r * (1 - r)
    gh_t[:, :2 * hidden] = gi_t[:, :2 * hidden]
    gh_t[:, 2 * hidden:] = da_n * r
    dh[...] = d_h * z
