"""Bad input to every layer and loss: ValueError/TypeError naming the layer, the expected and the actual."""
import re

import numpy as np
import pytest

import engine
import engine.ops as F
import layers
from engine import Tensor


def _compressed():
    """The compressed layers, imported lazily so a compressor still being written skips only its cases."""
    made = {}
    try:
        from compressors.tucker import TuckerConv2d, TuckerDense
        made["TuckerDense"] = lambda: TuckerDense(4, 6, ranks=2, order=2)
        made["TuckerConv2d"] = lambda: TuckerConv2d(2, 4, 3, ranks=2, order=2, padding=1)
    except ImportError:
        pass
    try:
        from compressors.wavelet import WaveletLinear
        made["WaveletLinear"] = lambda: WaveletLinear(4, 1, 2)
    except ImportError:
        pass
    try:
        from compressors.basis import BasisConv2d
        made["BasisConv2d"] = lambda: BasisConv2d(2, 3, 3, num_basis=2, padding=1)
    except ImportError:
        pass
    return made


FACTORIES = {
    "Dense": lambda: layers.Dense(4, 3),
    "Conv2d": lambda: layers.Conv2d(2, 3, 3, padding=1),
    "MaxPool2d": lambda: layers.MaxPool2d(2),
    "AvgPool2d": lambda: layers.AvgPool2d(2),
    "BatchNorm1d": lambda: layers.BatchNorm1d(2),
    "BatchNorm2d": lambda: layers.BatchNorm2d(2),
    "GRU": lambda: layers.GRU(4, 3),
    "LSTM": lambda: layers.LSTM(4, 3),
    "GRUCell": lambda: layers.GRUCell(4, 3),
    "LSTMCell": lambda: layers.LSTMCell(4, 3),
    **_compressed(),
}
# per layer: a good input shape, a wrong-rank shape with the rank words expected in the message,
# and (when the layer has a fixed feature axis) a wrong feature size with the size expected
CASES = {
    "Dense": ((2, 4), (4,), "2-D or 3-D", (2, 5), "size 4"),
    "Conv2d": ((1, 2, 5, 5), (2, 5, 5), "4-D", (1, 3, 5, 5), "size 2"),
    "MaxPool2d": ((1, 2, 4, 4), (2, 4, 4), "4-D", None, None),
    "AvgPool2d": ((1, 2, 4, 4), (1, 2, 4, 4, 1), "4-D", None, None),
    "BatchNorm1d": ((3, 2), (3, 2, 4, 4), "2-D or 3-D", (3, 5), "size 2"),
    "BatchNorm2d": ((3, 2, 2, 2), (3, 2), "4-D", (3, 4, 2, 2), "size 2"),
    "GRU": ((2, 5, 4), (5, 4), "3-D", (2, 5, 6), "size 4"),
    "LSTM": ((2, 5, 4), (2, 5, 4, 1), "3-D", (2, 5, 3), "size 4"),
    "GRUCell": ((2, 4), (2, 5, 4), "2-D", (2, 6), "size 4"),
    "LSTMCell": ((2, 4), (4,), "2-D", (2, 6), "size 4"),
    "TuckerDense": ((2, 4), (4,), "2-D or 3-D", (2, 5), "size 4"),
    "TuckerConv2d": ((1, 2, 5, 5), (2, 5, 5), "4-D", (1, 3, 5, 5), "size 2"),
    "WaveletLinear": ((2, 4), (4,), "2-D or 3-D", (2, 8), "size 4"),
    "BasisConv2d": ((1, 2, 5, 5), (5, 5), "4-D", (1, 4, 5, 5), "size 2"),
}
NAMES = [n for n in CASES if n in FACTORIES]


def _make(name):
    engine.manual_seed(0)
    return FACTORIES[name]()


def _x(shape, dtype=np.float32):
    return Tensor(np.ones(shape, dtype=dtype))


def _raises(layer, x, kind):
    with pytest.raises(kind) as info:
        layer(x)
    return str(info.value)


def test_every_listed_layer_is_covered():
    """The compressed layers the brief names exist and are in the table (none skipped silently)."""
    assert set(CASES) <= set(FACTORIES), f"missing layers: {set(CASES) - set(FACTORIES)}"


