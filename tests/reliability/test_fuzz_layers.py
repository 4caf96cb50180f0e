"""Fuzzing the layers: drawn shapes, dtypes and values give the right output shape or an error naming the layer."""
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis (the test extra)")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import engine  # noqa: E402
import layers  # noqa: E402
from engine import Tensor  # noqa: E402
from hypothesis import settings  # noqa: E402
from tests.reliability._fuzz import EXAMPLES, FUZZ, DTYPES, arrays, engine_call  # noqa: E402

FUZZ_LAYERS = settings(FUZZ, max_examples=max(1, EXAMPLES * 3 // 5))


def _float(shape, dtype):
    return np.dtype(dtype).kind == "f" and min(shape, default=1) > 0


def _dense_shape(n_in, n_out):
    def shape(s, dtype):
        ok = len(s) in (2, 3) and s[-1] == n_in and _float(s, dtype)
        return s[:-1] + (n_out,) if ok else None
    return shape


def _conv_shape(c, n, k, pad):
    def shape(s, dtype):
        if len(s) != 4 or s[1] != c or not _float(s, dtype):
            return None
        oh, ow = s[2] + 2 * pad - k + 1, s[3] + 2 * pad - k + 1
        return (s[0], n, oh, ow) if oh > 0 and ow > 0 else None
    return shape


def _pool_shape(s, dtype):
    if len(s) != 4 or not _float(s, dtype) or s[2] < 2 or s[3] < 2:
        return None
    return s[:2] + (s[2] // 2, s[3] // 2)


def _norm_shape(c, ranks):
    def shape(s, dtype, training=True):
        # training statistics need two values per channel; eval mode uses the running ones
        ok = len(s) in ranks and s[1] == c and _float(s, dtype) and (not training or np.prod(s) // c >= 2)
        return s if ok else None
    return shape


def _rnn_shape(n_in, hidden):
    def shape(s, dtype):
        return s[:2] + (hidden,) if len(s) == 3 and s[2] == n_in and _float(s, dtype) else None
    return shape


def _wavelet_shape(s, dtype):
    return s if len(s) in (2, 3) and s[-1] == 4 and _float(s, dtype) and dtype == np.float32 else None


def _layer_table():
    table = {
        "Dense": (lambda: layers.Dense(3, 2), _dense_shape(3, 2)),
        "Conv2d": (lambda: layers.Conv2d(2, 3, 2, padding=1), _conv_shape(2, 3, 2, 1)),
        "MaxPool2d": (lambda: layers.MaxPool2d(2), _pool_shape),
        "AvgPool2d": (lambda: layers.AvgPool2d(2), _pool_shape),
        "BatchNorm1d": (lambda: layers.BatchNorm1d(2), _norm_shape(2, (2, 3))),
        "BatchNorm2d": (lambda: layers.BatchNorm2d(2), _norm_shape(2, (4,))),
        "GRU": (lambda: layers.GRU(2, 3), _rnn_shape(2, 3)),
        "LSTM": (lambda: layers.LSTM(2, 3), _rnn_shape(2, 3)),
    }
    try:
        from compressors.wavelet import WaveletLinear
        table["WaveletLinear"] = (lambda: WaveletLinear(4, 1, 2), _wavelet_shape)
    except ImportError:
        pass
    try:
        from compressors.tucker import TuckerConv2d, TuckerDense
        table["TuckerDense"] = (lambda: TuckerDense(3, 2, ranks=1, order=2), _dense_shape(3, 2))
        table["TuckerConv2d"] = (lambda: TuckerConv2d(2, 3, 2, ranks=1, order=2, padding=1), _conv_shape(2, 3, 2, 1))
    except ImportError:
        pass
    try:
        from compressors.basis import BasisConv2d
        table["BasisConv2d"] = (lambda: BasisConv2d(2, 3, 2, num_basis=2, padding=1), _conv_shape(2, 3, 2, 1))
    except ImportError:
        pass
    return table


LAYERS = _layer_table()
INPUT_SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)


@pytest.mark.parametrize("name", sorted(LAYERS))
@FUZZ_LAYERS
@given(data=st.data(), training=st.booleans())
def test_layer_shape_or_clear_error(name, data, training):
    """Output shape as the layer's contract says, finite for finite input; otherwise an error naming the layer."""
    factory, expected_shape = LAYERS[name]
    dtype = data.draw(st.sampled_from(DTYPES))
    # near-valid shapes most of the time, so the valid path is exercised too
    valid_like = {"Dense": (2, 3), "TuckerDense": (2, 3), "WaveletLinear": (2, 4), "GRU": (2, 2, 2),
                  "LSTM": (2, 2, 2), "BatchNorm1d": (3, 2)}.get(name, (1, 2, 3, 3))
    shape = data.draw(st.just(valid_like) | INPUT_SHAPES
                      | hnp.array_shapes(min_dims=len(valid_like), max_dims=len(valid_like), min_side=0,
                                         max_side=4))
    x = data.draw(arrays(dtype, shape, special=False, bound=100.0))
    engine.manual_seed(0)
    layer = factory()
    layer.train(training)
    out = engine_call(lambda: layer(Tensor(x)))
    if name.startswith("BatchNorm"):
        want = expected_shape(tuple(x.shape), x.dtype.type, training)
    else:
        want = expected_shape(tuple(x.shape), x.dtype.type)
    if out is None:
        assert want is None, f"{name} rejected a valid input of shape {x.shape} and dtype {x.dtype}"
        return
    out = out[0] if isinstance(out, tuple) else out
    assert want is not None, f"{name} accepted input of shape {x.shape} and dtype {x.dtype}"
    assert out.shape == want, f"{name}: output shape {out.shape}, expected {want}"
    assert np.isfinite(out.data).all(), f"{name}: non-finite output for finite input"
    if name == "Dense":
        w, b = layer.weight.data, layer.bias.data
        np.testing.assert_allclose(out.data, x @ w + b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(LAYERS))
@FUZZ_LAYERS
@given(data=st.data())
def test_layer_error_names_the_layer(name, data):
    """Any rejected input is rejected with the layer's (or its op's) name in the message."""
    factory, _ = LAYERS[name]
    dtype = data.draw(st.sampled_from(DTYPES))
    x = data.draw(arrays(dtype, INPUT_SHAPES, special=False, bound=10.0))
    engine.manual_seed(0)
    layer = factory()
    try:
        out = layer(Tensor(x))
    except (ValueError, TypeError) as e:
        op = {"MaxPool2d": "max_pool2d", "AvgPool2d": "avg_pool2d"}.get(name, "conv2d")
        assert str(e).startswith(name + ":") or str(e).startswith(op + ":"), str(e)
        assert str(tuple(x.shape)) in str(e) or str(x.dtype) in str(e) or str(tuple(x.shape[2:])) in str(e), str(e)
        return
    except Exception as e:
        pytest.fail(f"{name} raised {type(e).__name__} (not ValueError/TypeError): {e}")
    assert isinstance(out[0] if isinstance(out, tuple) else out, Tensor)


@pytest.mark.parametrize("name", ["Dense", "Conv2d", "GRU", "BatchNorm2d"])
@FUZZ_LAYERS
@given(data=st.data())
def test_nan_and_inf_propagate_without_crashing(name, data):
    """NaN/Inf in a valid-shaped input never raise or crash; the output keeps the contract's shape."""
    factory, expected_shape = LAYERS[name]
    shape = {"Dense": (2, 3), "Conv2d": (1, 2, 3, 3), "GRU": (2, 2, 2), "BatchNorm2d": (2, 2, 2, 2)}[name]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(arrays(dtype, shape, special=True))
    engine.manual_seed(0)
    out = engine_call(lambda: factory()(Tensor(x)))
    assert out is not None, f"{name} raised on a valid-shaped input with special values"
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == expected_shape(shape, dtype)
