"""x @ u @ v (+ b) as one op: the two thin products of a low-rank layer (LowRankDense), one graph node."""
from ..function import Function
from ..tensor import as_tensor
from .broadcasting import column_sums
from .products import fold_matmul, linear_forward, weight_gradient


class LowRankLinear(Function):
    """(x @ u) @ v + b for x (..., n_in), u (n_in, r), v (r, n_out): the middle (..., r) is kept for
    backward only when a graph is recorded."""

    def forward(self, x, u, v, b=None):
        middle = fold_matmul(x, u)
        self.x, self.u, self.v = x, u, v
        self.middle = middle if self.recording else None
        return linear_forward(middle, v, b)

    def backward(self, gy):
        x, u, v, middle = self.x, self.u, self.v, self.middle
        needs = self.needs_input_grad
        gv = weight_gradient(middle, gy) if needs[2] else None
        gb = column_sums(gy.reshape(-1, gy.shape[-1])) if len(needs) > 3 and needs[3] else None
        gx = gu = None
        if needs[0] or needs[1]:
            g_middle = fold_matmul(gy, v.T)
            if needs[1]:
                gu = weight_gradient(x, g_middle)
            if needs[0]:
                gx = fold_matmul(g_middle, u.T)
        return (gx, gu, gv, gb) if len(needs) > 3 else (gx, gu, gv)


def low_rank_linear(x, u, v, b=None):
    """(x @ u) @ v + b with u (n_in, r) and v (r, n_out), as one op (x may carry leading batch axes):
    one graph node and one call instead of two linear ops."""
    x, u, v = as_tensor(x), as_tensor(u), as_tensor(v)
    if x.ndim < 1 or u.ndim != 2 or v.ndim != 2 or x.shape[-1] != u.shape[0] or u.shape[1] != v.shape[0]:
        raise ValueError(f"low_rank_linear: input shape {x.shape} and factor shapes {u.shape}, {v.shape} "
                         "do not chain (expected (..., n), (n, r), (r, m))")
    if b is None:
        return LowRankLinear()(x, u, v)
    b = as_tensor(b)
    if b.shape != (v.shape[1],):
        raise ValueError(f"low_rank_linear: bias shape {b.shape} must be ({v.shape[1]},)")
    return LowRankLinear()(x, u, v, b)
