"""Fuzzing the public ops: drawn shapes, dtypes, NaN/Inf and extremes give NumPy's result or a ValueError/TypeError."""
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis (the test extra)")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import engine.ops as F  # noqa: E402
from engine import Tensor  # noqa: E402
from tests.reliability._fuzz import (FUZZ, FLOATS, any_array, arrays, check, nonfinite,  # noqa: E402
                                     tolerance)


def _sigmoid(x):
    x = np.asarray(x, dtype=np.float64) if x.dtype.kind != "f" else x
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0, x) if x.dtype.kind == "f" else np.logaddexp(0, x.astype(np.float64))


UNARY = {
    "exp": (F.exp, np.exp), "log": (F.log, np.log), "sqrt": (F.sqrt, np.sqrt), "abs": (F.abs, np.abs),
    "tanh": (F.tanh, np.tanh), "neg": (F.neg, np.negative), "sigmoid": (F.sigmoid, _sigmoid),
    "relu": (F.relu, lambda x: np.where(x > 0, x, np.zeros((), x.dtype))),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, x * 0.01)),
    "softplus": (F.softplus, _softplus),
}
BINARY = {"add": (F.add, np.add), "sub": (F.sub, np.subtract), "mul": (F.mul, np.multiply),
          "div": (F.div, np.divide), "pow": (F.pow, np.power), "maximum": (F.maximum, np.maximum),
          "minimum": (F.minimum, np.minimum)}
REDUCE = {"sum": (F.sum, np.sum), "mean": (F.mean, np.mean), "max": (F.max, np.max), "min": (F.min, np.min)}


def _nan_in(*xs):
    """Where a NaN entered an elementwise op (broadcast): the engine may give NaN there.

    Elsewhere, Inf inputs included, a NaN must be NumPy's NaN too (relu(-inf) is 0, not NaN).
    """
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    mask = np.zeros(shape, bool)
    for x in xs:
        x = np.asarray(x)
        if x.dtype.kind == "f":
            mask = mask | np.broadcast_to(np.isnan(x), shape)
    return mask


@pytest.mark.parametrize("name", sorted(UNARY))
@FUZZ
@given(data=st.data())
def test_unary_elementwise(name, data):
    op, ref = UNARY[name]
    x = any_array(data.draw)
    out = check(lambda: op(Tensor(x)), lambda: ref(x), nan_ok=_nan_in(x), **_tol(x))
    if out is not None and x.dtype.kind == "f":
        assert out.dtype == x.dtype, f"{name} changed dtype {x.dtype} -> {out.dtype}"


def _tol(*xs):
    rtol, atol = tolerance(*(x.dtype for x in xs))
    return {"rtol": rtol, "atol": atol}


@st.composite
def two_arrays(draw, bound=None):
    """Two arrays of drawn dtypes whose shapes broadcast (mostly) or are arbitrary."""
    if draw(st.integers(0, 4)):
        shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0,
                                                        max_side=3)).input_shapes
    else:
        shapes = [draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)) for _ in range(2)]
    a = any_array(draw, shapes[0], bound=bound)
    b = any_array(draw, shapes[1], bound=bound)
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@FUZZ
@given(pair=two_arrays())
def test_binary_broadcasting(name, pair):
    op, ref = BINARY[name]
    a, b = pair
    out = check(lambda: op(Tensor(a), Tensor(b)), lambda: ref(a, b), nan_ok=_nan_in(a, b)
                if _broadcasts(a, b) else None, **_tol(a, b))
    if out is not None and a.dtype == b.dtype and a.dtype.kind == "f":
        assert out.dtype == a.dtype


