"""Elementwise arithmetic, unary math, comparisons-as-selection and matrix products."""
import numpy as np

from .. import backend, buffers
from ..grad_mode import no_grad
from ..function import Function
from ..tensor import Tensor, as_tensor
from ..kernels.elementwise import elementwise_kernels, sigmoid_into
from .broadcasting import sum_to, cast_like, column_sums


class _Binary(Function):
    """Broadcasting binary op: subclasses give forward and the two raw gradients."""

    def forward(self, a, b):
        self.a_meta = (a.shape, a.dtype)
        self.b_meta = (b.shape, b.dtype)
        return self._forward(a, b)

    def _reduce(self, ga, gb):
        (sa, da), (sb, db) = self.a_meta, self.b_meta
        if ga is not None:
            ga = cast_like(sum_to(ga, sa), da)
        if gb is not None:
            gb = cast_like(sum_to(gb, sb), db)
        return ga, gb


class Add(_Binary):
    def _forward(self, a, b):
        return a + b

    def backward(self, gy):
        return self._reduce(gy, gy)


class Sub(_Binary):
    def _forward(self, a, b):
        return a - b

    def backward(self, gy):
        return self._reduce(gy, -gy if self.needs_input_grad[1] else None)


class Mul(_Binary):
    def _forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        na, nb = self.needs_input_grad
        return self._reduce(gy * self.b if na else None, gy * self.a if nb else None)


class Div(_Binary):
    def _forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        na, nb = self.needs_input_grad
        ga = gy / self.b if na else None
        gb = -gy * self.a / (self.b * self.b) if nb else None
        return self._reduce(ga, gb)


class Pow(_Binary):
    def _forward(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, gy):
        na, nb = self.needs_input_grad
        xp = backend.xp_of(gy)
        square = na and self.b.size == 1 and self.b == 2   # the usual loss: 2 a gy in two passes, no power
        ga = (self.a * (gy * self.b) if square else gy * self.b * self.a ** (self.b - 1)) if na else None
        gb = None
        if nb:
            safe = xp.where(self.a > 0, self.a, 1)
            gb = gy * self.y * xp.log(safe)
        return self._reduce(ga, gb)


class Maximum(_Binary):
    def _forward(self, a, b):
        self.a, self.b = a, b
        return backend.xp_of(a, b).maximum(a, b)

    def backward(self, gy):
        # ties split the gradient evenly, so the check against finite differences holds
        wa = (self.a > self.b) + 0.5 * (self.a == self.b)
        return self._reduce(gy * wa, gy * (1 - wa))


