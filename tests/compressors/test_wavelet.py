"""Tests of the learnable wavelet layer, its filters and losses, RNN/CNN conversion and the plugin."""
import argparse

import numpy as np
import pytest

import engine
from engine.optim import Adam
from compressors import wavelet as W
from compressors import wavelet_filters as WF
from engine.kernels.wavelet import coefficient_lengths
from layers import Dense, GRU, LSTM, Sequential
from layers.models import sequence_model

NAMED = ["haar", "db2", "db3", "db4", "db5", "db6", "sym2", "sym3", "sym4", "sym5", "sym6"]


def _losses(bank, variant="modulated"):
    t = [engine.Tensor(np.asarray(f, dtype=np.float64)) for f in bank]
    return (WF.perfect_reconstruction_loss(*t).item(),
            WF.alias_cancellation_loss(*t, variant=variant).item())


@pytest.mark.parametrize("name", NAMED)
def test_computed_filters_match_pywavelets(name):
    pywt = pytest.importorskip("pywt", reason="PyWavelets (test extra) is the oracle")
    ref = pywt.Wavelet(name)
    ours = WF.filter_bank(name)
    for key, f in zip(("dec_lo", "dec_hi", "rec_lo", "rec_hi"), ours):
        # PyWavelets tabulates symlets to about 1e-12; our Daubechies values are exact to 1e-15
        np.testing.assert_allclose(f, getattr(ref, key), atol=1e-11)


@pytest.mark.parametrize("name", ["haar", "db2", "db3", "db4", "db5", "db6", "sym4"])
@pytest.mark.parametrize("filter_length", [None, 14])
def test_wavelet_losses_vanish_for_orthogonal_wavelets(name, filter_length):
    pr, ac = _losses(WF.filter_bank(name, filter_length))
    assert pr < 1e-10 and ac < 1e-10
    if filter_length is None:
        assert _losses(WF.filter_bank(name), "sign_flip")[1] < 1e-10


def test_wavelet_losses_are_positive_for_random_filters():
    rng = np.random.default_rng(0)
    for _ in range(3):
        pr, ac = _losses(WF.filter_bank("random", 6, rng=rng))
        assert pr > 1e-2 and ac > 1e-2
        assert _losses(WF.filter_bank("random", 6, rng=rng), "sign_flip")[1] > 1e-2


def test_full_convolution_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(5), rng.standard_normal(3)
    out = WF.full_convolution(engine.Tensor(a), engine.Tensor(b)).data
    np.testing.assert_allclose(out, np.convolve(a, b), atol=1e-12)


def test_wavelet_losses_gradcheck():
    rng = np.random.default_rng(2)
    filters = [engine.Tensor(rng.standard_normal(4), requires_grad=True) for _ in range(4)]
    assert engine.gradcheck(lambda *f: WF.perfect_reconstruction_loss(*f), *filters)
    for variant in ("modulated", "sign_flip"):
        assert engine.gradcheck(lambda *f: WF.alias_cancellation_loss(*f, variant=variant), *filters)


@pytest.mark.parametrize("init, filter_length", [("haar", 2), ("haar", 6), ("db2", 4), ("db3", 8),
                                                 ("db6", 12), ("sym4", 8)])
@pytest.mark.parametrize("n", [12, 33, 100, 128])
def test_wavelet_linear_reconstructs_its_input(init, filter_length, n):
    levels = W.max_levels(n, filter_length)
    layer = W.WaveletLinear(n, levels, filter_length, init=init, permute=False, dtype=np.float64)
    x = np.random.default_rng(n).standard_normal((4, n))
    np.testing.assert_allclose(layer(x).data, x, atol=1e-12)
    x3 = np.random.default_rng(n).standard_normal((2, 3, n))
    np.testing.assert_allclose(layer(x3).data, x3, atol=1e-12)


