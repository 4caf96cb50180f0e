"""Gradient checks, behaviour and errors of Dense, Conv2d, pooling, activations, Flatten, Dropout, Embedding."""
import numpy as np
import pytest

import engine
import layers
from layers import (AvgPool2d, Conv2d, Dense, Dropout, Embedding, Flatten, LeakyReLU, MaxPool2d,
                    ReLU, Sequential, Sigmoid, Tanh)
from tests.conftest import leaf
from tests.layers._helpers import gradcheck_module


@pytest.fixture(autouse=True)
def seeded():
    engine.manual_seed(0)


def test_dense_gradcheck_and_flops(rng):
    layer = Dense(3, 2)
    x = leaf(rng.standard_normal((4, 3)))
    assert gradcheck_module(layer, x)
    y = layer(x)
    assert layer.flops((x,), y) == 4 * 2 * (2 * 3 + 1)
    assert Dense(3, 2, bias=False).flops((x,), y) == 4 * 2 * 2 * 3


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                dict(groups=2, bias=False)])
def test_conv2d_gradcheck(rng, kw):
    layer = Conv2d(2, 4, 3, **kw)
    x = leaf(rng.standard_normal((2, 2, 5, 5)))
    assert gradcheck_module(layer, x)


def test_conv2d_layout_init_and_flops(rng):
    layer = Conv2d(4, 6, (3, 2), groups=2)
    assert layer.weight.shape == (6, 2, 3, 2) and layer.bias.shape == (6,)
    bound = 1 / np.sqrt(2 * 3 * 2)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 6, 3, 4)
    assert layer.flops((x,), y) == y.size * (2 * 2 * 3 * 2 + 1)
    # equals a direct sum over the window for one output
    w, b = layer.weight.data, layer.bias.data
    direct = (x[1, 2:4, 1:4, 2:4] * w[3]).sum() + b[3]
    np.testing.assert_allclose(y.data[1, 3, 1, 2], direct, rtol=1e-5)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pool_gradcheck_and_values(rng, cls):
    layer = cls(2)
    x = leaf(rng.standard_normal((1, 2, 4, 4)))
    assert gradcheck_module(layer, x)
    y = layer(x)
    windows = x.data.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 2, 4)
    expected = windows.max(-1) if cls is MaxPool2d else windows.mean(-1)
    np.testing.assert_allclose(y.data, expected)
    assert layer.flops((x,), y) == y.size * 4
    assert cls(3, stride=1, padding=1)(x).shape == (1, 2, 4, 4)


@pytest.mark.parametrize("cls,ref", [(ReLU, lambda a: np.maximum(a, 0)), (Tanh, np.tanh),
                                     (Sigmoid, lambda a: 1 / (1 + np.exp(-a))),
                                     (LeakyReLU, lambda a: np.where(a > 0, a, 0.01 * a))])
def test_activation_gradcheck_and_values(rng, cls, ref):
    layer = cls()
    x = leaf(rng.standard_normal((3, 4)) + 0.05)  # keep away from ReLU's kink at 0
    assert gradcheck_module(layer, x)
    y = layer(x)
    np.testing.assert_allclose(y.data, ref(x.data), rtol=1e-12)
    assert layer.flops((x,), y) == 12


def test_flatten_gradcheck(rng):
    layer = Flatten()
    x = leaf(rng.standard_normal((2, 2, 3)))
    assert gradcheck_module(layer, x)
    assert layer(x).shape == (2, 6)
    with pytest.raises(ValueError, match="Flatten"):
        layer(np.ones(3))


def test_dropout_train_and_eval(rng):
    layer = Dropout(0.5)
    x = leaf(rng.standard_normal((20, 30)))

    def seeded_call(a):
        engine.manual_seed(1)  # the same mask on every call, so finite differences make sense
        return layer(a)

    assert gradcheck_module(layer, leaf(rng.standard_normal((3, 4))), call=seeded_call)
    y = layer(x).data
    dropped = y == 0
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(y[~dropped], 2 * x.data[~dropped])
    layer.eval()
    assert np.array_equal(layer(x).data, x.data)
    with pytest.raises(ValueError, match="Dropout"):
        Dropout(1.0)


def test_embedding_gradcheck_and_errors(rng):
    layer = Embedding(5, 3)
    idx = np.array([[0, 4, 4], [2, 1, 0]])
    assert gradcheck_module(layer, idx, call=lambda i: layer(i))
    y = layer(idx)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y.data[0, 1], layer.weight.data[4])
    assert layer.flops((idx,), y) == 0
    with pytest.raises(TypeError, match="Embedding.*integer"):
        layer(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"Embedding.*\[0, 5\).*\[0, 7\]"):
        layer(np.array([0, 7]))


@pytest.mark.parametrize("make,bad,pattern", [
    (lambda: Dense(3, 2), np.ones((4, 5), np.float32), r"Dense.*size 3.*\(4, 5\)"),
    (lambda: Dense(3, 2), np.ones(3, np.float32), r"Dense.*2-D or 3-D.*\(3,\)"),
    (lambda: Conv2d(3, 2, 3), np.ones((1, 2, 5, 5), np.float32), r"Conv2d.*size 3.*\(1, 2, 5, 5\)"),
    (lambda: Conv2d(1, 2, 3), np.ones((1, 5, 5), np.float32), r"Conv2d.*4-D.*\(1, 5, 5\)"),
    (lambda: MaxPool2d(2), np.ones((2, 4), np.float32), r"MaxPool2d.*4-D.*\(2, 4\)"),
    (lambda: Conv2d(1, 2, 3), np.ones((1, 1, 5, 5), np.int64), r"Conv2d.*floating.*int64"),
])
def test_bad_input_errors_name_layer_expected_actual(make, bad, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        make()(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="Conv2d.*groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2d.*in_ch"):
        Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="MaxPool2d"):
        MaxPool2d(0)


def test_exports_everything():
    for name in ["Module", "Sequential", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten",
                 "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "Dropout", "BatchNorm1d", "BatchNorm2d",
                 "Embedding", "GRUCell", "LSTMCell", "GRU", "LSTM", "ModuleList"]:
        assert isinstance(getattr(layers, name), type), name


def test_sequential_float32_training_step(rng):
    model = Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Dense(2 * 4 * 4, 3))
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    loss = engine.ops.cross_entropy(model(x), labels)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())
