"""One time step of an LSTM/GRU layer's gate math, forward and backward: NumPy reference (also CuPy), Numba, and one CuPy kernel a step."""
import numpy as np

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


def _gpu_kernels(array, impl):
    """The one-launch-a-step GPU kernels (recurrent_cupy) when `array` is a device array of a module
    that compiles them and impl does not ask for the reference path, else None."""
    if impl == "numpy" or not backend.is_gpu_array(array):
        return None
    from . import recurrent_cupy
    return recurrent_cupy.kernels_for(backend.xp_of(array))


def available_implementations():
    """'numpy', plus 'numba' when it imports and is enabled."""
    return IMPLEMENTATIONS if load_numba_module("recurrent_numba") is not None else ("numpy",)


def _step_setup(like, b, impl):
    """(xp, the Numba module or None, the GPU kernels or None, the hidden bias for either kind of
    kernel: b, or zeros for None) of a sequence whose arrays are like `like` (its last axis the gates'
    width)."""
    xp = backend.xp_of(like)
    kernels, gpu = _numba_kernels(like, impl), _gpu_kernels(like, impl)
    bias = b if b is not None or (kernels is None and gpu is None) else xp.zeros(like.shape[-1], like.dtype)
    return xp, kernels, gpu, bias


def lstm_forward_stepper(like, b, impl=None):
    """step(a, gi, t, c_prev, c, tc, h): lstm_forward_step for every step of one sequence, whose arrays
    are like `like` (dtype, device; its last axis 4H), with the kernel chosen once: choosing it on every
    call cost 12-18 us a step (bench/results/microbench-session8.md)."""
    xp, kernels, gpu, bias = _step_setup(like, b, impl)
    if gpu is not None:
        return lambda a, gi, t, c_prev, c, tc, h: gpu.lstm_forward(a, gi, t, bias, c_prev, c, tc, h)
    if kernels is None:
        return lambda a, gi, t, c_prev, c, tc, h: _lstm_step_numpy(xp, a, gi, t, b, c_prev, c, tc, h)
    if like.dtype == np.float32:
        step = kernels.lstm_step32
        width = like.shape[-1]
        scale = xp.full(width, 0.5, like.dtype)
        scale[width // 2:3 * width // 4] = 1                       # the cell gate: tanh itself
        shift = 1 - scale                                          # 0.5 for the sigmoids, 0 for tanh
        return lambda a, gi, t, c_prev, c, tc, h: step(a, gi, t, bias, scale, shift, c_prev, c, tc, h)
    return lambda a, gi, t, c_prev, c, tc, h: _lstm_step_numba64(xp, kernels, a, gi, t, bias, c_prev, c, tc, h)


def lstm_forward_step(a, gi, t, b, c_prev, c, tc, h, impl=None):
    """In place, step t of an LSTM layer after its hidden product: a (B, 4H) holds h_prev w on entry
    and the activated gates (i, f, g, o) on exit; c <- f c_prev + i g, tc <- tanh(c), h <- o tc.
    gi (B, T, 4H): the projected inputs; b (4H,) or None: the hidden bias. float32 with Numba: one
    pass with its own tanh (recurrent_numba.tanh32, within 4e-7 of tanh)."""
    lstm_forward_stepper(a, b, impl)(a, gi, t, c_prev, c, tc, h)


def _lstm_step_numba64(xp, kernels, a, gi, t, b, c_prev, c, tc, h):
    hidden = a.shape[1] // 4
    half = a.dtype.type(0.5)
    kernels.lstm_pre_activations(a, gi, t, b, half)
    xp.tanh(a, out=a)
    kernels.lstm_cell_update(a, c_prev, c, half)
    xp.tanh(c, out=tc)
    xp.multiply(a[:, 3 * hidden:], tc, out=h)


def _lstm_step_numpy(xp, a, gi, t, b, c_prev, c, tc, h):
    hidden = a.shape[1] // 4
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


def gru_forward_stepper(like, b, impl=None, keep=True, scratch=None):
    """step(a, gh, gi, t, gh_n, h_prev, h): gru_forward_step for every step of one sequence, whose
    arrays are like `like` (its last axis 3H), with the kernel chosen once (as lstm_forward_stepper)."""
    xp, kernels, gpu, bias = _step_setup(like, b, impl)
    if gpu is not None:
        return lambda a, gh, gi, t, gh_n, h_prev, h: gpu.gru_forward(a, gh, gi, t, bias, gh_n, h_prev, h)
    if kernels is None:
        return lambda a, gh, gi, t, gh_n, h_prev, h: _gru_step_numpy(xp, a, gh, gi, t, b, gh_n, h_prev, h)
    if like.dtype == np.float32:
        if keep:
            kept = kernels.gru_step32_kept
            return lambda a, gh, gi, t, gh_n, h_prev, h: kept(a, gh, gi, t, bias, gh_n, h_prev, h)
        alone, row = kernels.gru_step32, xp.empty(like.shape[-1], like.dtype)
        return lambda a, gh, gi, t, gh_n, h_prev, h: alone(gh, gi, t, bias, h_prev, h, row)
    return lambda a, gh, gi, t, gh_n, h_prev, h: _gru_step_numba64(xp, kernels, a, gh, gi, t, bias, gh_n,
                                                                  h_prev, h, scratch)


def gru_projecting_stepper(x, w_ih, b_ih, b, impl=None):
    """step(gh, t, h_prev, h): a GRU step without a graph that forms its own input projection,
    x[:, t] w_ih + b_ih (x (B, T, n_in), w_ih (n_in, 3H), b_ih (3H,) or None; b: the hidden bias or
    None); None where no kernel does that (float32 with Numba only): the caller then projects the
    whole sequence first."""
    kernels = _numba_kernels(x, impl)
    if kernels is None or w_ih.shape[0] == 0 or \
            not all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, w_ih)):
        return None      # (the kernel reads the first feature unconditionally)
    xp = backend.xp_of(x)
    width = w_ih.shape[1]
    bias = xp.zeros(width, x.dtype) if b is None else b
    bias_ih = xp.zeros(width, x.dtype) if b_ih is None else b_ih
    row = xp.empty(width, x.dtype)
    step = kernels.gru_step32_projected
    return lambda gh, t, h_prev, h: step(gh, x, t, w_ih, bias_ih, bias, h_prev, h, row)