def test_wavelet_linear_float32_reconstruction_and_permutation():
    layer = W.WaveletLinear(64, 4, 6, init="db3", permute=False)
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, x, atol=1e-5)
    shuffled = W.WaveletLinear(64, 4, 6, init="db3", permute=True)
    perm = shuffled.permutation
    assert sorted(perm.tolist()) == list(range(shuffled.n_coeffs))
    assert not np.allclose(shuffled(x).data, x, atol=1e-3)   # a real permutation mixes bands


def test_parameter_count_formula():
    layer = W.WaveletLinear(512, 8, 6)
    n_coeffs = sum(coefficient_lengths(512, 6, 8))
    assert layer.n_coeffs == n_coeffs
    assert layer.num_parameters() == 2 * 512 + n_coeffs + 4 * 6 == 1593
    with_bias = W.WaveletLinear(100, 3, 4, bias=True)
    assert with_bias.num_parameters() == 3 * 100 + with_bias.n_coeffs + 16
    fixed = W.WaveletLinear(100, 3, 4, learn_filters=False)
    assert fixed.num_parameters() == 2 * 100 + fixed.n_coeffs + 16
    assert fixed.num_parameters(trainable_only=True) == 2 * 100 + fixed.n_coeffs
    assert len(list(fixed.named_buffers())) == 2    # permutation and its inverse: buffers, not params


def test_wavelet_linear_gradcheck():
    engine.manual_seed(3)
    layer = W.WaveletLinear(9, 2, 4, init="random", bias=True, dtype=np.float64)
    rng = np.random.default_rng(3)
    for p in (layer.input_scale, layer.coeff_scale, layer.output_scale, layer.bias):
        p.data = rng.standard_normal(p.shape)   # away from the all-ones init so every path matters
    x = engine.Tensor(rng.standard_normal((2, 9)), requires_grad=True)
    params = list(layer.parameters())

    def fn(x, *_):
        return layer(x)

    assert engine.gradcheck(fn, x, *params)


