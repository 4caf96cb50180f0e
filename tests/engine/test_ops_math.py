"""Gradient checks and NumPy comparisons for the elementwise, selection and matmul ops."""
import importlib.util

import numpy as np
import pytest

import engine
import engine.ops as F
from tests.engine._helpers import leaf, away_from, check

# (shape of a, shape of b): equal shapes, broadcasting both ways, size-1 axes, scalars
BROADCAST_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 4)), ((1, 3, 1), (2, 1, 4)),
                    ((), (2, 2)), ((2, 3), ())]

BINARY = {
    "add": (F.add, np.add),
    "sub": (F.sub, np.subtract),
    "mul": (F.mul, np.multiply),
    "div": (F.div, np.divide),
    "maximum": (F.maximum, np.maximum),
    "minimum": (F.minimum, np.minimum),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_forward_and_gradient(name, shapes, rng):
    op, reference = BINARY[name]
    a = away_from(rng, shapes[0], gap=0.3)
    b = away_from(rng, shapes[1], gap=0.3) + (0.25 if name in ("maximum", "minimum") else 0)
    np.testing.assert_allclose(op(leaf(a), leaf(b)).data, reference(a, b), rtol=1e-12)
    assert check(op, a, b)


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_pow_both_operands(shapes, rng):
    base = rng.uniform(0.5, 2.0, shapes[0])
    exponent = rng.uniform(-1.5, 2.5, shapes[1])
    np.testing.assert_allclose(F.pow(leaf(base), leaf(exponent)).data, base ** exponent)
    assert check(F.pow, base, exponent)


def test_pow_negative_base_with_constant_integer_exponent(rng):
    x = leaf(away_from(rng, (4,), gap=0.2))
    (x ** 3).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data ** 2)


@pytest.mark.parametrize("exponent_shape", [(), (1,), (1, 1), (1, 1, 1)], ids=str)
def test_square_takes_its_own_gradient_path(exponent_shape, rng):
    """An exponent of 2 (the usual loss) skips the power in backward; the gradient is still 2 a gy,
    for negative bases too, and a 2 that itself wants a gradient still gets a log-rule one. The result
    is NumPy's power, broadcast as it broadcasts (a 2 of more axes than the base adds them)."""
    base = away_from(rng, (3, 4), gap=0.2)
    x = leaf(base)
    y = x ** np.full(exponent_shape, 2.0)
    expected = base ** np.full(exponent_shape, 2.0)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=1e-15)
    (y * np.arange(12.0).reshape(3, 4)).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * base * np.arange(12.0).reshape(3, 4), rtol=1e-14)
    assert check(F.pow, np.abs(base) + 0.5, np.full(exponent_shape, 2.0))
    assert check(lambda t: t ** 2, base)


def test_python_scalars_on_either_side(rng):
    x = leaf(rng.uniform(0.5, 2, (3,)))
    y = 2.0 - x / 4 + 3 * x - 1 / x + 2 ** x
    np.testing.assert_allclose(y.data, 2.0 - x.data / 4 + 3 * x.data - 1 / x.data + 2 ** x.data)
    assert y.dtype == np.float64
    assert engine.gradcheck(lambda t: 2.0 - t / 4 + 3 * t - 1 / t + 2 ** t, x)


def test_scalar_keeps_float32():
    x = engine.Tensor(np.ones(3, np.float32), requires_grad=True)
    assert (x * 2.5 + 1).dtype == np.float32


def test_maximum_tie_splits_gradient():
    a, b = leaf([1.0, 2.0]), leaf([1.0, 3.0])
    F.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0.5, 0.0])
    np.testing.assert_allclose(b.grad, [0.5, 1.0])


UNARY = {
    # name: (op, numpy reference, value maker)
    "neg": (F.neg, np.negative, lambda r, s: r.standard_normal(s)),
    "exp": (F.exp, np.exp, lambda r, s: r.standard_normal(s)),
    "log": (F.log, np.log, lambda r, s: r.uniform(0.3, 3.0, s)),
    "sqrt": (F.sqrt, np.sqrt, lambda r, s: r.uniform(0.3, 3.0, s)),
    "abs": (F.abs, np.abs, lambda r, s: away_from(r, s)),
    "tanh": (F.tanh, np.tanh, lambda r, s: r.standard_normal(s) * 2),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda r, s: r.standard_normal(s) * 3),
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda r, s: away_from(r, s)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                   lambda r, s: away_from(r, s)),
    "softplus": (F.softplus, lambda x: np.log1p(np.exp(x)), lambda r, s: r.standard_normal(s) * 3),
    "clip": (lambda x: F.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7),
             lambda r, s: away_from(r, s, kinks=(-0.5, 0.7))),
    "clip_lo": (lambda x: F.clip(x, lo=0.2), lambda x: np.maximum(x, 0.2),
                lambda r, s: away_from(r, s, kinks=(0.2,))),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(), (1,), (4,), (2, 1, 3)], ids=str)