@pytest.mark.parametrize("name", NAMES)
def test_good_input_works(name):
    """The reference inputs of the table are valid, so the failures below are due to the change alone."""
    good = CASES[name][0]
    out = _make(name)(_x(good))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[0] == good[0] and np.isfinite(out.data).all()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_rank_names_layer_expected_actual(name):
    _, bad_rank, words, _, _ = CASES[name]
    msg = _raises(_make(name), _x(bad_rank), ValueError)
    assert msg.startswith(name + ":"), msg
    assert words in msg and str(bad_rank) in msg, msg


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n][3] is not None])
def test_wrong_feature_size_names_layer_expected_actual(name):
    _, _, _, bad_size, words = CASES[name]
    msg = _raises(_make(name), _x(bad_size), ValueError)
    assert msg.startswith(name + ":") and words in msg and str(bad_size) in msg, msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_wrong_dtype_is_type_error(name, dtype):
    good = CASES[name][0]
    msg = _raises(_make(name), _x(good, dtype), TypeError)
    assert msg.startswith(name + ":") and "floating-point" in msg and np.dtype(dtype).name in msg, msg


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    good = CASES[name][0]
    empty = (0,) + good[1:]
    msg = _raises(_make(name), _x(empty), ValueError)
    assert msg.startswith(name + ":") and "empty" in msg and str(empty) in msg, msg


def test_wavelet_layer_refuses_other_float_dtype():
    if "WaveletLinear" not in FACTORIES:
        pytest.skip("compressors.wavelet does not import")
    msg = _raises(_make("WaveletLinear"), _x((2, 4), np.float64), TypeError)
    assert "WaveletLinear" in msg and "float64" in msg and "float32" in msg


@pytest.mark.parametrize("layer, shape, words", [
    (lambda: layers.Conv2d(2, 3, 5), (1, 2, 3, 3), "does not fit"),        # kernel larger than the image
    (lambda: layers.MaxPool2d(3), (1, 2, 2, 2), "does not fit"),
    (lambda: layers.BatchNorm1d(2), (1, 2), "more than one value"),        # training statistics of one value
])
def test_geometry_that_cannot_work(layer, shape, words):
    engine.manual_seed(0)
    msg = _raises(layer(), _x(shape), ValueError)
    assert words in msg and str(shape[2:] if len(shape) == 4 else shape) in msg, msg


def test_recurrent_initial_state_shape():
    engine.manual_seed(0)
    gru, lstm = layers.GRU(4, 3, num_layers=2), layers.LSTM(4, 3)
    msg = _raises(lambda x: gru(x, np.zeros((1, 2, 3), np.float32)), _x((2, 5, 4)), ValueError)
    assert "GRU" in msg and "(2, 2, 3)" in msg and "(1, 2, 3)" in msg, msg
    msg = _raises(lambda x: lstm(x, np.zeros((1, 2, 3), np.float32)), _x((2, 5, 4)), ValueError)
    assert "LSTM" in msg and "(h0, c0)" in msg, msg


# ---------------------------------------------------------------- embedding and labels
def test_embedding_bad_indices():
    engine.manual_seed(0)
    emb = layers.Embedding(10, 4)
    assert "Embedding" in _raises(emb, np.array([[1.0, 2.0]]), TypeError)
    msg = _raises(emb, np.array([[1, 10]]), ValueError)
    assert "Embedding" in msg and "[0, 10)" in msg and "10]" in msg, msg
    msg = _raises(emb, np.array([-1, 3]), ValueError)
    assert "[-1, 3]" in msg, msg
    assert "empty" in _raises(emb, np.zeros((2, 0), np.int64), ValueError)


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 3]), "[0, 3)"),                # one past the last class
    (np.array([-1, 2]), "[-1, 2]"),              # negative
])
def test_labels_out_of_range(labels, words):
    logits = Tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="cross_entropy") as info:
        F.cross_entropy(logits, labels)
    assert words in str(info.value)


def test_label_dtype_and_shape():
    logits = Tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=re.escape("(3,)")):
        F.cross_entropy(logits, np.array([0, 1, 2]))


