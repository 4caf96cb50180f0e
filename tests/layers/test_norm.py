"""BatchNorm1d/2d: gradient checks, batch statistics in training, running statistics in eval."""
import numpy as np
import pytest

from layers import BatchNorm1d, BatchNorm2d
from tests.conftest import leaf
from tests.layers._helpers import gradcheck_module


@pytest.mark.parametrize("make,shape", [(lambda: BatchNorm1d(3), (4, 3)),
                                        (lambda: BatchNorm1d(2), (3, 2, 2)),
                                        (lambda: BatchNorm2d(2), (2, 2, 2, 2))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(rng, make, shape, training):
    layer = make()
    layer.train(training)
    layer.weight.data = rng.uniform(0.5, 1.5, layer.weight.shape)
    layer.bias.data = rng.standard_normal(layer.bias.shape)
    layer.running_mean = rng.standard_normal(layer.running_mean.shape)
    layer.running_var = rng.uniform(0.5, 2.0, layer.running_var.shape)
    x = leaf(rng.standard_normal(shape))
    assert gradcheck_module(layer, x)


def test_batchnorm2d_training_statistics_and_running_update(rng):
    layer = BatchNorm2d(3)
    layer.weight.data[:] = [1.0, 2.0, 0.5]
    layer.bias.data[:] = [0.0, -1.0, 3.0]
    x = (rng.standard_normal((4, 3, 5, 5)) * 3 + 2).astype(np.float32)
    y = layer(x).data
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    expected = ((x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
                * layer.weight.data[None, :, None, None] + layer.bias.data[None, :, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    n = 4 * 5 * 5
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert layer.running_mean.dtype == np.float32
    assert layer.flops((x,), layer(x)) == x.size * 7


def test_batchnorm1d_eval_uses_running_statistics(rng):
    layer = BatchNorm1d(2)
    for _ in range(30):  # running stats converge towards the data's statistics
        layer(rng.standard_normal((64, 2)).astype(np.float32) * [1.0, 4.0] + [5.0, -2.0])
    layer.eval()
    x = rng.standard_normal((3, 2)).astype(np.float32)
    before = (layer.running_mean.copy(), layer.running_var.copy())
    y = layer(x).data
    expected = (x - layer.running_mean) / np.sqrt(layer.running_var + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.running_mean, before[0])  # eval leaves them alone
    np.testing.assert_allclose(layer.running_mean, [5.0, -2.0], atol=0.5)
    np.testing.assert_allclose(layer.running_var, [1.0, 16.0], rtol=0.3)
    assert layer.flops((x,), layer(x)) == x.size * 2
    # a single example per channel is fine in eval but not in training
    assert layer(x[:1]).shape == (1, 2)
    layer.train()
    with pytest.raises(ValueError, match="BatchNorm1d.*more than one value"):
        layer(x[:1])


def test_batchnorm_state_dict_holds_buffers(rng):
    layer = BatchNorm2d(2)
    layer(rng.standard_normal((3, 2, 2, 2)).astype(np.float32))
    state = layer.state_dict()
    assert set(state) == {"weight", "bias", "running_mean", "running_var"}
    other = BatchNorm2d(2)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.running_var, layer.running_var)
    with pytest.raises(ValueError, match="running_mean.*\\(3,\\).*\\(2,\\)"):
        other.load_state_dict({**state, "running_mean": np.zeros(3, np.float32)})


def test_batchnorm_bad_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d.*size 3.*\(2, 4, 2, 2\)"):
        BatchNorm2d(3)(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*2-D or 3-D.*\(2, 3, 2, 2\)"):
        BatchNorm1d(3)(np.ones((2, 3, 2, 2), np.float32))
