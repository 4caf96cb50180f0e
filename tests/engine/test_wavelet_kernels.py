"""Tests of the fast wavelet transform kernels and the differentiable fwt/ifwt ops (oracle: PyWavelets)."""
import warnings

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import backend
from engine.kernels import wavelet as K
from engine.ops.wavelet import fwt_packed, ifwt_packed, permute_last

from ._helpers import leaf

IMPLS = [pytest.param("numpy"),
         pytest.param("numba", marks=pytest.mark.skipif(not K.numba_available(),
                                                        reason="numba not importable or disabled"))]


def _wavelet(name):
    pywt = pytest.importorskip("pywt", reason="PyWavelets (test extra) is the oracle")
    return pywt, pywt.Wavelet(name)


def _bank(w, dtype=np.float64):
    return [np.asarray(getattr(w, k), dtype=dtype) for k in ("dec_lo", "dec_hi", "rec_lo", "rec_hi")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["haar", "db2", "db3", "sym4", "coif1", "bior2.2"])
@pytest.mark.parametrize("n", [1, 5, 8, 13, 32])
def test_fwt_and_ifwt_match_pywavelets(impl, name, n):
    pywt, w = _wavelet(name)
    dec_lo, dec_hi, rec_lo, rec_hi = _bank(w)
    x = np.random.default_rng(n).standard_normal((3, n))
    for levels in (1, 2, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pywt warns when levels exceed its dwt_max_level
            expected = pywt.wavedec(x, w, mode="zero", level=levels)
            expected_rec = pywt.waverec(expected, w, mode="zero")
        ours = K.fwt(x, dec_lo, dec_hi, levels, impl=impl)
        assert [c.shape for c in ours] == [c.shape for c in expected]
        for a, b in zip(ours, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        rec = K.ifwt(expected, rec_lo, rec_hi, impl=impl)
        np.testing.assert_allclose(rec, expected_rec, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["haar", "db4", "sym5"])
@pytest.mark.parametrize("n", [6, 11, 64, 100])
def test_ifwt_with_lengths_reconstructs_exactly(impl, name, n):
    _, w = _wavelet(name)
    dec_lo, dec_hi, rec_lo, rec_hi = _bank(w)
    x = np.random.default_rng(1).standard_normal((2, 4, n))
    levels = 3
    coeffs = K.fwt(x, dec_lo, dec_hi, levels, impl=impl)
    lengths = K.signal_lengths(n, len(dec_lo), levels)[:-1]
    y = K.ifwt(coeffs, rec_lo, rec_hi, lengths=lengths, impl=impl)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-10)


def test_coefficient_lengths_follow_the_spec():
    # a level maps m to floor((m + L - 1) / 2); output order [cA_J, cD_J, ..., cD_1]
    assert K.signal_lengths(512, 6, 3) == [512, 258, 131, 68]
    assert K.coefficient_lengths(512, 6, 3) == [68, 68, 131, 258]
    x = np.zeros((1, 512))
    shapes = [c.shape[-1] for c in K.fwt(x, np.ones(6), np.ones(6), 3, impl="numpy")]
    assert shapes == K.coefficient_lengths(512, 6, 3)


def _random_case(dtype, n=37, levels=3, filter_length=5, batch=(4,)):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(batch + (n,)).astype(dtype)
    filters = [rng.standard_normal(filter_length).astype(dtype) for _ in range(4)]
    return x, filters, levels


def _all_kernel_outputs(impl, dtype):
    """Forward and backward results of every multi-level kernel for one random case."""
    x, (dl, dh, rl, rh), levels = _random_case(dtype)
    coeffs, inputs = K.fwt(x, dl, dh, levels, impl=impl, return_inputs=True)
    gx, gdl, gdh = K.fwt_backward(coeffs, inputs, dl, dh, impl=impl)
    lengths = K.signal_lengths(x.shape[-1], len(dl), levels)[:-1]
    y, syn_inputs = K.ifwt(coeffs, rl, rh, lengths=lengths, impl=impl, return_inputs=True)
    gc, grl, grh = K.ifwt_backward(y, syn_inputs, rl, rh, impl=impl)
    return list(coeffs) + [gx, gdl, gdh, y] + list(gc) + [grl, grh]


@pytest.mark.skipif(not K.numba_available(), reason="numba not importable or disabled")
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_numba_and_numpy_kernels_agree(dtype, tol):
    ours = _all_kernel_outputs("numba", dtype)
    ref = _all_kernel_outputs("numpy", dtype)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


@pytest.mark.skipif(not K.numba_available(), reason="numba not importable or disabled")
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("n, L, levels", [(37, 5, 3), (16, 2, 4), (9, 4, 1), (130, 6, 6), (64, 3, 3)])
@pytest.mark.parametrize("parallel", [False, True])
def test_fused_numba_packed_transforms_agree_with_numpy(monkeypatch, dtype, tol, n, L, levels, parallel):
    # the dispatcher picks the serial or the parallel copy of each kernel by work; force each
    monkeypatch.setattr(engine.kernels, "PARALLEL_MIN_WORK", 0 if parallel else 10 ** 12)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 3, n)).astype(dtype)
    filters = [rng.standard_normal(L).astype(dtype) for _ in range(4)]
    sizes = K.coefficient_lengths(n, L, levels)
    lengths = K.signal_lengths(n, L, levels)[:-1]
    g = rng.standard_normal((2, 3, sum(sizes))).astype(dtype)
    results = {}
    for impl in ("numpy", "numba"):
        packed, state = K.fwt_packed(x, filters[0], filters[1], levels, impl)
        back = K.fwt_packed_backward(g, state, filters[0], filters[1], impl=impl)
        y, state2 = K.ifwt_packed(g, filters[2], filters[3], sizes, lengths, impl)
        back2 = K.ifwt_packed_backward(x, state2, filters[2], filters[3], impl=impl)
        results[impl] = [packed, *back, y, *back2]
        assert state[0] == state2[0] == ("fused" if impl == "numba" else "levels")
    for a, b in zip(results["numpy"], results["numba"]):
        assert a.shape == b.shape and a.dtype == b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, float(np.abs(a).max())))


@pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_cupy_and_numpy_kernels_agree(dtype, tol):
    import cupy
    x, (dl, dh, rl, rh), levels = _random_case(dtype)
    gpu = [cupy.asarray(a) for a in (x, dl, dh, rl, rh)]
    coeffs = K.fwt(gpu[0], gpu[1], gpu[2], levels)
    assert K.implementation(gpu[0]) == "cupy"
    ref = K.fwt(x, dl, dh, levels, impl="numpy")
    for a, b in zip(coeffs, ref):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=tol, atol=tol * 10)
    y = K.ifwt(coeffs, gpu[3], gpu[4])
    np.testing.assert_allclose(cupy.asnumpy(y), K.ifwt(ref, rl, rh, impl="numpy"), rtol=tol, atol=tol * 10)


def test_disable_numba_env_forces_numpy(monkeypatch):
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    assert not K.numba_available()
    assert K.implementation(np.zeros(3)) == "numpy"
    with pytest.raises(RuntimeError, match="numba"):
        K.implementation(np.zeros(3), "numba")


# ---------------------------------------------------------------- differentiable ops
@pytest.mark.parametrize("impl", IMPLS)
def test_fwt_op_gradcheck_signal_and_filters(impl):
    rng = np.random.default_rng(3)
    x, lo, hi = leaf(rng.standard_normal((2, 11))), leaf(rng.standard_normal(4)), leaf(rng.standard_normal(4))

    def fn(x, lo, hi):
        coeffs = F.fwt(x, lo, hi, 2, impl=impl)
        return F.concat(coeffs, axis=-1)

    assert engine.gradcheck(fn, x, lo, hi)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("use_lengths", [False, True])
def test_ifwt_op_gradcheck_coefficients_and_filters(impl, use_lengths):
    rng = np.random.default_rng(4)
    n, L, levels = 9, 4, 2
    sizes = K.coefficient_lengths(n, L, levels)
    coeffs = [leaf(rng.standard_normal((2, s))) for s in sizes]
    lo, hi = leaf(rng.standard_normal(L)), leaf(rng.standard_normal(L))
    lengths = K.signal_lengths(n, L, levels)[:-1] if use_lengths else None

    def fn(*args):
        return F.ifwt(list(args[:-2]), args[-2], args[-1], lengths=lengths, impl=impl)

    assert engine.gradcheck(fn, *coeffs, lo, hi)
    if use_lengths:
        assert fn(*coeffs, lo, hi).shape == (2, n)


@pytest.mark.parametrize("impl", IMPLS)
def test_packed_ops_and_permutation_gradcheck(impl):
    rng = np.random.default_rng(5)
    n, L, levels = 10, 3, 2
    sizes = K.coefficient_lengths(n, L, levels)
    lengths = K.signal_lengths(n, L, levels)[:-1]
    perm = rng.permutation(sum(sizes))
    x = leaf(rng.standard_normal((2, 3, n)))
    filters = [leaf(rng.standard_normal(L)) for _ in range(4)]

    def fn(x, dl, dh, rl, rh):
        c = permute_last(fwt_packed(x, dl, dh, levels, impl=impl), perm)
        return ifwt_packed(c * 1.5, rl, rh, sizes, lengths, impl=impl)

    assert engine.gradcheck(fn, x, *filters)


def test_packed_fwt_equals_concatenated_fwt():
    rng = np.random.default_rng(6)
    x, lo, hi = rng.standard_normal((3, 20)), rng.standard_normal(6), rng.standard_normal(6)
    packed = fwt_packed(x, lo, hi, 3).data
    bands = [c.data for c in F.fwt(x, lo, hi, 3)]
    np.testing.assert_allclose(packed, np.concatenate(bands, axis=-1))


def test_op_errors_name_the_function():
    x, f = np.zeros((2, 8)), np.ones(4)
    with pytest.raises(ValueError, match="fwt: levels"):
        F.fwt(x, f, f, 0)
    with pytest.raises(ValueError, match="fwt: the two filters"):
        F.fwt(x, f, np.ones(3), 1)
    with pytest.raises(ValueError, match="length >= 2"):
        F.fwt(x, np.ones(1), np.ones(1), 1)
    with pytest.raises(TypeError, match="dtype"):
        F.fwt(x.astype(np.float32), f, f, 1)
    coeffs = F.fwt(x, f, f, 2)
    with pytest.raises(ValueError, match="inconsistent"):
        F.ifwt([coeffs[0], coeffs[2], coeffs[1]], f, f)
    with pytest.raises(ValueError, match="at least 2"):
        F.ifwt([coeffs[0]], f, f)
    with pytest.raises(ValueError, match="permute_last"):
        permute_last(x, np.arange(5))
