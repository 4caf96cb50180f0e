"""Tests of post-training n-bit storage: codes, packing, byte counts, the saved file, evaluation, train.py."""
import json
import math

import numpy as np
import pytest

import engine
from training import options
from compressors import quantize, tucker
from layers.models import lenet300
from tests.test_train_distill import mnist_run, tiny_mnist


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_quantize_array_is_within_half_a_step_and_uses_the_whole_range(bits):
    x = np.random.default_rng(bits).standard_normal((7, 11)).astype(np.float32)
    codes, low, step = quantize.quantize_array(x, bits)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert codes.min() == 0 and codes.max() == (1 << bits) - 1
    assert step == pytest.approx((x.max() - x.min()) / ((1 << bits) - 1), rel=1e-6)
    back = quantize.dequantize_array(codes, low, step)
    assert np.max(np.abs(back - x)) <= step / 2 * (1 + 1e-5) + 1e-7


def test_quantize_array_edge_cases_and_errors():
    codes, low, step = quantize.quantize_array(np.full(5, 0.25, np.float32), 8)
    np.testing.assert_array_equal(quantize.dequantize_array(codes, low, step), np.full(5, 0.25, np.float32))
    for bits in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="bits must be an int in 1..8"):
            quantize.quantize_array(np.ones(3), bits)
    with pytest.raises(ValueError, match="finite"):
        quantize.quantize_array(np.array([1.0, np.nan]), 8)


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_unpack_round_trip_and_size(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=(5, 7)).astype(np.uint8)
    packed = quantize.pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(codes.size * bits / 8)
    np.testing.assert_array_equal(quantize.unpack_codes(packed, bits, codes.shape), codes)


def _scada_lenet300():
    engine.manual_seed(0)
    model = lenet300()
    tucker.compress(model, shared_core=True, k=3, order=3, reshape="paired")
    return model


def test_storage_bytes_counts_packed_codes_and_ranges_with_a_shared_core_once():
    model = _scada_lenet300()
    state = quantize.quantized_state(model, 4)
    assert len(state) == len(list(model.parameters())) == 1 + 3 * 3 + 3     # core, 9 factors, 3 biases
    by_hand = sum(math.ceil(p.size * 4 / 8) + 8 for p in model.parameters())
    assert quantize.storage_bytes(state, 4) == by_hand


def test_saved_file_loads_back_the_dequantized_values(tmp_path):
    model = _scada_lenet300()
    state = quantize.quantized_state(model, 6)
    quantize.save_quantized(tmp_path / "q.npz", state, 6)
    loaded = quantize.load_quantized(tmp_path / "q.npz")
    assert list(loaded) == list(state)
    for name, (codes, low, step) in state.items():
        np.testing.assert_array_equal(loaded[name], quantize.dequantize_array(codes, low, step))
    engine.io.save(tmp_path / "plain.npz", {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="not a quantized model file"):
        quantize.load_quantized(tmp_path / "plain.npz")


def test_quantized_evaluation_sees_the_quantized_values_and_restores_the_model():
    model = _scada_lenet300().eval()
    x = engine.Tensor(np.random.default_rng(0).standard_normal((4, 784)).astype(np.float32))
    before = model(x).data.copy()
    arrays = {name: p.data for name, p in model.named_parameters()}
    result = quantize.quantized_evaluation(model, 2, lambda m: {"out": m(x).data.copy()}, dense_bytes=1000)
    # the same forward pass by hand with the dequantized values
    by_hand = _scada_lenet300().eval()
    for name, p in by_hand.named_parameters():
        p.data = quantize.dequantize_array(*quantize.quantize_array(arrays[name], 2))
    np.testing.assert_allclose(result["test"]["out"], by_hand(x).data, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result["test"]["out"], before, atol=1e-3)      # 2 bits do change the output
    assert all(p.data is arrays[name] for name, p in model.named_parameters())
    np.testing.assert_array_equal(model(x).data, before)                   # cache rebuilt from the floats
    assert result["ratio"] == pytest.approx(1000 / result["bytes"]) and result["max_abs_error"] > 0


def test_train_quantize_bits_writes_the_file_and_the_metrics(tmp_path):
    tiny_mnist(tmp_path / "mnist")
    code, out = mnist_run(tmp_path, "q", "--compress", "tucker", "--tucker-ratio", "100", "--tucker-order", "3",
                          "--tucker-reshape", "paired", "--quantize-bits", "8")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    q = metrics["quantized"]
    assert q["bits"] == 8 and q["bytes"] == metrics["params"]["compressed"] + 8 * q["tensors"]
    assert q["ratio"] == pytest.approx(metrics["bytes"]["dense"] / q["bytes"])
    assert 0 <= q["test"]["accuracy"] <= 1
    assert set(quantize.load_quantized(out / "quantized.npz")) == {n for n, _ in
                                                                   _named_params_of_checkpoint(out)}
    with pytest.raises(SystemExit):
        options.parse_args(["--quantize-bits", "9"])


def _named_params_of_checkpoint(out):
    arrays, _ = engine.io.load(out / "checkpoint.npz")
    return [(k[len("model/"):], v) for k, v in arrays.items() if k.startswith("model/")]


def test_bench_quantize_runs_rebuilds_a_finished_run(tmp_path, capsys):
    from bench import quantize_runs
    tiny_mnist(tmp_path / "mnist")
    code, out = mnist_run(tmp_path, "r", "--compress", "tucker", "--tucker-ratio", "100", "--tucker-order", "3",
                          "--tucker-reshape", "paired", "--quantize-bits", "4")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = quantize_runs.measure(str(out), 4)
    assert row["float"] == pytest.approx(metrics["metric"]["value"])
    assert row["params"] == metrics["params"]["compressed"]
    assert row["bytes"] == metrics["quantized"]["bytes"] and row["byte_ratio"] == pytest.approx(metrics["quantized"]["ratio"])
    assert row["quantized"] == pytest.approx(metrics["quantized"]["test"]["accuracy"])
    assert quantize_runs.main([str(out), "--bits", "4"]) == 0
    assert f"| r | {row['params']:,} | {row['bytes']:,} |" in capsys.readouterr().out
