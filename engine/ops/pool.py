"""Max and average pooling over 2-D windows."""
from .. import backend
from ..function import Function
from ..kernels.im2col import im2col, col2im, conv_output_size
from ..tensor import as_tensor
from .conv import pair

_ONE = (1, 1)


def _windows(x, k, stride, padding, fill):
    """Windows of x as (B, C, kh*kw, OH, OW), padding with `fill`."""
    xp = backend.xp_of(x)
    (ph, pw) = padding
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    cols = im2col(x, k[0], k[1], stride, (0, 0), _ONE)
    b, c, _, _, oh, ow = cols.shape
    return cols.reshape(b, c, k[0] * k[1], oh, ow), x.shape


def _unwindows(gcols, k, padded_shape, stride, padding):
    b, c, _, oh, ow = gcols.shape
    img = col2im(gcols.reshape(b, c, k[0], k[1], oh, ow), padded_shape, stride, (0, 0), _ONE)
    ph, pw = padding
    if ph or pw:
        img = img[:, :, ph:img.shape[2] - ph, pw:img.shape[3] - pw]
    return img


class MaxPool2d(Function):
    def __init__(self, k, stride, padding):
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x):
        xp = backend.xp_of(x)
        # padding must never win the max: -inf for floats, the smallest value for integers
        lowest = -xp.inf if x.dtype.kind == "f" else (xp.iinfo(x.dtype).min if x.dtype.kind in "iu" else False)
        cols, self.padded_shape = _windows(x, self.k, self.stride, self.padding, lowest)
        self.arg = cols.argmax(axis=2)[:, :, None]
        self.cols_shape = cols.shape
        return xp.take_along_axis(cols, self.arg, axis=2)[:, :, 0]

    def backward(self, gy):
        xp = backend.xp_of(gy)
        gcols = xp.zeros(self.cols_shape, dtype=gy.dtype)
        xp.put_along_axis(gcols, self.arg, gy[:, :, None], axis=2)
        return _unwindows(gcols, self.k, self.padded_shape, self.stride, self.padding)


class AvgPool2d(Function):
    """Average over each window, padding counted as zeros (PyTorch's default)."""

    def __init__(self, k, stride, padding):
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x):
        cols, self.padded_shape = _windows(x, self.k, self.stride, self.padding, 0)
        self.cols_shape = cols.shape
        return cols.mean(axis=2)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        scale = gy.dtype.type(1.0 / (self.k[0] * self.k[1]))
        gcols = xp.broadcast_to((gy * scale)[:, :, None], self.cols_shape)
        return _unwindows(xp.ascontiguousarray(gcols), self.k, self.padded_shape,
                          self.stride, self.padding)


def _pool_args(name, x, kernel_size, stride, padding):
    x = as_tensor(x)
    k = pair(kernel_size, f"{name} kernel_size")
    s = k if stride is None else pair(stride, f"{name} stride")
    p = pair(padding, f"{name} padding")
    if x.ndim != 4:
        raise ValueError(f"{name}: input must be (batch, channels, height, width), got {x.shape}")
    if x.shape[2] == 0 or x.shape[3] == 0:   # a window would hold nothing but padding
        raise ValueError(f"{name}: input has an empty spatial size {x.shape[2:]} (shape {x.shape})")
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(f"{name}: kernel {k} and stride {s} must be >= 1, padding {p} >= 0")
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ValueError(f"{name}: padding {p} must be at most half the kernel {k}")
    if conv_output_size(x.shape[2], k[0], s[0], p[0], 1) < 1 or \
            conv_output_size(x.shape[3], k[1], s[1], p[1], 1) < 1:
        raise ValueError(f"{name}: kernel {k} does not fit input of spatial size {x.shape[2:]}")
    return x, k, s, p


def max_pool2d(x, kernel_size, stride=None, padding=0):
    x, k, s, p = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d(k, s, p)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    x, k, s, p = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d(k, s, p)(x)
