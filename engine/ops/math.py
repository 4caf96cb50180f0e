"""Elementwise arithmetic, unary math and comparisons-as-selection (matmul's op is in products.py)."""
import numpy as np

from .. import backend
from ..grad_mode import no_grad
from ..function import Function
from ..tensor import Tensor, as_tensor
from ..kernels.elementwise import elementwise_kernels, sigmoid_into
from .broadcasting import sum_to, cast_like
from .products import MatMul


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
        # a square (the usual loss) by NumPy's square: a 0-d exponent takes the general power, 0.39 against 0.18 ms
        self.square = b.size == 1 and b.ndim <= a.ndim and b.dtype == a.dtype and b == 2
        self.y = backend.xp_of(a).square(a) if self.square else a ** b
        return self.y

    def backward(self, gy):
        na, nb = self.needs_input_grad
        xp = backend.xp_of(gy)
        if na and self.square:      # 2 a gy with one new array: 0.26 against 0.44 ms for a (gy 2)
            ga = self.a * gy
            ga *= self.b
        else:
            ga = gy * self.b * self.a ** (self.b - 1) if na else None
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