def test_wavelet_loss_sums_layers_and_trains_filters_towards_a_wavelet():
    engine.manual_seed(0)
    model = Sequential(W.WaveletLinear(16, 2, 4, init="random"), W.WaveletLinear(16, 2, 4, init="db2"))
    total = W.wavelet_loss(model).item()
    first = model[0].wavelet_loss().item()
    assert total == pytest.approx(first + model[1].wavelet_loss().item())
    assert W.wavelet_loss(model, weight=0.5).item() == pytest.approx(0.5 * total)
    assert W.wavelet_loss(Dense(3, 3)) is None
    opt = Adam(model[0].filters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        loss = model[0].wavelet_loss()
        loss.backward()
        opt.step()
    assert model[0].wavelet_loss().item() < 0.05 * first


def test_flops_counts_scales_and_both_transforms():
    layer = W.WaveletLinear(32, 2, 4)
    x = engine.Tensor(np.zeros((3, 5, 32), np.float32))
    y = layer(x)
    bands = sum(m for m in (17, 10))             # floor((32+3)/2) = 17, floor((17+3)/2) = 10
    expected = 15 * (2 * 2 * 4 * 2 * bands + 2 * 32 + layer.n_coeffs)
    assert layer.flops((x,), y) == expected


def test_bad_input_errors():
    layer = W.WaveletLinear(16, 2, 4)
    with pytest.raises(ValueError, match=r"WaveletLinear: expected input size 16"):
        layer(np.zeros((2, 12), np.float32))
    with pytest.raises(ValueError, match="WaveletLinear: expected a 2-D or 3-D"):
        layer(np.zeros((16,), np.float32))
    with pytest.raises(ValueError, match="filter_length must be an int >= 2"):
        W.WaveletLinear(16, 2, 1)
    assert W.max_levels(16, 4) == 4           # level inputs 16, 9, 6, 4 are each >= L
    with pytest.raises(ValueError, match="allows at most 4"):
        W.WaveletLinear(16, 5, 4)
    with pytest.raises(ValueError, match="unknown wavelet"):
        W.WaveletLinear(16, 2, 4, init="db0")
    with pytest.raises(ValueError, match="shorter"):
        W.WaveletLinear(16, 1, 4, init="db4")
    with pytest.raises(ValueError, match="square Dense"):
        W.wavelet_from_dense(Dense(4, 5))


def test_compress_recurrent_matches_the_papers_gru_counts():
    expected = {"state": 531_002, "reset": 531_002, "state_reset": 270_451, "gates": 270_451,
                "full": 9_900}
    dense = sequence_model("gru", n_in=2, hidden=512, n_out=1, hh_bias=False)
    assert dense.num_parameters() == 791_553
    for which, count in expected.items():
        engine.manual_seed(0)
        model = sequence_model("gru", n_in=2, hidden=512, n_out=1, hh_bias=False)
        W.compress_recurrent(model, which, levels=8, filter_length=6)
        assert model.num_parameters() == count, which
    # copy-memory GRU (10 symbols in, 10 classes out per step): the paper's 808,458 / 547,907 / 287,356
    for which, count in {None: 808_458, "state": 547_907, "state_reset": 287_356}.items():
        model = sequence_model("gru", n_in=10, hidden=512, n_out=10, hh_bias=False)
        if which:
            W.compress_recurrent(model, which, levels=8, filter_length=6)
        assert model.num_parameters() == count, which


def test_compress_recurrent_names_bias_and_forward():
    engine.manual_seed(1)
    gru = GRU(3, 16, hh_bias=True)
    bias = gru.cells[0].hh_state.bias.data.copy()
    W.compress_recurrent(gru, "state_update", levels=2, filter_length=4)
    cell = gru.cells[0]
    assert isinstance(cell.hh_state, W.WaveletLinear) and isinstance(cell.hh_update, W.WaveletLinear)
    assert type(cell.hh_reset) is Dense
    np.testing.assert_array_equal(cell.hh_state.bias.data, bias)
    out, _ = gru(np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32))
    assert out.shape == (2, 5, 16)

    lstm = LSTM(3, 16, num_layers=2, hh_bias=False)
    W.compress_recurrent(lstm, "input_forget", levels=2, filter_length=4)
    for c in lstm.cells:
        kinds = [type(getattr(c, g)).__name__ for g in ("hh_input", "hh_forget", "hh_cell", "hh_output")]
        assert kinds == ["WaveletLinear", "WaveletLinear", "Dense", "Dense"]
    W.compress_recurrent(lstm, "full", levels=2, filter_length=4)
    assert all(isinstance(getattr(c, g), W.WaveletLinear) for c in lstm.cells for g in c.gate_names)
    with pytest.raises(ValueError, match="unknown GRU transform 'cell'"):
        W.compress_recurrent(GRU(3, 16), "cell")
    with pytest.raises(ValueError, match="no GRUCell or LSTMCell"):
        W.compress_recurrent(Dense(4, 4))