def test_unary_forward_and_gradient(name, shape, rng):
    op, reference, make = UNARY[name]
    x = make(rng, shape)
    np.testing.assert_allclose(op(leaf(x)).data, reference(x), rtol=1e-12, atol=1e-15)
    assert check(op, x)


def test_sigmoid_and_softplus_are_finite_for_large_inputs():
    x = leaf([-800.0, 800.0])
    with engine.detect_anomaly():
        np.testing.assert_allclose(F.sigmoid(x).data, [0.0, 1.0])
        np.testing.assert_allclose(F.softplus(x).data, [0.0, 800.0])
        F.softplus(x).sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0])


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="clip"):
        F.clip(leaf([1.0]))


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((2, 1), (1, 3), (2, 3)),
                                    ((3,), (2, 3), ())], ids=str)
def test_where(shapes, rng):
    cond_shape, a_shape, b_shape = shapes
    condition = rng.random(cond_shape) > 0.5
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(F.where(condition, leaf(a), leaf(b)).data, np.where(condition, a, b))
    assert check(lambda s, t: F.where(condition, s, t), a, b)


def test_cast_forward_backward(rng):
    x = rng.standard_normal((2, 3))
    y = F.cast(leaf(x), np.float32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, x.astype(np.float32))
    # cast is linear: a wide step keeps finite differences clear of float32 rounding
    assert check(lambda t: F.cast(F.cast(t, np.float32), np.float64), x, eps=1e-2, atol=1e-4)
    t = leaf(x)
    F.cast(t, "float32").sum().backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_array_equal(t.grad, np.ones((2, 3)))


def test_cast_to_integer_is_not_recorded():
    y = F.cast(leaf([1.5, -2.5]), np.int64)
    assert y.dtype == np.int64 and not y.requires_grad
    np.testing.assert_array_equal(y.data, [1, -2])


MATMUL_SHAPES = [((2, 3), (3, 4)), ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)),
                 ((4, 2, 3), (3, 5)), ((2, 3), (4, 3, 5)), ((2, 1, 2, 3), (3, 3, 2)),
                 ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((1, 3), (3, 1))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_forward_and_gradient(shapes, rng):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    np.testing.assert_allclose(F.matmul(leaf(a), leaf(b)).data, a @ b, rtol=1e-12)
    np.testing.assert_allclose((leaf(a) @ leaf(b)).data, a @ b, rtol=1e-12)
    assert check(F.matmul, a, b)


def test_matmul_with_one_operand_constant(rng):
    a, b = leaf(rng.standard_normal((2, 3))), engine.Tensor(rng.standard_normal((3, 2)))
    (a @ b).sum().backward()
    np.testing.assert_allclose(a.grad, np.ones((2, 2)) @ b.data.T)
    assert b.grad is None


@pytest.mark.parametrize("x_shape", [(4, 3), (3,), (2, 1, 3), (1, 3)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_numpy(x_shape, bias, rng):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((3, 2)), rng.standard_normal(2)
    args = (x, w, b) if bias else (x, w)
    np.testing.assert_allclose(F.linear(*[leaf(a) for a in args]).data, x @ w + (b if bias else 0))
    assert check(F.linear, *args)


def test_linear_bad_shapes():
    with pytest.raises(ValueError, match="linear"):
        F.linear(leaf(np.ones((2, 3))), leaf(np.ones((4, 2))))
    with pytest.raises(ValueError, match="linear.*bias"):
        F.linear(leaf(np.ones((2, 3))), leaf(np.ones((3, 2))), leaf(np.ones(3)))


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3), (4, 2)), ((3,), (4,))])
def test_matmul_shape_mismatch_is_a_clear_error(a_shape, b_shape):
    with pytest.raises(ValueError, match=r"matmul.*inner"):
        F.matmul(leaf(np.ones(a_shape)), leaf(np.ones(b_shape)))


# ---------------------------------------------------------------- ReLU's Numba kernels
RELU_SPECIALS = [-np.inf, -1.0, -0.0, 0.0, 1e-30, 2.5, np.inf, np.nan]


def _relu_inputs(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[:len(RELU_SPECIALS)] = np.array(RELU_SPECIALS[:flat.size], dtype)
    return x


def _numpy_relu(x, gy):
    """The NumPy path's answers, written out: max(x, 0) with NaN kept, and gy * (x > 0)."""
    return np.where(np.isnan(x), x, np.maximum(x, 0)), gy * (x > 0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")   # inf * 0
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 7), (2, 3, 5), (0, 4), (1,)], ids=str)
@pytest.mark.parametrize("record", [True, False], ids=["graph", "no_graph"])
def test_relu_numba_and_numpy_paths_agree_on_special_values(dtype, shape, record, rng, monkeypatch):
    """Both paths (Numba kernels for contiguous float32/64, NumPy otherwise) give the same outputs and
    gradients, NaN, +-inf and signed zeros included; a NaN or inf gradient where the mask is off gives
    NaN (gy * mask), as the product does."""
    x = _relu_inputs(rng, dtype, shape)
    gy = rng.standard_normal(shape).astype(dtype)
    gy.reshape(-1)[2:4] = [np.nan, np.inf][:max(0, gy.size - 2)]
    expected_y, expected_g = _numpy_relu(x, gy)
    results = []
    for disabled in ("0", "1"):
        monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", disabled)
        t = engine.Tensor(x.copy(), requires_grad=record)
        y = F.relu(t)
        results.append(y.data)
        if record:
            y.backward(gy)
            np.testing.assert_array_equal(t.grad, expected_g)
            assert t.grad.dtype == dtype
        np.testing.assert_array_equal(y.data, expected_y)
        assert y.data.dtype == dtype
    np.testing.assert_array_equal(results[0], results[1])


