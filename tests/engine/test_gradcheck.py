"""gradcheck itself: passes correct gradients, catches a wrong backward, rejects float32."""
import numpy as np
import pytest

import engine
from engine import GradcheckError, Tensor
from engine.function import Function
from tests.engine._helpers import leaf


class SquareWithBadGradient(Function):
    """y = x**2 whose backward is wrong at one element only (so the report must name it)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        g = 2 * self.x * gy
        g.reshape(-1)[-1] *= 1.5
        return g


class ScaleWithGradientIgnoringSecondInput(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        return gy * self.b, gy * 0   # wrong: d(ab)/db is a


def test_correct_gradient_passes(rng):
    assert engine.gradcheck(lambda x, y: (x * y).sum() + x.exp().sum(), leaf(rng.standard_normal(3)),
                            leaf(rng.standard_normal(3)))
    # inputs may also be one list; constant inputs are left alone
    c = Tensor(rng.standard_normal(3))
    assert engine.gradcheck(lambda x, k: x * k, [leaf(rng.standard_normal(3)), c])


def test_wrong_backward_is_caught_and_located(rng):
    x = leaf(rng.uniform(1, 2, (2, 3)))
    with pytest.raises(GradcheckError, match=r"input 0, element \(1, 2\)"):
        engine.gradcheck(lambda t: SquareWithBadGradient()(t), x)
    assert engine.gradcheck(lambda t: SquareWithBadGradient()(t), x, raise_exception=False) is False


def test_wrong_gradient_for_second_input_is_caught():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with pytest.raises(GradcheckError, match="input 1"):
        engine.gradcheck(lambda s, t: ScaleWithGradientIgnoringSecondInput()(s, t), a, b)


def test_random_direction_check_alone_catches_a_wrong_backward(rng):
    x = leaf(rng.uniform(1, 2, (4,)))
    with pytest.raises(GradcheckError, match="random direction"):
        engine.gradcheck(lambda t: SquareWithBadGradient()(t), x, elementwise=False)


def test_float32_inputs_are_rejected():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        engine.gradcheck(lambda t: t * 2, x)


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        engine.gradcheck(lambda t: t * 2, Tensor(np.ones(3)))


def test_non_contiguous_input(rng):
    x = Tensor(np.asfortranarray(rng.standard_normal((3, 2))), requires_grad=True)
    assert engine.gradcheck(lambda t: t * t, x)


def test_inputs_restored_after_check(rng):
    data = rng.standard_normal((2, 2))
    x = leaf(data)
    engine.gradcheck(lambda t: t.tanh(), x)
    np.testing.assert_array_equal(x.data, data)
