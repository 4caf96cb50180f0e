"""ONNX export of every reference model x compressor: checker, onnxruntime equals ours, bytes as counted."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'compactnet[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")

import engine  # noqa: E402
from compressors import basis, lowrank, quantize, report, tucker, wavelet  # noqa: E402
from compressors.layer_swap import find_layers, replace_module  # noqa: E402
from compressors.onnx import to_onnx  # noqa: E402
from layers import Conv2d, Dense, models  # noqa: E402

TOLERANCE = 1e-5
GRAPH_BYTES_PER_NODE = 120     # node and value descriptions; checked, stated in every report


def _image(batch=3):
    return np.random.default_rng(1).standard_normal((batch, 1, 28, 28)).astype(np.float32)


def _sequence(n_in=2, batch=3, steps=9):
    return np.random.default_rng(2).standard_normal((batch, steps, n_in)).astype(np.float32)


def _ours(model, x):
    model.eval()
    with engine.no_grad():
        return model(x).data


def _run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _export_and_compare(model, x, tmp_path, bits=None):
    path = tmp_path / "model.onnx"
    result = to_onnx(model, path, x, quantize_bits=bits)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    if bits is None:
        ours = _ours(model, x)
    else:   # our model with every parameter replaced by its dequantized value
        ours = quantize.quantized_evaluation(model, bits, lambda m: _ours(m, x))["test"]
    theirs = _run_onnx(path, x)
    assert theirs.shape == ours.shape
    assert float(np.max(np.abs(theirs - ours))) <= TOLERANCE
    assert result.file_bytes == path.stat().st_size
    return result, proto


def _check_bytes(model, result, proto):
    """Every kept layer: its parameter bytes in the file equal the summary's (within 10%); the file is
    the summary's bytes plus the stated buffers and graph overhead."""
    rows = {r["name"]: r for r in report.summary(model)}
    for row in result.rows:
        if row["kept"] and row["name"] in rows and row["type"] not in ("GRU", "LSTM"):
            assert row["param_bytes"] == pytest.approx(rows[row["name"]]["bytes"], rel=0.10), row["name"]
    summary_bytes = report.totals(list(rows.values()))["bytes"]
    assert result.all_kept
    stated = result.buffer_bytes + result.graph_bytes
    assert abs(result.file_bytes - stated - summary_bytes) <= 0.10 * summary_bytes
    assert result.graph_bytes <= 2048 + GRAPH_BYTES_PER_NODE * len(proto.graph.node)


def _lowrank(model, rank=6):
    """Every Dense/Conv2d as lowrank's two thin layers at `rank`, built directly: truncate()'s SVDs
    give the same structure and take seconds on a busy machine."""
    for name, layer in find_layers(model, (Dense, Conv2d)):
        if isinstance(layer, Dense):
            new = lowrank.LowRankDense(Dense(layer.n_in, rank, bias=False),
                                       Dense(rank, layer.n_out, bias=layer.bias is not None))
        else:
            first = Conv2d(layer.in_ch, rank, layer.kernel_size, layer.stride, layer.padding, bias=False)
            new = lowrank.LowRankConv2d(first, Conv2d(rank, layer.out_ch, 1), "filters", rank)
        replace_module(model, name, new)
    return model


def _tucker(model):
    tucker.compress(model, ratio=20, order=5, min_rank=1)     # order 5, rank-1 modes: ratio 20 fits a small GRU
    return model


def _scada(model, ratio=20):
    tucker.compress(model, ratio=ratio, shared_core=True, order=5, min_rank=1)
    return model


def _basis(model):
    basis.compress(model, m=6)
    return model


def _basis_norm(model):
    basis.compress(model, m=6, batch_norm=True)
    return model


IMAGE_CASES = [
    ("lenet300", "none"), ("lenet300", "lowrank"), ("lenet300", "tucker"), ("lenet300", "scada"),
    ("lenet5", "none"), ("lenet5", "lowrank"), ("lenet5", "tucker"), ("lenet5", "scada"),
    ("lenet5", "basis"), ("widecnn", "none"), ("widecnn", "basis_norm"), ("widecnn", "tucker"),
]
COMPRESS = {"none": lambda m: m, "lowrank": _lowrank, "tucker": _tucker, "scada": _scada, "basis": _basis,
            "basis_norm": _basis_norm}


@pytest.mark.parametrize("name,method", IMAGE_CASES)
def test_image_models_export_with_their_structure(name, method, tmp_path):
    engine.manual_seed(0)
    model = COMPRESS[method](models.MODELS[name]())
    x = _image()
    result, proto = _export_and_compare(model, x, tmp_path)
    _check_bytes(model, result, proto)
    ops = {node.op_type for node in proto.graph.node}
    expected = {"none": {"MatMul"}, "lowrank": {"MatMul"}, "tucker": {"Einsum"}, "scada": {"Einsum"},
                "basis": {"Conv"}, "basis_norm": {"BatchNormalization"}}[method]
    assert expected <= ops


