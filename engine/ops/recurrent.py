"""Fused recurrent gate math: one op per GRU/LSTM time step, with hand-written backward."""
from .. import backend
from ..function import Function
from ..kernels.elementwise import sigmoid_into


def _sigmoid(xp, a):
    return sigmoid_into(xp, a, xp.empty_like(a))


class GRUGates(Function):
    """h' from the input projection gi (B, 3H), the state h (B, H) and the hidden transforms.

    The hidden transforms come either as one (B, 3H) array (all gates from one matmul)
    or as three (B, H) arrays (reset, update, state), so replaced transforms work too.
    r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r * gh_n), h' = n + z (h - n).
    """

    def forward(self, gi, h, *gh):
        xp = backend.xp_of(gi)
        hidden = h.shape[1]
        if len(gh) == 1:
            gh_r, gh_z, gh_n = gh[0][:, :hidden], gh[0][:, hidden:2 * hidden], gh[0][:, 2 * hidden:]
        else:
            gh_r, gh_z, gh_n = gh
        r = _sigmoid(xp, gi[:, :hidden] + gh_r)
        z = _sigmoid(xp, gi[:, hidden:2 * hidden] + gh_z)
        n = xp.tanh(gi[:, 2 * hidden:] + r * gh_n)
        self.r, self.z, self.n, self.gh_n, self.h = r, z, n, gh_n, h
        return n + z * (h - n)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        r, z, n, gh_n, h = self.r, self.z, self.n, self.gh_n, self.h
        hidden = h.shape[1]
        da_n = gy * (1 - z) * (1 - n * n)
        da_z = gy * (h - n) * z * (1 - z)
        da_r = da_n * gh_n * r * (1 - r)
        gi = xp.empty((gy.shape[0], 3 * hidden), dtype=gy.dtype)
        gi[:, :hidden] = da_r
        gi[:, hidden:2 * hidden] = da_z
        gi[:, 2 * hidden:] = da_n
        gh_state = da_n * r
        dh = gy * z
        if len(self.needs_input_grad) == 3:
            gh = gi.copy()
            gh[:, 2 * hidden:] = gh_state
            return gi, dh, gh
        return gi, dh, da_r, da_z, gh_state


class LSTMGates(Function):
    """(h', c') from gi (B, 4H), c (B, H) and the hidden transforms (one (B, 4H) or four (B, H)).

    i, f, g, o = s, s, tanh, s of gi + gh (gate order input, forget, cell, output);
    c' = f c + i g; h' = o tanh(c').
    """

    def forward(self, gi, c, *gh):
        xp = backend.xp_of(gi)
        hidden = c.shape[1]
        a = gi + gh[0] if len(gh) == 1 else gi + xp.concatenate(gh, axis=1)
        i = _sigmoid(xp, a[:, :hidden])
        f = _sigmoid(xp, a[:, hidden:2 * hidden])
        g = xp.tanh(a[:, 2 * hidden:3 * hidden])
        o = _sigmoid(xp, a[:, 3 * hidden:])
        c_new = f * c + i * g
        tc = xp.tanh(c_new)
        self.i, self.f, self.g, self.o, self.c, self.tc = i, f, g, o, c, tc
        return o * tc, c_new

    def backward(self, gh_out, gc_out):
        xp = backend.xp_of(gh_out)
        i, f, g, o, c, tc = self.i, self.f, self.g, self.o, self.c, self.tc
        hidden = c.shape[1]
        dc = gc_out + gh_out * o * (1 - tc * tc)
        ga = xp.empty((gh_out.shape[0], 4 * hidden), dtype=gh_out.dtype)
        ga[:, :hidden] = dc * g * i * (1 - i)
        ga[:, hidden:2 * hidden] = dc * c * f * (1 - f)
        ga[:, 2 * hidden:3 * hidden] = dc * i * (1 - g * g)
        ga[:, 3 * hidden:] = gh_out * tc * o * (1 - o)
        dc_prev = dc * f
        if len(self.needs_input_grad) == 3:
            return ga, dc_prev, ga
        return (ga, dc_prev) + tuple(ga[:, k * hidden:(k + 1) * hidden] for k in range(4))


class Unstack(Function):
    """Split x along `axis` into its slices (the axis removed): one op for a whole sequence."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.in_shape = x.shape
        xp = backend.xp_of(x)
        return tuple(xp.moveaxis(x, self.axis, 0))

    def backward(self, *gys):
        return backend.xp_of(*gys).stack(gys, axis=self.axis)


def gru_gates(gi, h, *gh):
    """Fused GRU step: gi (B, 3H), h (B, H), gh one (B, 3H) or three (B, H) tensors -> h' (B, H)."""
    if len(gh) not in (1, 3):
        raise ValueError(f"gru_gates: expected 1 or 3 hidden transforms, got {len(gh)}")
    return GRUGates()(gi, h, *gh)


def lstm_gates(gi, c, *gh):
    """Fused LSTM step: gi (B, 4H), c (B, H), gh one (B, 4H) or four (B, H) tensors -> (h', c')."""
    if len(gh) not in (1, 4):
        raise ValueError(f"lstm_gates: expected 1 or 4 hidden transforms, got {len(gh)}")
    h, c_new = LSTMGates()(gi, c, *gh)
    return h, c_new


def unstack(x, axis=0):
    """The slices of x along `axis` as a list of tensors (like list(x) along that axis)."""
    out = Unstack(axis)(x)
    return out if isinstance(out, list) else [out]