def test_wavelet_cnn_parameter_count_and_shape():
    engine.manual_seed(0)
    net = W.wavelet_cnn()
    assert net.num_parameters() == 36_030    # the paper's count
    assert net(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def _args(**kw):
    parser = argparse.ArgumentParser()
    W.WaveletCompressor.add_arguments(parser)
    argv = []
    for key, value in kw.items():
        flag = "--wavelet-" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


def test_plugin_converts_recurrent_and_square_dense_models():
    engine.manual_seed(0)
    comp = W.WaveletCompressor(_args(which="state", levels=3, filter_length=4, loss_weight=0.5))
    model = comp.apply(sequence_model("gru", n_in=2, hidden=32, n_out=1), None)
    assert isinstance(model.rnn.cells[0].hh_state, W.WaveletLinear)
    loss = comp.extra_loss(model)
    assert loss.item() == pytest.approx(0.5 * W.wavelet_loss(model).item())
    assert comp.config()["which"] == "state"

    mlp = Sequential(Dense(8, 16), Dense(16, 16), Dense(16, 4))
    fixed = W.WaveletCompressor(_args(fixed=True, levels=2, filter_length=4))
    mlp = fixed.apply(mlp, None)
    assert [type(m).__name__ for m in mlp] == ["Dense", "WaveletLinear", "Dense"]
    assert not mlp[1].learn_filters
    with pytest.raises(ValueError, match="wavelet compressor"):
        fixed.apply(Sequential(Dense(8, 4)), None)


def test_automatic_levels_with_a_too_long_filter_name_the_problem():
    from layers import Dense
    from compressors.wavelet import wavelet_from_dense
    with pytest.raises(ValueError, match="filter of length 40 is longer than the layer's 32 inputs"):
        wavelet_from_dense(Dense(32, 32), filter_length=40)


def test_as_dense_equals_the_layer_and_is_differentiable():
    engine.manual_seed(4)
    layer = W.WaveletLinear(9, 2, 4, init="random", bias=True, dtype=np.float64)
    rng = np.random.default_rng(4)
    for p in (layer.input_scale, layer.coeff_scale, layer.output_scale, layer.bias):
        p.data = rng.standard_normal(p.shape)
    x = rng.standard_normal((3, 9))
    weight, bias = layer.as_dense()
    np.testing.assert_allclose(x @ weight.data + bias.data, layer(x).data, rtol=1e-12, atol=1e-12)
    params = list(layer.parameters())
    assert engine.gradcheck(lambda *_: layer.as_dense()[0], *params)


@pytest.mark.parametrize("which", ["state_reset", "update", "full"])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_materialised_wavelet_cell_matches_the_per_step_path(kind, which):
    """A recurrent layer builds each wavelet weight once per sequence; outputs and grads must not change."""
    engine.manual_seed(5)
    if kind == "gru":
        rnn = GRU(3, 12, num_layers=2, hh_bias=True)
    else:
        rnn = LSTM(3, 12, num_layers=2, hh_bias=True)
        which = {"state_reset": "input_cell", "update": "forget"}.get(which, which)
    rnn = rnn.astype(np.float64)
    W.compress_recurrent(rnn, which, levels=2, filter_length=4, init="random")
    rng = np.random.default_rng(5)
    for layer in W.wavelet_layers(rnn):
        layer.coeff_scale.data = rng.standard_normal(layer.coeff_scale.shape)
    x = rng.standard_normal((2, 5, 3))
    assert rnn.cells[0].fused_hh(materialize=True) is not None
    assert rnn.cells[0].fused_hh() is None

    def run():
        rnn.zero_grad()
        out = rnn(x)[0]
        engine.ops.sum(out * out).backward()
        return out.data.copy(), {k: p.grad.copy() for k, p in rnn.named_parameters()}

    fast_out, fast_grads = run()
    removers = [m.register_forward_hook(lambda *a: None)
                for cell in rnn.cells for m in cell.hh_modules()]   # hooks force the per-step path
    assert rnn.cells[0].fused_hh(materialize=True) is None
    slow_out, slow_grads = run()
    for remove in removers:
        remove()
    np.testing.assert_allclose(fast_out, slow_out, rtol=1e-11, atol=1e-12)
    for k in fast_grads:
        np.testing.assert_allclose(fast_grads[k], slow_grads[k], rtol=1e-9, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, levels, length, bias, permute, shape", [
    (64, 3, 6, True, True, (5, 64)), (37, 2, 5, False, True, (3, 4, 37)), (16, 3, 2, True, False, (2, 16)),
    (130, 4, 6, True, True, (70, 130)),
    # from 32 rows on the blocks go on their side: a short last block, filters of two passes (8, 13 taps),
    # an odd length, Haar, several blocks split over threads, a full block of 128 lanes and one of 64
    # (a layer from 2048 wide)
    (64, 3, 8, True, True, (40, 64)), (37, 2, 13, True, True, (2, 33, 37)), (37, 2, 5, False, True, (33, 37)),
    (16, 3, 2, True, True, (100, 16)), (256, 8, 6, True, True, (130, 256)), (2048, 2, 6, True, True, (66, 2048))])