def _broadcasts(a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
        return True
    except ValueError:
        return False


@st.composite
def axis_for(draw, ndim):
    """None, one axis or a tuple of axes; sometimes out of range or repeated."""
    one = st.integers(-ndim - 1, ndim)
    return draw(st.none() | one | st.lists(one, max_size=3).map(tuple))


@pytest.mark.parametrize("name", sorted(REDUCE))
@FUZZ
@given(data=st.data(), keepdims=st.booleans())
def test_reductions(name, data, keepdims):
    op, ref = REDUCE[name]
    x = any_array(data.draw)
    axis = data.draw(axis_for(x.ndim))
    rtol, atol = _tol(x).values()
    check(lambda: op(Tensor(x), axis=axis, keepdims=keepdims), lambda: ref(x, axis=axis, keepdims=keepdims),
          nan_ok=nonfinite(x), rtol=rtol, atol=atol * max(1, x.size))


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FUZZ
@given(data=st.data())
def test_softmax(name, data):
    op, ref = (F.softmax, _softmax) if name == "softmax" else (F.log_softmax, _log_softmax)
    x = any_array(data.draw)
    axis = data.draw(st.integers(-x.ndim - 1, x.ndim))
    check(lambda: op(Tensor(x), axis=axis), lambda: ref(x, axis), nan_ok=nonfinite(x), **_tol(x))


# ---------------------------------------------------------------- shape operations
@st.composite
def reshape_target(draw, x):
    """A shape with x's element count (maybe with -1), or an arbitrary one."""
    if draw(st.booleans()):
        return draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    dims = [s for s in x.shape if s != 1]
    dims = draw(st.permutations(dims)) if dims else []
    dims = list(dims) + [1] * draw(st.integers(0, 2))
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


SHAPE_OPS = ["reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "flatten", "broadcast_to",
             "getitem", "pad", "split"]


def _flatten_ref(x, start):
    if x.ndim == 0:
        if start not in (0, -1):
            raise ValueError("out of range")
        return x.reshape(1)
    if not -x.ndim <= start < x.ndim:
        raise ValueError("out of range")
    start %= x.ndim
    return x.reshape(x.shape[:start] + (-1,))


@st.composite
def basic_index(draw, ndim):
    part = (st.integers(-5, 5) | st.none() | st.just(Ellipsis)
            | st.builds(slice, st.none() | st.integers(-5, 5), st.none() | st.integers(-5, 5),
                        st.none() | st.integers(-3, 3).filter(bool)))
    parts = draw(st.lists(part, max_size=ndim + 2))
    return parts[0] if len(parts) == 1 and draw(st.booleans()) else tuple(parts)


@pytest.mark.parametrize("name", SHAPE_OPS)
@FUZZ
@given(data=st.data())
def test_shape_ops(name, data):
    draw = data.draw
    x = any_array(draw)
    n = x.ndim
    axis = st.integers(-n - 2, n + 1)
    if name == "reshape":
        shape = draw(reshape_target(x))
        pair = (lambda: F.reshape(Tensor(x), shape), lambda: np.reshape(x, shape))
    elif name == "transpose":
        axes = draw(st.none() | st.permutations(range(n)).map(tuple) | st.lists(axis, max_size=n + 1).map(tuple))
        pair = (lambda: F.transpose(Tensor(x), axes), lambda: np.transpose(x, axes))
    elif name == "swapaxes":
        a1, a2 = draw(axis), draw(axis)
        pair = (lambda: F.swapaxes(Tensor(x), a1, a2), lambda: np.swapaxes(x, a1, a2))
    elif name == "expand_dims":
        a = draw(axis)
        pair = (lambda: F.expand_dims(Tensor(x), a), lambda: np.expand_dims(x, a))
    elif name == "squeeze":
        a = draw(st.none() | axis | st.lists(axis, max_size=2).map(tuple))
        pair = (lambda: F.squeeze(Tensor(x), a), lambda: np.squeeze(x, a))
    elif name == "flatten":
        a = draw(axis)
        pair = (lambda: F.flatten(Tensor(x), a), lambda: _flatten_ref(x, a))
    elif name == "broadcast_to":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
        if draw(st.booleans()):
            shape = tuple(shape[:max(0, len(shape) - n)]) + tuple(x.shape)
        pair = (lambda: F.broadcast_to(Tensor(x), shape), lambda: np.broadcast_to(x, shape))
    elif name == "getitem":
        if draw(st.integers(0, 3)) or n == 0:
            index = draw(basic_index(n))
        else:
            index = draw(hnp.arrays(np.int64, draw(st.integers(0, 3)), elements=st.integers(-5, 5)))
        pair = (lambda: F.getitem(Tensor(x), index), lambda: x[index])
    elif name == "pad":
        width = draw(st.integers(-1, 2) | st.lists(st.tuples(st.integers(-1, 2), st.integers(0, 2)),
                                                   min_size=max(0, n - 1), max_size=n + 1))
        pair = (lambda: F.pad(Tensor(x), width), lambda: np.pad(x, _np_width(width)))
    else:  # split
        sections = draw(st.integers(-1, 4) | st.lists(st.integers(-1, 5), max_size=3))
        a = draw(axis)
        pair = (lambda: F.split(Tensor(x), sections, axis=a), lambda: np.split(x, sections, axis=a))
    check(*pair, exact=True)


def _np_width(width):
    """numpy.pad refuses nothing we accept; a negative width is an error in both."""
    if isinstance(width, int) and width < 0:
        raise ValueError("negative width")
    if isinstance(width, list) and any(min(w) < 0 for w in width):
        raise ValueError("negative width")
    return width


@pytest.mark.parametrize("name", ["concat", "stack"])
@FUZZ
@given(data=st.data())
def test_join(name, data):
    draw = data.draw
    base = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    count = draw(st.integers(1, 3))
    axis = draw(st.integers(-len(base) - 2, len(base) + 1))
    dtype = draw(st.sampled_from(FLOATS))
    xs = []
    for _ in range(count):
        shape = list(base)
        if shape and draw(st.booleans()):       # change one size: legal for concat along it only
            shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(0, 3))
        xs.append(draw(arrays(dtype, tuple(shape))))
    op, ref = (F.concat, np.concatenate) if name == "concat" else (F.stack, np.stack)
    check(lambda: op([Tensor(x) for x in xs], axis=axis), lambda: ref(xs, axis=axis), exact=True)


