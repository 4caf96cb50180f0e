"""Reductions over axes: sum, mean, max, min (keepdims as in NumPy)."""
from .. import backend
from ..function import Function
from .broadcasting import normalize_axes, expand_reduced


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = normalize_axes(self.axis, x.ndim)
        self.in_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        g = expand_reduced(gy, self.in_shape, self.axes, self.keepdims)
        return backend.xp_of(gy).broadcast_to(g, self.in_shape)


class Mean(Sum):
    def forward(self, x):
        if x.dtype.kind not in "fc":   # as NumPy: integers are averaged in float64, without overflow
            x = x.astype("float64")
        y = super().forward(x)
        count = 1
        for a in self.axes:
            count *= x.shape[a]
        if count == 0:
            raise ValueError(f"mean: reducing over an empty axis of a tensor of shape {x.shape}")
        self.count = count
        return y / x.dtype.type(count) if x.dtype.kind == "f" else y / count

    def backward(self, gy):
        return super().backward(gy / gy.dtype.type(self.count))


class _Extreme(Function):
    """max/min: the gradient goes to the extreme elements, split evenly among ties."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = normalize_axes(self.axis, x.ndim)
        if x.size == 0:
            raise ValueError(f"{self.name.lower()}: empty tensor of shape {x.shape}")
        self.x = x
        self.y = self._reduce(x, axis=self.axes, keepdims=True)
        return self.y if self.keepdims else self.y.reshape(
            [s for i, s in enumerate(x.shape) if i not in self.axes])

    def backward(self, gy):
        g = expand_reduced(gy, self.x.shape, self.axes, self.keepdims)
        mask = self.x == self.y
        count = mask.sum(axis=self.axes, keepdims=True)
        return g * mask / count.astype(gy.dtype)


class Max(_Extreme):
    @staticmethod
    def _reduce(x, axis, keepdims):
        return x.max(axis=axis, keepdims=keepdims)


class Min(_Extreme):
    @staticmethod
    def _reduce(x, axis, keepdims):
        return x.min(axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return Min(axis, keepdims)(x)
