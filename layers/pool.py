"""Max and average pooling layers over 2-D windows (FLOPs: one per window element per output)."""
import engine.ops as F
from engine.ops.conv import pair

from .validation import check_input
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{name}: kernel_size {self.kernel_size} and stride {self.stride} "
                             f"must be >= 1, padding {self.padding} >= 0")

    def flops(self, inputs, output):
        """One comparison (max) or addition (average) per window element of every output."""
        return output.size * self.kernel_size[0] * self.kernel_size[1]

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}"
        return s + (f", padding={self.padding}" if self.padding != (0, 0) else "")


class MaxPool2d(_Pool2d):
    def forward(self, x):
        x = check_input(self, x, 4)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        x = check_input(self, x, 4)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
