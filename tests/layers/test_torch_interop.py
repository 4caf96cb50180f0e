"""PyTorch-layout import/export: layouts, gate orders and bias folding; outputs against torch when present."""
import importlib.util

import numpy as np
import pytest

import engine
from layers import GRU, LSTM, BatchNorm2d, Conv2d, Dense, Embedding, GRUCell, LSTMCell, Sequential
from layers import torch_interop as TI
from layers.models import lenet5

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed (pip install torch)")


def forward(model, x):
    with engine.no_grad():
        y = model.eval()(x)
    y = y[0] if isinstance(y, tuple) else y
    return np.asarray(y.data)


def sequences(batch=3, steps=4, n_in=5, dtype=np.float32):
    return np.random.default_rng(1).standard_normal((batch, steps, n_in)).astype(dtype)


# ---------------------------------------------------------------- without torch
def test_dense_layout_is_transposed():
    dense = Dense(3, 2)
    w = np.arange(6, dtype=np.float32).reshape(2, 3)           # torch Linear (out, in)
    TI.load_torch_state_dict(dense, {"weight": w, "bias": np.array([1.0, -1.0], np.float32)})
    np.testing.assert_array_equal(dense.weight.data, w.T)
    np.testing.assert_array_equal(TI.to_torch_state_dict(dense)["weight"], w)


@pytest.mark.parametrize("make", [
    lambda: Sequential(Conv2d(2, 3, 3, padding=1), BatchNorm2d(3)),
    lambda: Embedding(7, 4),
    lambda: LSTM(5, 6, num_layers=2),
    lambda: GRU(5, 6, num_layers=2),
    lambda: GRUCell(5, 6),
    lambda: LSTMCell(5, 6),
])
def test_export_then_import_is_identity(make):
    engine.manual_seed(0)
    source, target = make(), make()
    for p in source.parameters():                               # distinct values everywhere
        p.data = np.random.default_rng(p.size).standard_normal(p.shape).astype(p.dtype)
    TI.load_torch_state_dict(target, TI.to_torch_state_dict(source))
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_recurrent_torch_key_names():
    keys = set(TI.to_torch_state_dict(Sequential(LSTM(5, 6, num_layers=2))))
    assert keys == {f"0.{w}_{k}_l{layer}" for w in ("weight", "bias") for k in ("ih", "hh") for layer in (0, 1)}


def test_lstm_hh_bias_folds_exactly():
    engine.manual_seed(0)
    with_bias = LSTM(5, 6, hh_bias=True)
    state = TI.to_torch_state_dict(with_bias)
    folded = LSTM(5, 6, hh_bias=False)
    TI.load_torch_state_dict(folded, state)
    x = sequences()
    np.testing.assert_allclose(forward(folded, x), forward(with_bias, x), rtol=1e-6, atol=1e-6)


def test_gru_b_hn_needs_hh_bias():
    engine.manual_seed(0)
    state = TI.to_torch_state_dict(GRU(5, 6, hh_bias=True))
    with pytest.raises(ValueError, match="b_hn"):
        TI.load_torch_state_dict(GRU(5, 6, hh_bias=False), state)
    state["bias_hh_l0"][12:] = 0                                # b_hn = 0: r and z fold exactly
    source = GRU(5, 6, hh_bias=True)
    TI.load_torch_state_dict(source, state)
    folded = GRU(5, 6, hh_bias=False)
    TI.load_torch_state_dict(folded, state)
    x = sequences()
    np.testing.assert_allclose(forward(folded, x), forward(source, x), rtol=1e-6, atol=1e-6)


def test_match_by_order_with_other_names():
    engine.manual_seed(0)
    source = lenet5()
    names = {"0": "conv1", "2": "conv2", "5": "fc1", "7": "fc2"}
    state = TI.to_torch_state_dict(source, mapping=names)
    assert "fc1.weight" in state and state["fc1.weight"].shape == (500, 800)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    for match in ("order", "names"):    # names unrelated to ours (conv1, fc1): paired in order as well
        target = lenet5()
        TI.load_torch_state_dict(target, state, match=match)
        np.testing.assert_array_equal(forward(target, x), forward(source, x))
    partly = dict(state)
    partly["5.weight"] = partly.pop("fc1.weight")      # one name matches ours: names are taken as names
    with pytest.raises(KeyError, match="missing PyTorch key.*match='order'"):
        TI.load_torch_state_dict(lenet5(), partly)


def test_import_errors_are_clear():
    with pytest.raises(ValueError, match=r"Linear weight must be \(out, in\) = \(2, 3\)"):
        TI.load_torch_state_dict(Dense(3, 2), {"weight": np.zeros((3, 2)), "bias": np.zeros(2)})
    with pytest.raises(KeyError, match="not used"):
        TI.load_torch_state_dict(Dense(3, 2), {"weight": np.zeros((2, 3)), "bias": np.zeros(2),
                                               "extra": np.zeros(1)})
    state = TI.to_torch_state_dict(LSTM(5, 6))
    state["weight_ih_l0_reverse"] = state["weight_ih_l0"]
    with pytest.raises(ValueError, match="bidirectional"):
        TI.load_torch_state_dict(LSTM(5, 6), state)
    with pytest.raises(ValueError, match="match must be"):
        TI.torch_to_state_dict(Dense(3, 2), {}, match="fuzzy")


