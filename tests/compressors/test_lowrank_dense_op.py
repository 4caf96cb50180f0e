"""LowRankDense runs its two factors as one op (F.low_rank_linear), and as its two Dense layers while a
hook watches one of them."""
import numpy as np
import pytest

import engine
from engine.hooks import TimerHook
from compressors.lowrank import LowRankDense
from layers import Dense


def _op_calls(fn):
    timer = TimerHook()
    with timer:
        fn()
    return dict(timer.calls)


def test_low_rank_dense_runs_one_op_and_gives_the_two_layers_result(rng):
    layer = LowRankDense.from_dense(Dense(12, 9), rank=3)
    x = engine.Tensor(rng.standard_normal((7, 12)).astype(np.float32))
    expected = layer.second(layer.first(x)).data
    assert _op_calls(lambda: layer(x)) == {"LowRankLinear": 1}
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"LowRankDense: expected input size 12"):
        layer(engine.Tensor(np.zeros((2, 11), np.float32)))


def test_a_hook_on_a_factor_sees_its_call(rng):
    layer = LowRankDense.from_dense(Dense(12, 9), rank=3)
    seen = []
    remove = layer.first.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    x = engine.Tensor(rng.standard_normal((7, 12)).astype(np.float32))
    assert _op_calls(lambda: layer(x)) == {"Linear": 2}
    assert seen == [(7, 3)]
    remove()
    assert _op_calls(lambda: layer(x)) == {"LowRankLinear": 1}
