"""Dense (fully connected) layer: y = x W + b with W of shape (n_in, n_out)."""
import engine.ops as F

from . import init
from .validation import check_input
from .module import Module, Parameter


class Dense(Module):
    """y = x W + b for x of shape (..., n_in); W (n_in, n_out), PyTorch's default init."""

    def __init__(self, n_in, n_out, bias=True, dtype=None):
        super().__init__()
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Dense: {name} must be a positive int, got {v!r}")
        self.n_in, self.n_out = n_in, n_out
        self.weight = Parameter(init.fan_in_uniform((n_in, n_out), n_in, dtype))
        self.bias = Parameter(init.fan_in_uniform((n_out,), n_in, dtype)) if bias else None

    def forward(self, x):
        x = check_input(self, x, (2, 3), axis=-1, size=self.n_in)
        return F.linear(x, self.weight, self.bias)

    def flops(self, inputs, output):
        """2 per multiply-add of the product plus 1 per bias add, for the whole batch."""
        rows = output.size // self.n_out
        return rows * self.n_out * (2 * self.n_in + (1 if self.bias is not None else 0))

    def extra_repr(self):
        return f"{self.n_in}, {self.n_out}" + ("" if self.bias is not None else ", bias=False")


Linear = Dense
