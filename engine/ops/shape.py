"""Shape operations: reshape, transpose, indexing, concatenation, stacking, splitting, padding."""
from .. import backend
from ..function import Function
from ..tensor import Tensor, as_tensor
from .broadcasting import sum_to, normalize_axis


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) "
                f"into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        axes = self.axes
        if axes is None:
            axes = tuple(range(x.ndim))[::-1]
        if len(axes) != x.ndim or sorted(normalize_axis(a, x.ndim, "transpose") for a in axes) \
                != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} axes")
        self.axes = tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, gy):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return gy.transpose(inverse)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return backend.xp_of(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


def _is_basic(index):
    """True for indices made of ints, slices, None and Ellipsis only (no array indexing)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class IndexOutOfRange(IndexError, ValueError):
    """A bad index: an IndexError (so iteration over a Tensor stops) that is also a ValueError."""


class GetItem(Function):
    """x[index]; backward scatters (and sums repeated indices) into a zero tensor."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_meta = (x.shape, x.dtype)
        try:
            return x[self.index]
        except IndexError as e:
            raise IndexOutOfRange(f"getitem: index {self.index!r} does not fit shape {x.shape} ({e})") from None

    def backward(self, gy):
        xp = backend.xp_of(gy)
        shape, dtype = self.in_meta
        gx = xp.zeros(shape, dtype=gy.dtype)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:
            scatter_add(gx, self.index, gy)
        return gx


def scatter_add(target, index, values):
    """target[index] += values, summing over repeated indices: `add.at` where the array module has it
    (NumPy; CuPy 12 and later, and CuPy 14 deprecates cupyx.scatter_add for it), else cupyx.scatter_add."""
    xp = backend.xp_of(target)
    add_at = getattr(xp.add, "at", None)
    if add_at is not None:
        add_at(target, index, values)
    else:
        backend.cupyx_module().scatter_add(target, index, values)


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.xp_of(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        bounds = list(_cumsum(self.sizes))[:-1]
        return tuple(xp.split(gy, bounds, axis=self.axis))


class Stack(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        return backend.xp_of(*xs).stack(xs, axis=self.axis)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        n = gy.shape[self.axis]
        return tuple(xp.squeeze(part, axis=self.axis) for part in xp.split(gy, n, axis=self.axis))


class Split(Function):
    def __init__(self, indices_or_sections, axis):
        self.indices_or_sections, self.axis = indices_or_sections, axis

    def forward(self, x):
        xp = backend.xp_of(x)
        try:
            return tuple(xp.split(x, self.indices_or_sections, axis=self.axis))
        except ValueError as e:
            raise ValueError(f"split: {e} (shape {x.shape}, axis {self.axis})") from None

    def backward(self, *gys):
        return backend.xp_of(*gys).concatenate(gys, axis=self.axis)


class Pad(Function):
    """Constant padding; pad_width as numpy.pad takes it."""

    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        xp = backend.xp_of(x)
        width = _expand_pad(self.pad_width, x.ndim)
        self.slices = tuple(slice(lo, lo + n) for (lo, _), n in zip(width, x.shape))
        return xp.pad(x, width, mode="constant", constant_values=self.value)

    def backward(self, gy):
        return gy[self.slices]


def _expand_pad(pad_width, ndim):
    xp_width = pad_width
    if isinstance(xp_width, int):
        return [(xp_width, xp_width)] * ndim
    xp_width = list(xp_width)
    if len(xp_width) == 2 and all(isinstance(v, int) for v in xp_width):
        return [tuple(xp_width)] * ndim
    if len(xp_width) != ndim:
        raise ValueError(f"pad: pad_width has {len(xp_width)} entries for {ndim} dimensions")
    out = []
    for w in xp_width:
        w = (w, w) if isinstance(w, int) else tuple(w)
        if len(w) != 2 or min(w) < 0:
            raise ValueError(f"pad: each pad width must be (before, after) >= 0, got {w}")
        out.append(w)
    return out


def _cumsum(sizes):
    total = 0
    for s in sizes:
        total += s
        yield total


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    x = as_tensor(x)
    if x.shape == shape:
        return x
    return Reshape(shape)(x)


def transpose(x, *axes):
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        return Transpose(None if axes[0] is None else tuple(axes[0]))(x)   # an explicit () is checked
    return Transpose(tuple(axes) if axes else None)(x)


def swapaxes(x, axis1, axis2):
    ndim = as_tensor(x).ndim
    axis1, axis2 = normalize_axis(axis1, ndim, "swapaxes"), normalize_axis(axis2, ndim, "swapaxes")
    axes = list(range(ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return Transpose(tuple(axes))(x)


def broadcast_to(x, shape):
    x = as_tensor(x)
    if x.shape == tuple(shape):
        return x
    return BroadcastTo(shape)(x)


def expand_dims(x, axis):
    x = as_tensor(x)
    shape = list(x.shape)
    shape.insert(normalize_axis(axis, x.ndim, "expand_dims", extra=1), 1)
    return Reshape(tuple(shape))(x)


def squeeze(x, axis=None):
    x = as_tensor(x)
    if axis is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        listed = [normalize_axis(a, x.ndim, "squeeze") for a in ((axis,) if isinstance(axis, int) else axis)]
        axes = set(listed)
        if len(axes) != len(listed):
            raise ValueError(f"squeeze: repeated axis in {axis}")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1")
        shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    return Reshape(shape)(x)


def flatten(x, start_axis=1):
    """x with every axis from start_axis on merged into one; x itself when that is already its last
    axis (as torch.flatten returns its input), so an MLP's Flatten adds no op to the graph."""
    x = as_tensor(x)
    start_axis = normalize_axis(start_axis, max(x.ndim, 1), "flatten")
    if x.ndim == start_axis + 1 and x.size:     # (an empty array goes through reshape, which may refuse it)
        return x
    return Reshape(x.shape[:start_axis] + (-1,))(x)


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = backend.xp_of(as_tensor(x).data).asarray(index)
    return GetItem(index)(x)


def concat(xs, axis=0):
    xs = [as_tensor(x) for x in xs]
    if not xs:
        raise ValueError("concat: need at least one tensor")
    if xs[0].ndim == 0:
        raise ValueError("concat: zero-dimensional tensors cannot be concatenated (use stack)")
    return Concat(normalize_axis(axis, xs[0].ndim, "concat"))(*xs)


def stack(xs, axis=0):
    xs = [as_tensor(x) for x in xs]
    if not xs:
        raise ValueError("stack: need at least one tensor")
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got {sorted(shapes)}")
    return Stack(axis)(*xs)


def split(x, indices_or_sections, axis=0):
    """Split along `axis` like numpy.split; returns a list of tensors."""
    x = as_tensor(x)
    axis = normalize_axis(axis, x.ndim, "split")
    if isinstance(indices_or_sections, int) and indices_or_sections < 1:
        raise ValueError(f"split: the number of sections must be >= 1, got {indices_or_sections}")
    out = Split(indices_or_sections, axis)(x)
    return list(out) if isinstance(out, list) else [out]


def pad(x, pad_width, value=0.0):
    return Pad(pad_width, value)(x)