def test_lowrank_layers_are_two_thin_matmuls_and_scada_stores_its_core_once(tmp_path):
    engine.manual_seed(0)
    model = _lowrank(models.lenet300())
    _, proto = _export_and_compare(model, _image().reshape(3, -1), tmp_path)
    shapes = sorted(tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 2)
    assert shapes == sorted([(784, 6), (6, 300), (300, 6), (6, 100), (100, 6), (6, 10)])
    model = _scada(models.lenet300())
    _, proto = _export_and_compare(model, _image().reshape(3, -1), tmp_path)
    core = model[1].core
    cores = [t for t in proto.graph.initializer if tuple(t.dims) == core.shape]
    einsums = [n for n in proto.graph.node if n.op_type == "Einsum"]
    assert len(cores) == 1 and len(einsums) == 3
    assert all(n.input[0] == cores[0].name for n in einsums)


def test_wavelet_cnn_and_wavelet_linear_keep_the_transform(tmp_path):
    engine.manual_seed(0)
    model = wavelet.wavelet_cnn()
    result, proto = _export_and_compare(model, _image(), tmp_path)
    _check_bytes(model, result, proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("ConvTranspose") == 6 and "Gather" in ops
    filters = [t for t in proto.graph.initializer if tuple(t.dims) == (6,)]
    assert len(filters) == 4                                # dec_lo, dec_hi, rec_lo, rec_hi once each


@pytest.mark.parametrize("n,shape,init", [(1024, (2, 1024), "db3"), (64, (2, 5, 64), "random")])
def test_wavelet_linear_alone(n, shape, init, tmp_path):
    engine.manual_seed(0)
    layer = wavelet.WaveletLinear(n, 3, 6, init=init, bias=True)
    layer.coeff_scale.data = np.random.default_rng(3).uniform(0.5, 1.5, layer.n_coeffs).astype(np.float32)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    result, proto = _export_and_compare(layer, x, tmp_path)
    _check_bytes(layer, result, proto)


RNN_CASES = [
    ("gru", "none"), ("gru", "wavelet"), ("gru", "lowrank"), ("gru", "tucker"),
    ("lstm", "none"), ("lstm", "wavelet"), ("lstm", "scada"),
]


@pytest.mark.parametrize("kind,method", RNN_CASES)
def test_recurrent_models_export_as_onnx_gru_and_lstm(kind, method, tmp_path):
    engine.manual_seed(0)
    model = models.sequence_model(kind=kind, n_in=2, hidden=32, num_layers=2, hh_bias=kind == "lstm")
    if method == "wavelet":
        wavelet.compress_recurrent(model, "state_reset" if kind == "gru" else "full", init="random")
    elif method == "scada":
        _scada(model, ratio=3)
    elif method != "none":
        COMPRESS[method](model)
    result, proto = _export_and_compare(model, _sequence(), tmp_path)
    _check_bytes(model, result, proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count(kind.upper()) == 2
    if kind == "gru":
        assert all(a.i == 1 for n in proto.graph.node if n.op_type == "GRU"
                   for a in n.attribute if a.name == "linear_before_reset")
    longer = _sequence(steps=13)   # the time axis is symbolic
    assert np.max(np.abs(_run_onnx(tmp_path / "model.onnx", longer) - _ours(model, longer))) <= TOLERANCE


def test_symbol_input_and_tied_language_model(tmp_path):
    engine.manual_seed(0)
    model = models.sequence_model("gru", n_in=5, hidden=16, output="all")
    symbols = np.random.default_rng(5).integers(0, 5, (3, 7))
    _export_and_compare(model, symbols, tmp_path)
    lm = models.language_model(vocab=40, emb=16, hidden=16, tie_weights=True)
    tokens = np.random.default_rng(6).integers(0, 40, (2, 6))
    result, proto = _export_and_compare(lm, tokens, tmp_path)
    _check_bytes(lm, result, proto)
    assert sum(1 for t in proto.graph.initializer if tuple(t.dims) == (40, 16)) == 1   # tied: once


@pytest.mark.parametrize("bits", [8, 4, 3])
def test_quantized_export_holds_the_codes(bits, tmp_path):
    engine.manual_seed(0)
    model = _scada(models.lenet5())
    result, proto = _export_and_compare(model, _image(), tmp_path, bits=bits)
    state = quantize.quantized_state(model, bits)
    stored_bits = 4 if bits <= 4 else 8
    assert result.param_bytes == quantize.storage_bytes(state, stored_bits)
    if bits in (4, 8):
        assert result.param_bytes == quantize.storage_bytes(state, bits)
    else:
        assert "held as 4-bit integers" in result.format()
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == len(state)
    code_type = onnx.TensorProto.UINT4 if bits <= 4 else onnx.TensorProto.UINT8
    assert sum(t.data_type == code_type for t in proto.graph.initializer) == len(state)
