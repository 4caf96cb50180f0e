"""Tests of the mode-product / Tucker-rebuild kernels (NumPy, Numba, CuPy) and the differentiable ops."""
import itertools

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import backend
from engine.kernels import tucker as kernels

CPU_IMPLS = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(not kernels.numba_available(),
                                                   reason="numba not importable or disabled")),
]


def random_tucker(rng, core_shape, full_shape, dtype=np.float64):
    core = rng.standard_normal(core_shape).astype(dtype)
    factors = [rng.standard_normal((m, k)).astype(dtype) for m, k in zip(full_shape, core_shape)]
    return core, factors


def dense_rebuild(core, factors):
    """The Tucker rebuild written as one einsum, an independent reference."""
    letters = "abcdefgh"
    out = "ijklmnop"
    spec = letters[:core.ndim] + "," + ",".join(out[i] + letters[i] for i in range(core.ndim))
    return np.einsum(spec + "->" + out[:core.ndim], core, *factors)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("core_shape,full_shape", [
    ((4, 4, 4, 4, 4), (10, 12, 14, 14, 10)),
    ((2, 3, 4), (5, 2, 6)),          # one mode grows, one shrinks
    ((3,), (7,)),
    ((1, 5, 2, 3), (4, 4, 1, 6)),
])
def test_rebuild_equals_tensorly(rng, impl, core_shape, full_shape):
    tl = pytest.importorskip("tensorly", reason="tensorly (test extra) is the oracle for the rebuild")
    core, factors = random_tucker(rng, core_shape, full_shape)
    ours = kernels.tucker_rebuild(core, factors, impl=impl)
    np.testing.assert_allclose(ours, tl.tucker_to_tensor((core, factors)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_mode_product_equals_tensorly(rng, impl, mode):
    tl = pytest.importorskip("tensorly", reason="tensorly (test extra) is the oracle for mode_dot")
    x = rng.standard_normal((3, 4, 5))
    matrix = rng.standard_normal((6, x.shape[mode]))
    ours = kernels.mode_product(x, matrix, mode, impl=impl)
    np.testing.assert_allclose(ours, tl.tenalg.mode_dot(x, matrix, mode), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float64, 1e-11)])
def test_numba_and_numpy_agree_forward_and_backward(rng, dtype, tol):
    if not kernels.numba_available():
        pytest.skip("numba not importable or disabled")
    core, factors = random_tucker(rng, (3, 2, 4, 3), (5, 6, 4, 7), dtype)
    grad = rng.standard_normal((5, 6, 4, 7)).astype(dtype)
    a = kernels.tucker_rebuild(core, factors, impl="numpy")
    b = kernels.tucker_rebuild(core, factors, impl="numba")
    assert a.dtype == b.dtype == dtype
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    ga_core, ga_f = kernels.tucker_rebuild_backward(grad, core, factors, impl="numpy")
    gb_core, gb_f = kernels.tucker_rebuild_backward(grad, core, factors, impl="numba")
    np.testing.assert_allclose(ga_core, gb_core, rtol=tol, atol=tol * 10)
    for x, y in zip(ga_f, gb_f):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_backward_matches_einsum_gradients(rng, impl):
    core, factors = random_tucker(rng, (2, 3, 2), (4, 5, 3))
    grad = rng.standard_normal((4, 5, 3))
    g_core, g_factors = kernels.tucker_rebuild_backward(grad, core, factors, impl=impl)
    np.testing.assert_allclose(g_core, np.einsum("ijk,ia,jb,kc->abc", grad, *factors), rtol=1e-10)
    expected = [np.einsum("ijk,abc,jb,kc->ia", grad, core, factors[1], factors[2]),
                np.einsum("ijk,abc,ia,kc->jb", grad, core, factors[0], factors[2]),
                np.einsum("ijk,abc,ia,jb->kc", grad, core, factors[0], factors[1])]
    for got, want in zip(g_factors, expected):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_backward_skips_unneeded_gradients(rng):
    core, factors = random_tucker(rng, (2, 2, 2, 2), (3, 4, 3, 5))
    grad = rng.standard_normal((3, 4, 3, 5))
    full_core, full_factors = kernels.tucker_rebuild_backward(grad, core, factors)
    g_core, g_factors = kernels.tucker_rebuild_backward(grad, core, factors,
                                                        needs=(False, False, True, False, False))
    assert g_core is None and g_factors[0] is None and g_factors[2] is None and g_factors[3] is None
    np.testing.assert_allclose(g_factors[1], full_factors[1])
    g_core, g_factors = kernels.tucker_rebuild_backward(grad, core, factors, needs=(True,) + (False,) * 4)
    assert all(g is None for g in g_factors)
    np.testing.assert_allclose(g_core, full_core)