def gru_forward_step(a, gh, gi, t, b, gh_n, h_prev, h, impl=None, scratch=None, keep=True):
    """In place, step t of a GRU layer after its hidden product gh = h_prev w (B, 3H): a (B, 3H) <-
    the activated gates (r, z, n), gh_n <- the n part of gh + b, h <- n + z (h_prev - n).
    gi (B, T, 3H): the projected inputs; b (3H,) or None: the hidden bias (gh may be overwritten).
    keep=False: only h is wanted (no backward will read a and gh_n), which the float32 Numba step
    (one pass with its own tanh, as the LSTM's) then leaves unwritten. scratch: a C-contiguous
    array of a's shape and dtype for the float64 Numba path (else one is taken from the buffer
    pool): the tanh arguments go there, contiguous, because NumPy's tanh ran about twice as fast on
    a contiguous (B, 2H) array as on the view a[:, :2H] (25 against 46 us at batch 128, hidden 256)."""
    gru_forward_stepper(a, b, impl, keep, scratch)(a, gh, gi, t, gh_n, h_prev, h)


def _gru_step_numba64(xp, kernels, a, gh, gi, t, b, gh_n, h_prev, h, scratch):
    hidden = a.shape[1] // 3
    half = a.dtype.type(0.5)
    own = scratch is None
    if own:
        scratch = buffers.take(a.shape, a.dtype, like=a)
    batch, flat = a.shape[0], scratch.reshape(-1)
    rz = flat[:batch * 2 * hidden].reshape(batch, 2 * hidden)
    n_arg = flat[batch * 2 * hidden:batch * 3 * hidden].reshape(batch, hidden)
    kernels.gru_pre_activations(rz, gh, gi, t, b, gh_n, half)
    xp.tanh(rz, out=rz)
    kernels.gru_candidate(a, rz, gi, t, gh_n, n_arg, half)
    xp.tanh(n_arg, out=n_arg)
    kernels.gru_state(a, n_arg, h_prev, h)
    if own:
        buffers.give_back(scratch)


def _gru_step_numpy(xp, a, gh, gi, t, b, gh_n, h_prev, h):
    hidden = a.shape[1] // 3
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
    gpu = _gpu_kernels(dh, impl)
    if gpu is not None:
        gpu.lstm_backward(g_out, t, dh, dc, acts, tc, c_prev, g_pre)
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
    """In place: g_gi[:, t], g_gh[:, t] (both (B, T, 3H), of any layout: the sequence op passes g_gh as a
    view of a time-major buffer, so that each step's rows lie together) <- gradients of step t's input and
    hidden projections, dh (B, H) <- the part of h_prev's gradient through z (the caller adds g_gh[:, t]
    @ w.T). g_out (B, T, H): the outputs' gradient; gates: the step's activated (r, z, n); gh_n: the
    hidden projection's n part."""
    kernels = _numba_kernels(dh, impl)
    if kernels is not None:
        kernels.gru_backward_step(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh[:, t], dh.dtype.type(1))
        return
    gpu = _gpu_kernels(dh, impl)
    if gpu is not None:
        gpu.gru_backward(g_out, t, dh, gates, gh_n, h_prev, g_gi, g_gh)
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
