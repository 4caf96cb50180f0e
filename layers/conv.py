"""Conv2d layer: weight (out, in/groups, kh, kw) in PyTorch's layout and default init."""
import engine.ops as F
from engine.ops.conv import pair

from . import init
from .validation import check_input
from .module import Module, Parameter


def _positive_int(layer, name, v, minimum=1):
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{layer}: {name} must be an int >= {minimum}, got {v!r}")
    return v


class Conv2d(Module):
    """2-D cross-correlation of (B, C, H, W) inputs; FLOPs = 2 per multiply-add + 1 per bias add."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=None):
        super().__init__()
        _positive_int("Conv2d", "in_ch", in_ch)
        _positive_int("Conv2d", "out_ch", out_ch)
        _positive_int("Conv2d", "groups", groups)
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_ch={in_ch} and out_ch={out_ch}")
        self.kernel_size = pair(kernel_size, "Conv2d kernel_size")
        self.stride = pair(stride, "Conv2d stride")
        self.padding = pair(padding, "Conv2d padding")
        self.dilation = pair(dilation, "Conv2d dilation")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 \
                or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size {self.kernel_size}, stride {self.stride} and "
                             f"dilation {self.dilation} must be >= 1, padding {self.padding} >= 0")
        self.in_ch, self.out_ch, self.groups = in_ch, out_ch, groups
        kh, kw = self.kernel_size
        fan_in = in_ch // groups * kh * kw
        self.weight = Parameter(init.fan_in_uniform((out_ch, in_ch // groups, kh, kw), fan_in, dtype))
        self.bias = Parameter(init.fan_in_uniform((out_ch,), fan_in, dtype)) if bias else None

    def forward(self, x):
        x = check_input(self, x, 4, axis=1, size=self.in_ch)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def flops(self, inputs, output):
        kh, kw = self.kernel_size
        per_output = 2 * (self.in_ch // self.groups) * kh * kw + (1 if self.bias is not None else 0)
        return output.size * per_output

    def extra_repr(self):
        s = f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")