class Minimum(_Binary):
    def _forward(self, a, b):
        self.a, self.b = a, b
        return backend.xp_of(a, b).minimum(a, b)

    def backward(self, gy):
        wa = (self.a < self.b) + 0.5 * (self.a == self.b)
        return self._reduce(gy * wa, gy * (1 - wa))


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return backend.xp_of(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return backend.xp_of(x).abs(x)  # not abs(): this module's abs() is the op itself

    def backward(self, gy):
        return gy * backend.xp_of(gy).sign(self.x)


class Tanh(Function):
    def forward(self, x):
        self.y = backend.xp_of(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.xp_of(x)
        if x.dtype.kind != "f":     # negate as floats: the smallest int64 has no negative in int64
            x = x.astype(np.float64)
        self.y = sigmoid_into(xp, x, xp.empty_like(x))
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class ReLU(Function):
    def forward(self, x):
        kernels = elementwise_kernels(x)
        if kernels is not None:       # one pass; NumPy's maximum ran 6x slower (elementwise_numba)
            out, zero = np.empty_like(x), x.dtype.type(0)
            if not self.recording:
                kernels.relu(x, out, zero)
                return out
            self.mask = np.empty(x.shape, dtype=bool)
            kernels.relu_with_mask(x, out, self.mask, zero)
            return out
        if x.dtype.kind == "f" and not self.recording:   # inference: no mask to keep
            return backend.xp_of(x).maximum(x, 0)
        self.mask = x > 0
        if x.dtype.kind == "f":   # relu(-inf) = 0 (x * mask would give NaN); NaN stays NaN
            return backend.xp_of(x).maximum(x, 0)
        return x * self.mask

    def backward(self, gy):
        kernels = elementwise_kernels(gy)
        if kernels is not None:
            out = np.empty_like(gy)
            kernels.relu_backward(gy, self.mask, out, gy.dtype.type(0))
            return out
        return gy * self.mask


class LeakyReLU(Function):
    def __init__(self, slope):
        self.slope = slope

    def forward(self, x):
        xp = backend.xp_of(x)
        self.scale = xp.where(x > 0, 1, self.slope)
        if x.dtype.kind == "f":   # integer inputs give a float result, as NumPy's ufuncs do
            self.scale = self.scale.astype(x.dtype)
        return x * self.scale

    def backward(self, gy):
        return gy * self.scale


class Softplus(Function):
    def forward(self, x):
        xp = backend.xp_of(x)
        self.x = x
        y = xp.logaddexp(0, x)
        return y.astype(x.dtype, copy=False) if x.dtype.kind == "f" else y

    def backward(self, gy):
        xp = backend.xp_of(gy)
        return gy * (0.5 * xp.tanh(0.5 * self.x) + 0.5)


class Clip(Function):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = backend.xp_of(x)
        self.mask = xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            self.mask &= x >= self.lo
        if self.hi is not None:
            self.mask &= x <= self.hi
        return xp.clip(x, self.lo, self.hi)

    def backward(self, gy):
        return gy * self.mask


class Where(Function):
    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        self.a_meta, self.b_meta = (a.shape, a.dtype), (b.shape, b.dtype)
        return backend.xp_of(a, b).where(self.condition, a, b)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        zero = xp.zeros((), gy.dtype)
        ga = cast_like(sum_to(xp.where(self.condition, gy, zero), self.a_meta[0]), self.a_meta[1])
        gb = cast_like(sum_to(xp.where(self.condition, zero, gy), self.b_meta[0]), self.b_meta[1])
        return ga, gb


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.in_dtype)


class MatMul(Function):
    """Batched matrix product with NumPy's matmul rules (1-D operands, broadcast batch axes)."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least 1 dimension, got a scalar")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: inner dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
        self.a, self.b = a, b
        if b.ndim == 2:
            return fold_matmul(a, b)
        return a @ b

    def backward(self, gy):
        a, b = self.a, self.b
        xp = backend.xp_of(gy)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # restore the axes NumPy dropped for 1-D operands (both for a vector dot product)
        if a.ndim == 1:
            gy = gy[..., None, :] if b.ndim > 1 else gy[..., None]
        if b.ndim == 1:
            gy = gy[..., None]
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = fold_matmul(gy, b2.T) if b2.ndim == 2 else gy @ xp.swapaxes(b2, -1, -2)
            ga = sum_to(ga, a2.shape).reshape(a.shape)
        if nb:
            if b2.ndim == 2 and a2.ndim > 2:
                # fold the batch axes into rows: one large GEMM instead of many small ones
                gb = weight_gradient(a2, gy)
            else:
                gb = sum_to(xp.swapaxes(a2, -1, -2) @ gy, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def fold_matmul(a, b):
    """a @ b for a 2-D b; leading axes of a are folded into rows so BLAS runs one GEMM
    (NumPy's stacked matmul with a broadcast 2-D operand is many times slower). A large result is
    lent from the buffer pool, so a training step gets back the array its previous step used: for a
    recurrent layer's input projection (10 MB at batch 50, T = 100, 4 x 128 gates) that made the
    LSTM and GRU train steps 7-17% faster (in-process A/B, 2 threads, glibc's default allocator;
    neither side faulted in fresh pages, so the gain is the reused memory, not the allocation)."""
    if a.ndim < 2:
        return a @ b
    xp = backend.xp_of(a)
    rows = a.reshape(-1, a.shape[-1])
    if rows.shape[0] * b.shape[-1] * a.itemsize < buffers.LEND_MIN_BYTES:
        # a result the pool would not keep: the plain product skips the loan and NumPy's out= checks
        # (a batch-1 LeNet-5 dense layer, 800 -> 500: 26.5 against 34.1 us)
        return (rows @ b).reshape(a.shape[:-1] + (b.shape[-1],))
    out = buffers.lend((rows.shape[0], b.shape[-1]), xp.result_type(a, b), like=a)
    xp.matmul(rows, b, out=out)
    return out.reshape(a.shape[:-1] + (b.shape[-1],))


def weight_gradient(x, gy):
    """The (n, m) gradient of a weight applied as x @ w: x (..., n) and gy (..., m) over the same leading
    axes, their rows folded so one GEMM sums the outer products (Linear, matmul, low_rank_linear)."""
    return x.reshape(-1, x.shape[-1]).T @ gy.reshape(-1, gy.shape[-1])


class Linear(Function):
    """x @ w (+ b): the dense layer's product, leading batch axes of x folded into one GEMM."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        return linear_forward(x, w, b)

    def backward(self, gy):
        x, w = self.x, self.w
        needs = self.needs_input_grad
        gx = fold_matmul(gy, w.T) if needs[0] else None
        gw = gb = None
        if needs[1]:
            gw = weight_gradient(x, gy)
        if len(needs) > 2 and needs[2]:
            gb = column_sums(gy.reshape(-1, gy.shape[-1]))
        return (gx, gw, gb) if len(needs) > 2 else (gx, gw)


def linear_forward(x, w, b=None):
    """x @ w (+ b) on raw arrays, the bias in the product when bias_rides_in_product says so."""
    if b is not None and x.ndim >= 2 and bias_rides_in_product(x.shape[-1], w.shape[-1]):
        x_ones, w_bias = _with_ones_column(x, w, b)
        y = fold_matmul(x_ones, w_bias)
        buffers.give_back(x_ones)
        return y
    y = fold_matmul(x, w)
    if b is not None:
        y += b
    return y


def bias_rides_in_product(n_in, n_out):
    """Whether x @ w + b is formed as [x, 1] @ [w; b] (a pooled copy of x with a column of ones) instead
    of a product and then a pass adding b to every output row: when a row of x, grown by one, is at
    most an eighth of an output row. Alone, on one thread, the fold took 0.53x the time of the add at
    4096 rows, 2 -> 768 (a GRU's input projection), 0.74x at 32 -> 768, 0.94x at 5000 rows, 128 -> 512;
    but the LSTM train step of bench/speed.py, whose projection is that last shape, ran 1.00x and 1.09x
    with it, so wider inputs keep the add (bench/results/microbench-session7.md)."""
    return 8 * (n_in + 1) <= n_out


def _with_ones_column(x, w, b):
    """([x, 1], [w; b]) with x's leading axes kept: the operands of the product that adds the bias. The
    first comes from the buffer pool; the caller gives it back once the product is formed."""
    xp = backend.xp_of(x)
    n_in = x.shape[-1]
    dtype = xp.result_type(x, w)
    ones = buffers.take(x.shape[:-1] + (n_in + 1,), dtype, like=x)
    ones[..., :n_in] = x
    ones[..., n_in] = 1
    grown = xp.empty((n_in + 1, w.shape[-1]), dtype=dtype)
    grown[:n_in] = w
    grown[n_in] = b
    return ones, grown


def _binary(cls, a, b):
    if isinstance(a, Tensor):
        b = as_tensor(b, like=a)
    else:
        b = as_tensor(b)
        a = as_tensor(a, like=b)
    return cls()(a, b)


def add(a, b):
    return _binary(Add, a, b)


def sub(a, b):
    return _binary(Sub, a, b)


def mul(a, b):
    return _binary(Mul, a, b)


def div(a, b):
    return _binary(Div, a, b)


def pow(a, b):  # noqa: A001  (mirrors the operator name)
    return _binary(Pow, a, b)


def maximum(a, b):
    return _binary(Maximum, a, b)


def minimum(a, b):
    return _binary(Minimum, a, b)


def matmul(a, b):
    return _binary(MatMul, a, b)


def neg(x):
    return Neg()(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):  # noqa: A001
    return Abs()(x)


def tanh(x):
    return Tanh()(x)


def sigmoid(x):
    return Sigmoid()(x)


def relu(x):
    return ReLU()(x)


def leaky_relu(x, negative_slope=0.01):
    return LeakyReLU(negative_slope)(x)


def softplus(x):
    return Softplus()(x)


def clip(x, lo=None, hi=None):
    if lo is None and hi is None:
        raise ValueError("clip: give at least one of lo, hi")
    return Clip(lo, hi)(x)


def where(condition, a, b):
    """Elementwise choice: a where condition holds, else b (condition is not differentiated)."""
    if isinstance(condition, Tensor):
        condition = condition.data
    if isinstance(a, Tensor):
        b = as_tensor(b, like=a)
    else:
        b = as_tensor(b)
        a = as_tensor(a, like=b)
    return Where(backend.xp_of(a.data).asarray(condition, dtype=bool))(a, b)


def cast(x, dtype):
    """Change the dtype; the gradient is cast back. A cast to a non-float dtype is not recorded."""
    xp = backend.xp_of(as_tensor(x).data)
    if xp.dtype(dtype).kind not in "fc":
        with no_grad():
            return Cast(dtype)(x)
    return Cast(dtype)(x)
