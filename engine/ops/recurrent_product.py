"""The hidden-to-hidden product inside the whole-sequence recurrent ops: one dense weight, or two
factors per gate (a low-rank hidden transform), each with its step, its step's backward and its
weight gradients side by side.

Dense: gh = h w, w (H, kH). Factored: u = h a with a (H, k r) holding every gate's first factor side
by side, then gate g's block gh_g = u_g c_g with c (k, r, H) the second factors stacked, so a rank-r
GRU or LSTM does k H r + k r H multiply-adds per example and step instead of k H H, inside one op.
"""
from .. import buffers
from .products import weight_gradient


class DenseHidden:
    """gh = h w with w (H, kH)."""

    def __init__(self, xp, weights, steps, batch, workspace, record=True):
        (self.w,) = weights
        self.xp = xp
        self.w_t = None

    def step(self, t, h, out):
        self.xp.matmul(h, self.w, out=out)

    def step_backward(self, t, g, out):
        """out = g w^T: the gradient reaching h through this step's product."""
        if self.w_t is None:
            self.w_t = self.xp.ascontiguousarray(self.w.T)   # BLAS ran the per-step product faster (76 vs 98 us)
        self.xp.matmul(g, self.w_t, out=out)

    def weight_grads(self, hs, g, needs, time_major=False):
        """(g_w,) from the states before each step hs (T, B, H) and the products' gradients g (B, T, kH), or
        (T, B, kH) when time_major."""
        if not needs[0]:
            return (None,)
        return (weight_gradient(hs, g) if time_major else _batch_major_product(hs, g),)

    def release(self):
        pass


class FactoredHidden:
    """gh_g = (h a)_g c_g with a (H, k r), c (k, r, H); keeps u = h a of every step for backward."""

    def __init__(self, xp, weights, steps, batch, workspace, record=True):
        self.a, self.c = weights
        self.xp = xp
        self.gates, self.rank, self.hidden = self.c.shape
        # without a graph one u serves every step (and stays in cache)
        self.us = workspace((steps if record else 1, batch, self.gates * self.rank))
        self.slot = (lambda t: t) if record else (lambda t: 0)
        self.dus = None

    def _by_gate(self, rows, width):
        """rows (B, k width) as k gate blocks (k, B, width): a view, for one batched product per step."""
        return rows.reshape(rows.shape[0], self.gates, width).transpose(1, 0, 2)

    def step(self, t, h, out):
        u = self.us[self.slot(t)]
        matmul = self.xp.matmul
        matmul(h, self.a, out=u)
        # every gate's block at once, written in place through the strided view: 122 against 130 us
        # for three products at batch 128, hidden 256, rank 32 (one thread, the same values)
        matmul(self._by_gate(u, self.rank), self.c, out=self._by_gate(out, self.hidden))

    def step_backward(self, t, g, out):
        xp = self.xp
        if self.dus is None:
            self.dus = buffers.take(self.us.shape, self.us.dtype, like=self.us)
            self.c_t = xp.ascontiguousarray(self.c.transpose(0, 2, 1))
            self.a_t = xp.ascontiguousarray(self.a.T)
        du = self.dus[t]
        xp.matmul(self._by_gate(g, self.hidden), self.c_t, out=self._by_gate(du, self.rank))
        xp.matmul(du, self.a_t, out=out)

    def weight_grads(self, hs, g, needs, time_major=False):
        """(g_a, g_c) from the states before each step hs (T, B, H) and the products' gradients g (B, T, kH), or
        (T, B, kH) when time_major."""
        steps, batch, hidden = hs.shape
        rows = steps * batch
        dus = self.dus if self.dus is not None else self.xp.zeros(self.us.shape, self.us.dtype)   # no steps
        width = self.gates * self.rank
        g_a = hs.reshape(rows, hidden).T @ dus.reshape(rows, width) if needs[0] else None
        g_c = None
        if needs[1]:
            us = self.us if time_major else self.xp.ascontiguousarray(self.us.transpose(1, 0, 2))   # g's order
            us = us.reshape(rows, width)
            g_flat = g.reshape(rows, g.shape[-1])
            g_c = self.xp.empty_like(self.c)
            self.xp.matmul(self._by_gate(us, self.rank).transpose(0, 2, 1), self._by_gate(g_flat, self.hidden),
                           out=g_c)
        return g_a, g_c

    def release(self):
        if self.dus is not None:
            buffers.give_back(self.dus)
            self.dus = None


def _batch_major_product(time_major, g):
    """sum over steps t and examples b of outer(time_major[t, b], g[b, t]): one GEMM over a batch-major
    copy of the (T, B, n) states (a pooled one), the gradient (B, T, m) as it is."""
    steps, batch, n = time_major.shape
    rows = buffers.take((batch, steps, n), time_major.dtype, like=time_major)
    rows[...] = time_major.transpose(1, 0, 2)
    product = weight_gradient(rows, g)
    buffers.give_back(rows)
    return product


def hidden_product(xp, weights, steps, batch, workspace, record=True):
    """The product for one dense weight (1 array) or a pair of factors (2 arrays); record=False: no
    backward will follow (step's workspace need not be kept for every step)."""
    return (DenseHidden if len(weights) == 1 else FactoredHidden)(xp, weights, steps, batch, workspace, record)