@pytest.mark.parametrize("parallel", [False, True])
def test_inference_forward_equals_the_differentiable_ops(monkeypatch, dtype, n, levels, length, bias,
                                                        permute, shape, parallel):
    # without a gradient the layer runs one fused Numba call (by rows, or blocks of rows on their side);
    # with one it composes the differentiable ops. Both must give the same values, serial and parallel.
    from engine import kernels
    from engine.kernels import wavelet_inference
    if not wavelet_inference.numba_available():
        pytest.skip("numba not importable or disabled: the fused inference pass is Numba's")
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0 if parallel else 10 ** 12)
    engine.manual_seed(n)
    layer = W.WaveletLinear(n, levels, length, init="random", bias=bias, permute=permute, dtype=dtype)
    rng = np.random.default_rng(n)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape).astype(dtype)
    x = engine.Tensor(rng.standard_normal(shape).astype(dtype))
    want = layer(x).data
    calls = []
    fused = wavelet_inference.linear_map
    monkeypatch.setattr(wavelet_inference, "linear_map", lambda *a: calls.append(1) or fused(*a))
    with engine.no_grad():
        got = layer(x).data
        again = layer(x).data          # the sideways pass's reused scratch must still hold zero margins
    assert calls and got.shape == want.shape == shape and got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * float(np.abs(want).max()))
    np.testing.assert_array_equal(again, got)


@pytest.mark.parametrize("rows", [3, 70])
def test_inference_map_writes_into_a_strided_view(rows):
    # a recurrent layer hands each gate's block of its (B, 3H) products as `out`, by rows or on the side
    from engine.kernels import wavelet_inference
    if not wavelet_inference.numba_available():
        pytest.skip("numba not importable or disabled: the fused inference pass is Numba's")
    n, levels = 48, 3
    layer = W.WaveletLinear(n, levels, 6, init="random", bias=True, dtype=np.float64)
    rng = np.random.default_rng(1)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    x = rng.standard_normal((rows, n))
    args = [p.data for p in (layer.input_scale, layer.dec_lo, layer.dec_hi)] + [layer.permutation] + \
        [p.data for p in (layer.coeff_scale, layer.rec_lo, layer.rec_hi, layer.output_scale, layer.bias)]
    whole = np.full((rows, 3 * n), 7.0)
    got = wavelet_inference.linear_map(x, *args, levels, out=whole[:, n:2 * n])
    assert np.shares_memory(got, whole)
    np.testing.assert_allclose(whole[:, n:2 * n], layer(engine.Tensor(x)).data, rtol=1e-12, atol=1e-12)
    assert (whole[:, :n] == 7).all() and (whole[:, 2 * n:] == 7).all()


def test_sideways_pass_is_chosen_by_rows_and_width(monkeypatch):
    from engine.kernels import wavelet_inference, wavelet_lanes_numba
    if not wavelet_inference.numba_available():
        pytest.skip("numba not importable or disabled: the fused inference pass is Numba's")
    seen = []
    original = wavelet_lanes_numba.linear_map_lanes_serial
    monkeypatch.setattr(wavelet_lanes_numba, "linear_map_lanes_serial", lambda *a: seen.append(1) or original(*a))
    for rows, n, sideways in [(wavelet_inference.LANES_MIN_ROWS, 64, True),
                              (wavelet_inference.LANES_MIN_ROWS - 1, 64, False),
                              (wavelet_inference.LANES_MIN_ROWS, wavelet_inference.LANES_MAX_WIDTH + 2, False)]:
        seen.clear()
        layer = W.WaveletLinear(n, 2, 6, init="random")
        with engine.no_grad():
            layer(engine.Tensor(np.ones((rows, n), np.float32)))
        assert bool(seen) == sideways, (rows, n)


def test_inference_forward_without_numba_composes_the_ops(monkeypatch):
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    layer = W.WaveletLinear(32, 2, 4, init="random", bias=True)
    x = engine.Tensor(np.random.default_rng(0).standard_normal((3, 32)).astype(layer.input_scale.dtype))
    want = layer(x).data
    with engine.no_grad():
        np.testing.assert_allclose(layer(x).data, want, rtol=1e-6, atol=1e-6)