def test_contraction_order_is_the_cheapest(rng):
    for _ in range(150):
        d = int(rng.integers(1, 6))
        core_shape = tuple(int(k) for k in rng.integers(1, 9, d))
        factor_shapes = [(int(m), k) for m, k in zip(rng.integers(1, 15, d), core_shape)]
        best = min(kernels.chain_flops(core_shape, factor_shapes, order)
                   for order in itertools.permutations(range(d)))
        chosen = kernels.contraction_order(core_shape, factor_shapes)
        assert kernels.chain_flops(core_shape, factor_shapes, chosen) == best


def test_execution_cost_charges_each_matrix_of_a_batched_product():
    # core 2x3x4 -> factor (5, 3) on the middle mode: 2 batched matrices (before = 2, after = 4)
    flops = 2 * 24 * 5
    assert kernels.execution_cost((2, 3, 4), [(2, 2), (5, 3), (4, 4)], (1,)) == flops + 2 * kernels.BATCHED_MATRIX_COST
    # an outer mode is one plain product: FLOPs only
    assert kernels.execution_cost((2, 3, 4), [(6, 2), (3, 3), (4, 4)], (0,)) == 2 * 24 * 6


def test_execution_order_is_the_cheapest_permutation_and_keeps_the_result(rng):
    for _ in range(40):
        d = int(rng.integers(1, 6))
        core_shape = tuple(int(k) for k in rng.integers(1, 6, d))
        factor_shapes = tuple((int(m), k) for m, k in zip(rng.integers(1, 12, d), core_shape))
        chosen = kernels.execution_order(core_shape, factor_shapes)
        assert sorted(chosen) == list(range(d))
        assert kernels.execution_cost(core_shape, factor_shapes, chosen) == min(
            kernels.execution_cost(core_shape, factor_shapes, order) for order in itertools.permutations(range(d)))
    core = rng.standard_normal((4, 4, 4, 4, 4))
    factors = [rng.standard_normal((m, 4)) for m in (10, 12, 14, 14, 10)]
    reference = np.einsum("abcde,ia,jb,kc,ld,me->ijklm", core, *factors)
    np.testing.assert_allclose(kernels.tucker_rebuild(core, factors, impl="numpy"), reference, rtol=1e-10, atol=1e-10)
    # the benchmark's shape: the FLOP-minimal order ends on a middle mode, many small batched products
    shapes = tuple(f.shape for f in factors)
    fewest_flops = kernels.contraction_order((4,) * 5, shapes)
    assert kernels.execution_order((4,) * 5, shapes) != fewest_flops


def test_chain_flops_counts_each_mode_product():
    # core 2x3, factors (4, 2) and (5, 3): mode 0 first costs 2*6*4 = 48, then 2*12*5 = 120
    assert kernels.chain_flops((2, 3), [(4, 2), (5, 3)], (0, 1)) == 2 * 2 * 3 * 4 + 2 * 4 * 3 * 5


def test_disable_numba_env_var(monkeypatch):
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    assert not kernels.numba_available()
    with pytest.raises(ValueError, match="numba"):
        kernels.tucker_rebuild(np.ones((2, 2)), [np.ones((3, 2)), np.ones((3, 2))], impl="numba")


