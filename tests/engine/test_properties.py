"""Property tests (hypothesis): drawn shapes and values; forward equals NumPy, gradients match closed forms."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import engine  # noqa: E402
import engine.ops as F  # noqa: E402
from tests.engine._helpers import leaf  # noqa: E402

# derandomized so a CI run is reproducible; too_slow is suppressed because build machines are shared
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FINITE = st.floats(-3, 3, allow_nan=False, allow_infinity=False, width=64)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)


def arrays(shape=SHAPES, elements=FINITE):
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def broadcastable_pair(draw):
    """Two arrays whose shapes broadcast together (some axes size 1, different ranks)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
    a = draw(arrays(shapes.input_shapes[0]))
    b = draw(arrays(shapes.input_shapes[1]))
    return a, b


def _grads(fn, *arrays_):
    """Forward value and the gradients of sum(v * fn(...)) for a fixed random v."""
    ts = [leaf(a) for a in arrays_]
    y = fn(*ts)
    v = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(v)
    return y.data, v, [t.grad for t in ts]


BINARY_CLOSED_FORMS = {
    # name: (op, numpy forward, d/da, d/db)
    "add": (F.add, np.add, lambda a, b: np.ones_like(a + b), lambda a, b: np.ones_like(a + b)),
    "sub": (F.sub, np.subtract, lambda a, b: np.ones_like(a + b), lambda a, b: -np.ones_like(a + b)),
    "mul": (F.mul, np.multiply, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
}


def _unbroadcast(g, shape):
    """Sum a full-shape gradient down to an operand's shape (how broadcasting is undone)."""
    while g.ndim > len(shape):
        g = g.sum(0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdims=True)
    return g


@pytest.mark.parametrize("name", sorted(BINARY_CLOSED_FORMS))
@SETTINGS
@given(pair=broadcastable_pair())
def test_binary_ops_broadcast_like_numpy(name, pair):
    op, reference, da, db = BINARY_CLOSED_FORMS[name]
    a, b = pair
    y, v, (ga, gb) = _grads(op, a, b)
    np.testing.assert_allclose(y, reference(a, b), rtol=1e-12)
    np.testing.assert_allclose(ga, _unbroadcast(v * da(a, b), a.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, _unbroadcast(v * db(a, b), b.shape), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(pair=broadcastable_pair())
def test_div_gradient_matches_finite_differences(pair):
    a, b = pair
    b = np.where(np.abs(b) < 0.5, 0.5 + np.abs(b), b)   # keep away from division by zero
    np.testing.assert_allclose(F.div(leaf(a), leaf(b)).data, a / b, rtol=1e-12)
    assert engine.gradcheck(F.div, leaf(a), leaf(b))


UNARY_CLOSED_FORMS = {
    # name: (op, numpy forward, derivative, domain transform)
    "exp": (F.exp, np.exp, np.exp, lambda x: x),
    "log": (F.log, np.log, lambda x: 1 / x, lambda x: np.abs(x) + 0.1),
    "sqrt": (F.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x), lambda x: np.abs(x) + 0.1),
    "tanh": (F.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: x),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)),
                lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2, lambda x: x),
    "softplus": (F.softplus, lambda x: np.log1p(np.exp(x)), lambda x: 1 / (1 + np.exp(-x)), lambda x: x),
    "neg": (F.neg, np.negative, lambda x: -np.ones_like(x), lambda x: x),
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0, lambda x: x),
    "abs": (F.abs, np.abs, np.sign, lambda x: x),
}