# ---------------------------------------------------------------- products, nn ops, losses
@FUZZ
@given(data=st.data())
def test_matmul(data):
    draw = data.draw
    if draw(st.integers(0, 4)):
        shapes = draw(hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2,
                                                        min_side=0, max_side=4)).input_shapes
    else:
        shapes = [draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)) for _ in range(2)]
    a = any_array(draw, shapes[0], bound=8.0)
    b = any_array(draw, shapes[1], bound=8.0)
    rtol, atol = _tol(a, b).values()
    check(lambda: F.matmul(Tensor(a), Tensor(b)), lambda: np.matmul(a, b), nan_ok=nonfinite(a, b),
          rtol=max(rtol, 1e-5), atol=atol * 100)


def conv_reference(x, w, b, stride, padding, dilation, groups):
    """Direct cross-correlation in float64: a loop over kernel positions."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    bsz, c, h, wd = x.shape
    n, cg, kh, kw = w.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1 or c != cg * groups or n % groups:
        raise ValueError("does not fit")
    out = np.zeros((bsz, n, oh, ow))
    per = n // groups
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        for u in range(kh):
            for v in range(kw):
                r0, c0 = u * dilation[0], v * dilation[1]
                patch = xs[:, :, r0:r0 + stride[0] * (oh - 1) + 1:stride[0], c0:c0 + stride[1] * (ow - 1) + 1:stride[1]]
                out[:, g * per:(g + 1) * per] += np.einsum("bchw,nc->bnhw", patch, w[g * per:(g + 1) * per, :, u, v])
    return out if b is None else out + b.reshape(1, n, 1, 1)


@FUZZ
@given(data=st.data())
def test_conv2d(data):
    draw = data.draw
    groups = draw(st.integers(1, 2))
    cg, per = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    bsz, h, w_ = draw(st.integers(0, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(0, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(-1, 2)), draw(st.integers(0, 1)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    c = cg * groups + draw(st.sampled_from([0, 0, 0, 1]))        # sometimes a channel mismatch
    x_shape = (bsz, c, h, w_) if draw(st.integers(0, 5)) else draw(hnp.array_shapes(max_dims=5, max_side=3))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float64, np.int64, np.bool_]))
    x = draw(arrays(dtype, x_shape, bound=4.0))
    w = draw(arrays(dtype if dtype in FLOATS else np.float64, (per * groups, cg, kh, kw), bound=4.0))
    b = draw(st.none() | arrays(w.dtype, (per * groups,), bound=4.0))
    rtol, atol = _tol(x, w).values()
    out = check(lambda: F.conv2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), stride, padding,
                                 dilation, groups),
                lambda: conv_reference(x, w, b, stride, padding, dilation, groups),
                nan_ok=nonfinite(x, w) or (b is not None and nonfinite(b)), rtol=max(rtol, 1e-4), atol=atol * 100)
    if out is not None:
        assert out.dtype.kind == "f"


def pool_reference(x, k, stride, padding, kind):
    if x.ndim != 4 or min(k) < 1 or min(stride) < 1 or min(padding) < 0 or 2 * padding[0] > k[0] \
            or 2 * padding[1] > k[1]:
        raise ValueError("bad pool arguments")
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2),
                constant_values=fill)
    oh = (xp.shape[2] - k[0]) // stride[0] + 1
    ow = (xp.shape[3] - k[1]) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError("kernel does not fit")
    windows = np.stack([xp[:, :, u:u + stride[0] * (oh - 1) + 1:stride[0], v:v + stride[1] * (ow - 1) + 1:stride[1]]
                        for u in range(k[0]) for v in range(k[1])])
    return windows.max(axis=0) if kind == "max" else windows.mean(axis=0)


@pytest.mark.parametrize("kind", ["max", "avg"])
@FUZZ
@given(data=st.data())
def test_pool2d(kind, data):
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=4, max_dims=4, min_side=0, max_side=5)
                 | hnp.array_shapes(min_dims=0, max_dims=5, min_side=1, max_side=3))
    x = any_array(draw, shape, bound=1e3)
    k = (draw(st.integers(0, 3)), draw(st.integers(1, 3)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(0, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(-1, 1)))
    op = F.max_pool2d if kind == "max" else F.avg_pool2d
    rtol, atol = _tol(x).values()
    check(lambda: op(Tensor(x), k, stride, padding),
          lambda: pool_reference(x, k, k if stride is None else stride, padding, kind),
          nan_ok=nonfinite(x), rtol=rtol, atol=atol * 1e3)


def ce_reference(logits, labels, reduction):
    if labels.dtype.kind not in "iu" or logits.ndim < 1 or labels.shape != logits.shape[:-1] or labels.size == 0:
        raise ValueError("bad labels")
    c = logits.shape[-1]
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError("label out of range")
    z = logits.astype(np.float64).reshape(-1, c)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    loss = (lse - z[np.arange(len(z)), labels.reshape(-1)]).reshape(labels.shape)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


@FUZZ
@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy(data, reduction):
    draw = data.draw
    logits = any_array(draw, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                       dtypes=(np.float32, np.float64, np.float64, np.int64), bound=30.0)
    c = logits.shape[-1] if logits.ndim else 1
    label_shape = logits.shape[:-1] if draw(st.integers(0, 5)) else draw(hnp.array_shapes(min_dims=0, max_dims=2))
    labels = draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int32, np.float64])), label_shape,
                             elements=st.integers(-1, c)))
    rtol, atol = _tol(logits).values()
    check(lambda: F.cross_entropy(Tensor(logits), labels, reduction),
          lambda: ce_reference(logits, labels, reduction), nan_ok=nonfinite(logits),
          rtol=max(rtol, 1e-5), atol=atol * 100)


@FUZZ
@given(pair=two_arrays(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_mse_loss(pair, reduction):
    pred, target = pair

    def ref():
        if pred.shape != target.shape or pred.size == 0:
            raise ValueError("shapes differ or empty")
        sq = (pred - target) ** 2
        return {"none": sq, "sum": sq.sum(), "mean": sq.mean()}[reduction]

    rtol, atol = _tol(pred, target).values()
    check(lambda: F.mse_loss(Tensor(pred), Tensor(target), reduction), ref, nan_ok=nonfinite(pred, target),
          rtol=max(rtol, 1e-5), atol=atol)
