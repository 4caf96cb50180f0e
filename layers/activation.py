"""Elementwise activation layers, Flatten and Dropout (FLOPs: 1 per element for activations)."""
import engine.ops as F
from engine.tensor import as_tensor

from .module import Module


class _Elementwise(Module):
    """An activation applied element by element; counted as 1 FLOP per output element."""

    def forward(self, x):
        return self.fn(as_tensor(x))

    def flops(self, inputs, output):
        return output.size


class ReLU(_Elementwise):
    def fn(self, x):
        return F.relu(x)


class Tanh(_Elementwise):
    def fn(self, x):
        return F.tanh(x)


class Sigmoid(_Elementwise):
    def fn(self, x):
        return F.sigmoid(x)


class LeakyReLU(_Elementwise):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        if not isinstance(negative_slope, (int, float)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def fn(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Flatten(Module):
    """Merge every axis from start_axis on into one: (B, C, H, W) -> (B, C*H*W). No FLOPs."""

    def __init__(self, start_axis=1):
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x):
        x = as_tensor(x)
        if x.ndim <= self.start_axis:
            raise ValueError(f"Flatten: expected at least {self.start_axis + 1}-D input, got shape {x.shape}")
        return F.flatten(x, self.start_axis)

    def flops(self, inputs, output):
        return 0

    def extra_repr(self):
        return f"start_axis={self.start_axis}"


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p)); identity in eval.

    Counted as 0 FLOPs: it does nothing at inference.
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(as_tensor(x), self.p, self.training)

    def flops(self, inputs, output):
        return 0

    def extra_repr(self):
        return f"p={self.p}"