def test_compressed_recurrent_transform_is_refused():
    wavelet = pytest.importorskip("compressors.wavelet", reason="compressors.wavelet is not available")
    engine.manual_seed(0)
    gru = GRU(5, 8)
    state = TI.to_torch_state_dict(gru)
    wavelet.compress_recurrent(gru, "state", levels=1, filter_length=2)
    with pytest.raises(TypeError, match="hh_state is a WaveletLinear"):
        TI.load_torch_state_dict(gru, state)


def test_files_npz_and_safetensors(tmp_path):
    engine.manual_seed(0)
    state = TI.to_torch_state_dict(lenet5())
    for name in ("w.npz", "w.safetensors"):
        path = str(tmp_path / name)
        TI.save_torch_file(path, state)
        loaded = TI.load_torch_file(path)
        assert sorted(loaded) == sorted(state)
        for k in state:
            np.testing.assert_array_equal(loaded[k], state[k])


def test_torch_save_zip_is_refused_without_unpickling(tmp_path):
    import zipfile
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:     # the layout torch.save writes
        archive.writestr("model/data.pkl", b"\x80\x02not to be unpickled")
        archive.writestr("model/data/0", b"\x00" * 16)
    with pytest.raises(ValueError, match=r"torch\.save file.*not unpickled.*safetensors\.torch\.save_file"):
        TI.load_torch_file(str(path))


def test_exported_paired_tucker_layer_rebuilds_from_the_rule():
    """The module docstring's rebuild rule, applied to the exported arrays alone, gives the layer's weight."""
    tucker = pytest.importorskip("compressors.tucker", reason="compressors.tucker is not available")
    engine.manual_seed(0)
    model = Sequential(Dense(12, 10))
    tucker.compress(model, ranks=2, order=2, reshape="paired")
    layer = model[0]
    assert layer.pairing is not None
    state = TI.to_torch_state_dict(model)
    groups = state["0.tucker_pairing"]
    shape = tuple(state["0.tucker_weight_shape"])
    factors = [state[f"0.factor{i}"] for i in range(len(groups[0]))]
    tensor = np.einsum("ab,ia,jb->ij", state["0.core"], *factors)
    n_groups, order = groups.shape
    tensor = tensor.reshape([groups[g][i] for i in range(order) for g in range(n_groups)])
    tensor = tensor.transpose([i * n_groups + g for g in range(n_groups) for i in range(order)])
    rebuilt = tensor.reshape(shape)
    x = np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32)
    got = x @ rebuilt + state["0.bias"]
    np.testing.assert_allclose(got, forward(model, x), rtol=1e-5, atol=1e-6)
    TI.load_torch_state_dict(Sequential(Dense(12, 10)), {"0.weight": rebuilt.T, "0.bias": state["0.bias"]})


# ---------------------------------------------------------------- against PyTorch
def _numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@needs_torch
def test_matches_pytorch_outputs():
    import torch
    torch.manual_seed(0)
    engine.manual_seed(0)
    rng = np.random.default_rng(0)
    cases = []
    lin = torch.nn.Linear(7, 4)
    cases.append((lin, Dense(7, 4), rng.standard_normal((3, 7)).astype(np.float32)))
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1)
    cases.append((conv, Conv2d(3, 5, 3, stride=2, padding=1), rng.standard_normal((2, 3, 9, 9)).astype(np.float32)))
    x_seq = sequences()
    cases.append((torch.nn.LSTM(5, 6, num_layers=2, batch_first=True), LSTM(5, 6, num_layers=2), x_seq))
    cases.append((torch.nn.GRU(5, 6, num_layers=2, batch_first=True), GRU(5, 6, num_layers=2), x_seq))
    for theirs, ours, x in cases:
        TI.load_torch_state_dict(ours, _numpy_state(theirs))
        with torch.no_grad():
            expected = theirs(torch.from_numpy(x))
        expected = (expected[0] if isinstance(expected, tuple) else expected).numpy()
        np.testing.assert_allclose(forward(ours, x), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=type(theirs).__name__)
        # and back: our export loads into torch with identical outputs
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in TI.to_torch_state_dict(ours).items()})
        with torch.no_grad():
            again = theirs(torch.from_numpy(x))
        again = (again[0] if isinstance(again, tuple) else again).numpy()
        np.testing.assert_allclose(again, expected, rtol=1e-6, atol=1e-6)


@needs_torch
def test_pytorch_lenet5_through_a_safetensors_file(tmp_path):
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 20, 5), torch.nn.MaxPool2d(2), torch.nn.Conv2d(20, 50, 5),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(800, 500),
                              torch.nn.ReLU(), torch.nn.Linear(500, 10))
    path = str(tmp_path / "lenet5.safetensors")
    TI.save_torch_file(path, _numpy_state(net))
    model = TI.load_torch_state_dict(lenet5(), TI.load_torch_file(path))
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(forward(model, x), expected, rtol=1e-5, atol=1e-5)