@pytest.mark.parametrize("name", sorted(UNARY_CLOSED_FORMS))
@SETTINGS
@given(x=arrays())
def test_unary_ops_forward_and_closed_form_gradient(name, x):
    op, reference, derivative, domain = UNARY_CLOSED_FORMS[name]
    x = domain(x)
    y, v, (g,) = _grads(op, x)
    np.testing.assert_allclose(y, reference(x), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(g, v * derivative(x), rtol=1e-10, atol=1e-12)


@st.composite
def array_and_axes(draw):
    x = draw(arrays())
    axis = draw(st.none() | st.lists(st.integers(0, max(x.ndim - 1, 0)), unique=True,
                                    max_size=x.ndim).map(tuple))
    if x.ndim == 0:
        axis = None
    return x, axis, draw(st.booleans())


@SETTINGS
@given(case=array_and_axes())
def test_sum_and_mean_gradients(case):
    x, axis, keepdims = case
    count = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
    for op, reference, scale in ((F.sum, np.sum, 1.0), (F.mean, np.mean, 1.0 / max(count, 1))):
        y, v, (g,) = _grads(lambda t: op(t, axis=axis, keepdims=keepdims), x)
        np.testing.assert_allclose(y, reference(x, axis=axis, keepdims=keepdims), rtol=1e-12, atol=1e-12)
        v_full = v if keepdims else np.expand_dims(v, axis if axis is not None else tuple(range(x.ndim)))
        np.testing.assert_allclose(g, np.broadcast_to(v_full * scale, x.shape), rtol=1e-12)


@SETTINGS
@given(case=array_and_axes(), seed=st.integers(0, 2 ** 16))
def test_max_min_gradient_goes_to_the_extreme(case, seed):
    _, axis, keepdims = case
    shape = case[0].shape
    # distinct values (a shuffled range) so the extreme is unique
    x = np.random.default_rng(seed).permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape)
    for op, reference in ((F.max, np.max), (F.min, np.min)):
        y, v, (g,) = _grads(lambda t: op(t, axis=axis, keepdims=keepdims), x)
        np.testing.assert_array_equal(y, reference(x, axis=axis, keepdims=keepdims))
        extreme = x == reference(x, axis=axis, keepdims=True)
        v_full = v if keepdims else np.expand_dims(v, axis if axis is not None else tuple(range(x.ndim)))
        np.testing.assert_array_equal(g, np.where(extreme, v_full, 0.0))


@st.composite
def array_and_permutation(draw):
    x = draw(arrays())
    perm = draw(st.permutations(range(x.ndim)))
    return x, tuple(perm)


@SETTINGS
@given(case=array_and_permutation())
def test_transpose_and_reshape_round_trip(case):
    x, perm = case
    y, v, (g,) = _grads(lambda t: F.transpose(t, perm), x)
    np.testing.assert_array_equal(y, np.transpose(x, perm))
    np.testing.assert_array_equal(g, np.transpose(v, np.argsort(perm)))
    y, v, (g,) = _grads(lambda t: F.reshape(t, (-1,)), x)
    np.testing.assert_array_equal(y, x.reshape(-1))
    np.testing.assert_array_equal(g, v.reshape(x.shape))


@st.composite
def array_and_index(draw):
    x = draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)))
    index = np.array(draw(st.lists(st.integers(0, x.shape[0] - 1), min_size=1, max_size=6)))
    return x, index


@SETTINGS
@given(case=array_and_index())
def test_integer_array_indexing_scatters_and_sums(case):
    x, index = case
    y, v, (g,) = _grads(lambda t: t[index], x)
    np.testing.assert_array_equal(y, x[index])
    expected = np.zeros_like(x)
    for k, i in enumerate(index):   # each repeat adds its own share
        expected[i] += v[k]
    np.testing.assert_allclose(g, expected, rtol=1e-12)


@st.composite
def arrays_to_join(draw):
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    axis = draw(st.integers(0, len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = [draw(arrays(base[:axis] + (n,) + base[axis + 1:])) for n in sizes]
    return parts, axis


@SETTINGS
@given(case=arrays_to_join())
def test_concat_and_split_are_inverse(case):
    parts, axis = case
    y, v, grads = _grads(lambda *ts: F.concat(ts, axis), *parts)
    np.testing.assert_array_equal(y, np.concatenate(parts, axis))
    bounds = np.cumsum([p.shape[axis] for p in parts])[:-1]
    for g, expected in zip(grads, np.split(v, bounds, axis)):
        np.testing.assert_array_equal(g, expected)
    pieces = F.split(leaf(y), list(bounds), axis)
    for piece, p in zip(pieces, parts):
        np.testing.assert_array_equal(piece.data, p)


@SETTINGS
@given(x=arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)), axis=st.integers(-1, 0))
def test_softmax_rows_sum_to_one_and_gradcheck(x, axis):
    y = F.softmax(leaf(x), axis).data
    np.testing.assert_allclose(y.sum(axis), 1.0, rtol=1e-12)
    assert engine.gradcheck(lambda t: F.log_softmax(t, axis), leaf(x), elementwise=False)