def test_kernel_errors_name_the_problem():
    core = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"factor 1 must have shape \(m, 3\)"):
        kernels.tucker_rebuild(core, [np.ones((4, 2)), np.ones((4, 2))])
    with pytest.raises(ValueError, match="needs 2 factors, got 1"):
        kernels.tucker_rebuild(core, [np.ones((4, 2))])
    with pytest.raises(ValueError, match="unknown implementation"):
        kernels.tucker_rebuild(core, [np.ones((4, 2)), np.ones((4, 3))], impl="fortran")
    with pytest.raises(ValueError, match="needs CuPy"):
        kernels.tucker_rebuild(core, [np.ones((4, 2)), np.ones((4, 3))], impl="cupy")
    with pytest.raises(ValueError, match=r"mode_product: matrix shape \(4, 2\) needs 2 == tensor.shape\[1\]"):
        kernels.mode_product(core, np.ones((4, 2)), 1)


@pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA device")
def test_cupy_path_agrees_with_numpy(rng):
    cp = backend.require_gpu()
    core, factors = random_tucker(rng, (3, 2, 4), (5, 6, 4))
    grad = rng.standard_normal((5, 6, 4))
    gpu = kernels.tucker_rebuild(cp.asarray(core), [cp.asarray(f) for f in factors])
    np.testing.assert_allclose(cp.asnumpy(gpu), kernels.tucker_rebuild(core, factors), rtol=1e-10)
    g_core, g_f = kernels.tucker_rebuild_backward(cp.asarray(grad), cp.asarray(core),
                                                  [cp.asarray(f) for f in factors], impl="cupy")
    r_core, r_f = kernels.tucker_rebuild_backward(grad, core, factors)
    np.testing.assert_allclose(cp.asnumpy(g_core), r_core, rtol=1e-10)
    for a, b in zip(g_f, r_f):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-10)


# ---------------------------------------------------------------------------
# the differentiable ops
# ---------------------------------------------------------------------------
def test_op_tucker_to_tensor_forward_and_gradcheck(rng):
    core, factors = random_tucker(rng, (2, 3, 2), (3, 2, 4))
    core_t = engine.Tensor(core, requires_grad=True)
    factor_ts = [engine.Tensor(f, requires_grad=True) for f in factors]
    out = F.tucker_to_tensor(core_t, factor_ts)
    np.testing.assert_allclose(out.data, dense_rebuild(core, factors), rtol=1e-12)
    assert engine.gradcheck(lambda c, *fs: F.tucker_to_tensor(c, list(fs)), core_t, *factor_ts)


def test_op_tucker_gradcheck_core_only_and_one_factor(rng):
    core, factors = random_tucker(rng, (2, 2, 2), (3, 3, 2))
    core_t = engine.Tensor(core, requires_grad=True)
    fixed = [engine.Tensor(f) for f in factors]
    assert engine.gradcheck(lambda c: F.tucker_to_tensor(c, fixed), core_t)
    one = engine.Tensor(factors[1], requires_grad=True)
    assert engine.gradcheck(lambda f: F.tucker_to_tensor(engine.Tensor(core), [fixed[0], f, fixed[2]]), one)


@pytest.mark.parametrize("mode", [0, 1, -1])
def test_op_mode_product_gradcheck(rng, mode):
    x = engine.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    m = engine.Tensor(rng.standard_normal((5, x.shape[mode])), requires_grad=True)
    out = F.mode_product(x, m, mode)
    np.testing.assert_allclose(out.data, np.moveaxis(np.tensordot(m.data, x.data, axes=(1, mode)), 0, mode))
    assert engine.gradcheck(lambda a, b: F.mode_product(a, b, mode), x, m)


def test_op_errors():
    core = engine.Tensor(np.ones((2, 2)))
    with pytest.raises(TypeError, match="factors must be a list"):
        F.tucker_to_tensor(core, np.ones((3, 2)))
    with pytest.raises(TypeError, match="factor 1 has dtype float32"):
        F.tucker_to_tensor(core, [np.ones((3, 2)), np.ones((3, 2), dtype=np.float32)])
    with pytest.raises(TypeError, match="core must be floating point"):
        F.tucker_to_tensor(np.ones((2, 2), dtype=np.int64), [np.ones((3, 2)), np.ones((3, 2))])
    with pytest.raises(ValueError, match="mode 3 out of range"):
        F.mode_product(core, engine.Tensor(np.ones((2, 2))), 3)