def test_empty_batches_in_losses():
    with pytest.raises(ValueError, match="empty"):
        F.cross_entropy(Tensor(np.zeros((0, 3), np.float32)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="empty"):
        F.mse_loss(Tensor(np.zeros((0, 2))), Tensor(np.zeros((0, 2))))


# ---------------------------------------------------------------- ops: errors that used to be other types
@pytest.mark.parametrize("call, kind, words", [
    (lambda x: F.swapaxes(x, 0, 5), ValueError, "swapaxes: axis 5"),
    (lambda x: F.transpose(x, (0, 5)), ValueError, "transpose: axis 5"),
    (lambda x: F.expand_dims(x, 4), ValueError, "expand_dims: axis 4"),
    (lambda x: F.squeeze(F.reshape(x, (2, 3, 1)), 5), ValueError, "squeeze: axis 5"),
    (lambda x: F.flatten(F.reshape(x, (6,)), 1), ValueError, "flatten: axis 1"),
    (lambda x: F.getitem(x, 5), ValueError, "getitem: index 5"),
    (lambda x: F.getitem(x, (0, 0, 0)), ValueError, "getitem"),
    (lambda x: F.concat([x, x], axis=2), ValueError, "concat: axis 2"),
    (lambda x: F.split(x, 2, axis=3), ValueError, "split: axis 3"),
    (lambda x: F.split(x, 0), ValueError, "split: the number of sections"),
    (lambda x: F.sum(x, axis=2), ValueError, "axis 2"),
    (lambda x: F.squeeze(F.reshape(x, (2, 3, 1)), (2, -1)), ValueError, "squeeze: repeated axis"),
    (lambda x: F.max_pool2d(F.reshape(x, (1, 6, 1, 1))[:, :, :0], 2), ValueError, "empty spatial size"),
    (lambda x: F.add(x, None), TypeError, "None"),
    (lambda x: Tensor(np.array(["a"])), TypeError, "numeric"),
])
def test_op_errors_are_value_or_type_errors(call, kind, words):
    with pytest.raises(kind) as info:
        call(Tensor(np.zeros((2, 3))))
    assert words in str(info.value), str(info.value)


def test_getitem_error_still_ends_iteration():
    """The out-of-range index error is also an IndexError, so `for row in tensor` still stops."""
    rows = [r.shape for r in Tensor(np.zeros((3, 2)))]
    assert rows == [(2,)] * 3


def test_integer_and_infinite_inputs_give_numpy_results():
    """Ops on integer tensors no longer truncate or overflow silently; relu(-inf) is 0."""
    x = np.array([-2, 0, 3], np.int64)
    np.testing.assert_allclose(F.leaky_relu(Tensor(x), 0.5).data, [-1.0, 0.0, 3.0])
    np.testing.assert_allclose(F.softplus(Tensor(x)).data, np.logaddexp(0, x.astype(float)))
    big = np.full(4, np.iinfo(np.int64).max)
    assert F.mean(Tensor(big)).item() == pytest.approx(float(np.iinfo(np.int64).max))
    assert F.relu(Tensor(np.array([-np.inf, np.inf, -1.0]))).data.tolist() == [0.0, np.inf, 0.0]
    pooled = F.max_pool2d(Tensor(-np.arange(16).reshape(1, 1, 4, 4)), 2, padding=1)
    assert pooled.data.max() == 0 and pooled.data.min() == -15


# ---------------------------------------------------------------- compression options that cannot be met
def test_impossible_compression_options():
    made = _compressed()
    if "TuckerDense" in made:
        from compressors.tucker import TuckerConv2d, TuckerDense
        with pytest.raises(ValueError, match="TuckerDense: the budget .* too small"):
            TuckerDense(8, 8, ratio=1e6, order=2)
        with pytest.raises(ValueError, match="TuckerConv2d: the budget .* too small"):
            TuckerConv2d(2, 4, 3, ratio=1e5, order=2)
        with pytest.raises(ValueError, match=r"7 x 7 .* cannot be split into 5 mode sizes"):
            TuckerDense(7, 7, ratio=2, order=5)
    if "WaveletLinear" in made:
        from compressors.wavelet import WaveletLinear
        with pytest.raises(ValueError, match="WaveletLinear: 10 levels .* at most 3"):
            WaveletLinear(8, 10, 2)
    if "BasisConv2d" in made:
        from compressors.basis import BasisConv2d
        with pytest.raises(ValueError, match=r"BasisConv2d: num_basis must be <= C\*kh\*kw = 18, got 50"):
            BasisConv2d(2, 3, 3, num_basis=50)
    if not made:
        pytest.skip("no compressed layer imports")
