"""Python numbers next to tensors promote as NumPy 2 does (NEP 50): int tensor + 0.5 is float64 (issue 18)."""
import operator

import numpy as np
import pytest

from engine import Tensor

OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
             "pow": operator.pow, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
REFLECTED = {"radd": operator.add, "rsub": operator.sub, "rmul": operator.mul,
             "rtruediv": operator.truediv, "rpow": operator.pow}
ARRAYS = {"int64": np.array([1, 2, 3], np.int64), "int32": np.array([1, 2, 3], np.int32),
          "uint8": np.array([1, 2, 3], np.uint8), "bool": np.array([True, False, True]),
          "float32": np.array([1.5, 2.0, 3.25], np.float32), "float64": np.array([1.5, 2.0, 3.25])}
SCALARS = [0.5, 2, True, 1.0]


def _as_numpy(value):
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _check(engine_call, numpy_call):
    with np.errstate(all="ignore"):
        try:
            expected = numpy_call()
        except TypeError:   # e.g. bool - bool: NumPy refuses, so must we
            with pytest.raises(TypeError):
                engine_call()
            return
        got = _as_numpy(engine_call())
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("kind", sorted(ARRAYS))
@pytest.mark.parametrize("scalar", SCALARS)
def test_tensor_op_scalar_matches_numpy(name, kind, scalar):
    op, a = OPERATORS[name], ARRAYS[kind]
    if name == "pow" and kind == "bool" and type(scalar) is int:
        # the one documented difference: NumPy's power has no bool loop and picks int8 for
        # bool ** 2; we promote by np.result_type (int64), as for every other operator
        _check(lambda: op(Tensor(a), scalar), lambda: op(a.astype(np.result_type(a.dtype, scalar)), scalar))
        return
    _check(lambda: op(Tensor(a), scalar), lambda: op(a, scalar))


@pytest.mark.parametrize("name", sorted(REFLECTED))
@pytest.mark.parametrize("kind", sorted(ARRAYS))
@pytest.mark.parametrize("scalar", SCALARS)
def test_scalar_op_tensor_matches_numpy(name, kind, scalar):
    op, a = REFLECTED[name], ARRAYS[kind]
    _check(lambda: op(scalar, Tensor(a)), lambda: op(scalar, a))


@pytest.mark.parametrize("kind", ["int64", "float32"])
def test_lists_of_numbers_are_weak_like_numbers(kind):
    a = ARRAYS[kind]
    got = (Tensor(a) + [0.5, 0.5, 0.5]).dtype
    assert got == np.result_type(a.dtype, 0.5)   # float32 stays float32, int64 becomes float64


def test_integer_tensor_plus_half_is_not_truncated():
    out = Tensor(np.array([1, 2], np.int64)) + 0.5
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.5]


def test_float32_parameters_stay_float32_with_python_floats():
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (w * 0.5 + 1.0) ** 2.0 / 3.0 - 0.25
    y.sum().backward()
    assert y.dtype == np.float32 and w.grad.dtype == np.float32
