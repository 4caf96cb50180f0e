"""Max and average pooling over 2-D windows."""
from .. import backend, buffers
from ..function import Function
from ..kernels import load_numba_module
from ..kernels.im2col import im2col, col2im, conv_output_size, cropped
from ..tensor import as_tensor
from .conv import pair

_ONE = (1, 1)

# 2x2 max pooling at stride 2 on CPU floats: "numba" (one pass, the arg-max kept for backward;
# LeNet-5's two pools took ~4.7 ms of backward per step with the per-tap NumPy comparisons)
# or "numpy". Other windows always take the NumPy path.
PREFERRED_MAX_POOL = "numba"


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
    return cropped(img, padding)


def _tap_slices(k, stride, out_hw):
    """(tap index, (row slice, col slice)) of each kernel tap over the padded input."""
    (sh, sw), (oh, ow) = stride, out_hw
    for i in range(k[0]):
        for j in range(k[1]):
            yield i * k[1] + j, (slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))


def _pool_kernels(x, k, stride):
    """The Numba 2x2 max-pool kernels when they apply (2x2 windows at stride 2 over a float CPU
    array), else None (the NumPy/CuPy path runs)."""
    if backend.is_gpu_array(x) or x.dtype.kind != "f" or PREFERRED_MAX_POOL != "numba" \
            or k != (2, 2) or stride != (2, 2):
        return None
    return load_numba_module("pool_numba")


class MaxPool2d(Function):
    """Maximum over each window; backward sends each output's gradient to the first tap
    holding the maximum (as argmax would).

    Numba path (2x2 windows, stride 2): one pass that keeps each window's arg-max for backward
    (without a graph, the maxima alone: half the time at LeNet-5's first pool).
    NumPy/CuPy path: a running maximum over the kernel taps, each tap a strided view of the
    input (no window copy), the arg-max found again in backward by comparison.
    """

    def __init__(self, k, stride, padding):
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x):
        xp = backend.xp_of(x)
        (ph, pw) = self.padding
        if ph or pw:
            # padding must never win the max: -inf for floats, the smallest value for integers
            lowest = -xp.inf if x.dtype.kind == "f" else (
                xp.iinfo(x.dtype).min if x.dtype.kind in "iu" else False)
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=lowest)
        oh = (x.shape[2] - self.k[0]) // self.stride[0] + 1
        ow = (x.shape[3] - self.k[1]) // self.stride[1] + 1
        self.out_hw = (oh, ow)
        self.kernels = _pool_kernels(x, self.k, self.stride)
        if self.kernels is not None and not self.recording:   # no backward follows: the maxima alone
            return self.kernels.max_pool_2x2_values(x, oh, ow)
        if self.kernels is not None:   # one pass, remembering each window's arg-max
            y, self.tap = self.kernels.max_pool_2x2_forward(x, oh, ow)
            self.padded_shape = x.shape
            return y
        taps = _tap_slices(self.k, self.stride, self.out_hw)
        _, (rows, cols) = next(taps)
        y = x[:, :, rows, cols].copy()
        for _, (rows, cols) in taps:
            xp.maximum(y, x[:, :, rows, cols], out=y)   # NaN propagates, as with argmax
        self.x, self.y = x, y
        return y

    def backward(self, gy):
        xp = backend.xp_of(gy)
        if self.kernels is not None:
            gx = buffers.lend(self.padded_shape, gy.dtype, like=gy)
            self.kernels.max_pool_2x2_backward(gy, self.tap, gx)
            return cropped(gx, self.padding)
        x, y = self.x, self.y
        gx = xp.zeros(x.shape, dtype=gy.dtype)
        unclaimed = xp.ones(y.shape, dtype=bool)
        disjoint = self.stride[0] >= self.k[0] and self.stride[1] >= self.k[1]
        for _, (rows, cols) in _tap_slices(self.k, self.stride, self.out_hw):
            hit = (x[:, :, rows, cols] == y) & unclaimed
            if disjoint:   # each input element belongs to one window: write, don't accumulate
                xp.multiply(gy, hit, out=gx[:, :, rows, cols])
            else:
                gx[:, :, rows, cols] += gy * hit
            unclaimed &= ~hit
        return cropped(gx, self.padding)


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