def test_relu_kernels_run_only_on_contiguous_float32_and_float64():
    from engine.kernels.elementwise import elementwise_kernels
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba (the jit extra) is not installed")
    assert elementwise_kernels(np.zeros((2, 3), np.float32)) is not None
    assert elementwise_kernels(np.zeros((2, 3), np.float64)) is not None
    assert elementwise_kernels(np.zeros((2, 3), np.float16)) is None
    assert elementwise_kernels(np.zeros((2, 3), np.int64)) is None
    assert elementwise_kernels(np.zeros((3, 2), np.float32).T) is None


@pytest.mark.parametrize("make", [lambda x: x.T, lambda x: x.astype(np.float16), lambda x: (x * 4).astype(np.int64)],
                         ids=["transposed", "float16", "int64"])
def test_relu_on_arrays_the_kernels_do_not_take(make, rng):
    x = make(rng.standard_normal((4, 3)))
    t = engine.Tensor(x, requires_grad=x.dtype.kind == "f")
    y = F.relu(t)
    np.testing.assert_array_equal(y.data, np.maximum(x, 0))
    if t.requires_grad:
        y.backward(np.ones_like(x))
        np.testing.assert_array_equal(t.grad, (x > 0).astype(x.dtype))


# ---------------------------------------------------------------- the bias folded into Linear's product
def test_bias_rides_in_product_only_for_inputs_much_narrower_than_outputs():
    from engine.ops.products import bias_rides_in_product
    assert bias_rides_in_product(2, 768) and bias_rides_in_product(2, 24) and bias_rides_in_product(32, 768)
    assert not bias_rides_in_product(2, 23) and not bias_rides_in_product(128, 512)
    assert not bias_rides_in_product(784, 300) and not bias_rides_in_product(100, 10)


@pytest.mark.parametrize("x_shape", [(5, 2), (2, 3, 2), (1, 2), (0, 2)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_with_the_bias_folded_matches_the_added_bias(x_shape, dtype, rng, monkeypatch):
    """2 -> 24 takes the fold; its result, its dtype and its gradients equal the product-then-add path's."""
    import engine.ops.products as product_ops
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, (2, 24), (24,)))
    gy = rng.standard_normal(x_shape[:-1] + (24,)).astype(dtype)
    results = []
    for fold in (True, False):
        monkeypatch.setattr(product_ops, "bias_rides_in_product", lambda n_in, n_out, fold=fold: fold)
        leaves = [engine.Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = F.linear(*leaves)
        y.backward(gy)
        results.append((y.data, *[t.grad for t in leaves]))
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    for folded, added in zip(*results):
        assert folded.dtype == added.dtype == dtype and folded.shape == added.shape
        np.testing.assert_allclose(folded, added, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(results[0][0], x @ w + b, rtol=tolerance, atol=tolerance)


def test_linear_with_the_bias_folded_passes_gradcheck(rng):
    from engine.ops.products import bias_rides_in_product
    assert bias_rides_in_product(2, 24)
    assert check(F.linear, rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 24)), rng.standard_normal(24))


@pytest.mark.parametrize("rows", [4, 1 << 12], ids=["small", "pooled"])
def test_fold_matmul_small_results_are_plain_products_and_large_ones_are_lent(rows, rng, monkeypatch):
    """Below the pool's LEND_MIN_BYTES the product is NumPy's own array; above it, a loan from the pool;
    both equal a @ b, leading axes folded and restored."""
    from engine import buffers
    from engine.ops.products import fold_matmul
    monkeypatch.delenv("COMPACTNET_DISABLE_BUFFER_POOL", raising=False)
    a = rng.standard_normal((2, rows // 2, 8)).astype(np.float32)
    b = rng.standard_normal((8, 64)).astype(np.float32)
    out = fold_matmul(a, b)
    assert out.shape == (2, rows // 2, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out, a @ b, rtol=1e-6, atol=1e-6)
    owners, owner = [], out
    while owner is not None:
        owners.append(type(owner))
        owner = getattr(owner, "base", None)
    assert (buffers._Loan in owners) == (rows * 64 * 4 >= buffers.LEND_MIN_BYTES)
