"""Differentiable tensor products: mode-n product and the Tucker rebuild (like tensorly's)."""
from ..function import Function
from ..kernels import tucker as kernels
from ..tensor import as_tensor


class ModeProduct(Function):
    """y = x x_mode M for M (m, k): axis `mode` of x (size k) becomes size m."""

    def __init__(self, mode):
        self.mode = mode

    def forward(self, x, matrix):
        self.x, self.matrix = x, matrix
        return kernels.mode_product(x, matrix, self.mode)

    def backward(self, gy):
        needs = self.needs_input_grad
        gx = kernels.mode_product(gy, self.matrix.T, self.mode) if needs[0] else None
        gm = None
        if needs[1]:
            gm = kernels.unfold(gy, self.mode) @ kernels.unfold(self.x, self.mode).T
        return gx, gm


class TuckerToTensor(Function):
    """W = core x_1 M_1 x_2 ... x_D M_D; inputs are (core, M_1, ..., M_D)."""

    def forward(self, core, *factors):
        self.core, self.factors = core, factors
        return kernels.tucker_rebuild(core, list(factors))

    def backward(self, gy):
        g_core, g_factors = kernels.tucker_rebuild_backward(
            gy, self.core, list(self.factors), needs=self.needs_input_grad)
        return (g_core, *g_factors)


def _check_float(name, what, t):
    if t.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must be floating point, got dtype {t.dtype}")


def mode_product(x, matrix, mode):
    """x x_mode matrix with matrix of shape (m, x.shape[mode]); equals tensorly.tenalg.mode_dot."""
    x, matrix = as_tensor(x), as_tensor(matrix)
    _check_float("mode_product", "tensor", x)
    _check_float("mode_product", "matrix", matrix)
    if isinstance(mode, int) and -x.ndim <= mode < 0:
        mode += x.ndim
    if x.dtype != matrix.dtype:
        raise TypeError(f"mode_product: tensor dtype {x.dtype} and matrix dtype {matrix.dtype} differ")
    kernels.check_mode_product(x.data, matrix.data, mode)
    return ModeProduct(mode)(x, matrix)


def tucker_to_tensor(core, factors):
    """core x_1 factors[0] x_2 ... x_D factors[D-1]; equals tensorly.tucker_to_tensor((core, factors)).

    factors[i] has shape (m_i, core.shape[i]); the result has shape (m_1, ..., m_D).
    Gradients flow to the core and to every factor.
    """
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"tucker_to_tensor: factors must be a list of matrices, got {type(factors).__name__}")
    core = as_tensor(core)
    factors = [as_tensor(f) for f in factors]
    _check_float("tucker_to_tensor", "core", core)
    for i, f in enumerate(factors):
        _check_float("tucker_to_tensor", f"factor {i}", f)
        if f.dtype != core.dtype:
            raise TypeError(f"tucker_to_tensor: factor {i} has dtype {f.dtype}, the core {core.dtype}")
    kernels.check_tucker(core.data, [f.data for f in factors])
    return TuckerToTensor()(core, *factors)
