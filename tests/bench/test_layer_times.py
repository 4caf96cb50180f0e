"""bench/layer_times.py: the Amdahl sums on scripted layers, and a real breakdown of a small model pair."""
import copy

import pytest

from bench import layer_floors, layer_times


def _row(name, flops, seconds, converted, bare=None, rate_floor=None, own_rate_floor=None):
    row = {"layer": name, "flops_dense": flops[0], "flops_compressed": flops[1], "seconds_dense": seconds[0],
           "seconds_compressed": seconds[1], "converted": converted}
    if bare:
        row["seconds_bare_products"] = bare
    if rate_floor:
        row["seconds_rate_floor"] = rate_floor
    if own_rate_floor:
        row["seconds_own_rate_floor"] = own_rate_floor
    return row


def test_summary_sums_bounds_and_rates():
    layers = [_row("0", (900, 100), (0.8, 0.4), True, bare=(0.6, 0.2), rate_floor=(0.7, 0.3), own_rate_floor=0.35),
              _row("1", (100, 100), (0.2, 0.2), False)]
    r = layer_times.summarize(layers, whole_dense=1.0, whole_compressed=0.6, batch=10)
    assert r["flop_reduction"] == pytest.approx(1000 / 200)
    assert r["speedup"] == pytest.approx(1.0 / 0.6)
    assert r["converted_flop_reduction"] == pytest.approx(9.0) and r["converted_speedup"] == pytest.approx(2.0)
    assert r["unchanged_share_dense"] == pytest.approx(0.2)
    assert r["amdahl_bound"] == pytest.approx(1.0 / (0.2 + 0.8 / 9))          # converted at their FLOP reduction
    assert r["bare_products_speedup"] == pytest.approx(3.0)
    assert r["bare_bound"] == pytest.approx((0.2 + 0.6) / (0.2 + 0.2))        # converted at the bare BLAS floor
    assert r["rate_floor_bound"] == pytest.approx((0.2 + 0.7) / (0.2 + 0.3))   # both at the rate floor
    assert r["rate_floor_bound_measured_dense"] == pytest.approx((0.2 + 0.8) / (0.2 + 0.3))
    assert r["own_rate_floor_bound"] == pytest.approx((0.2 + 0.8) / (0.2 + 0.35))   # products at their own rate
    assert r["gflops"] == pytest.approx([1000 * 10 / 1.0 / 1e9, 200 * 10 / 0.6 / 1e9])
    r.update(ops_dense=1, ops_compressed=2)
    text = layer_times.table([("case", r)])
    assert "| case | 5.00x | 1.67x | 3.00x | 20% |" in text and "| 1.80x / 2.00x / 1.82x |" in text
    del layers[0]["seconds_own_rate_floor"]                                  # a converted layer without one: no bound
    assert layer_times.summarize(layers, 1.0, 0.6, 10)["own_rate_floor_bound"] is None


def _converted(layer, rank):
    from compressors.lowrank_layers import LowRankConv2d, LowRankDense
    if hasattr(layer, "kernel_size"):
        return LowRankConv2d.from_conv(layer, rank)
    return LowRankDense.from_dense(layer, rank)


@pytest.mark.parametrize("one_product_min_k", [0, 10 ** 9], ids=["one product a chunk", "per image"])
def test_rate_floor_pays_patches_and_bias_and_scales_the_dense_product_by_flops(one_product_min_k, monkeypatch):
    import numpy as np
    from engine.ops import conv as conv_ops
    from layers import Conv2d, Dense, ReLU
    monkeypatch.setattr(conv_ops, "ONE_PRODUCT_MIN_K", one_product_min_k)     # both ways the pass multiplies
    monkeypatch.setattr(conv_ops, "_one_thread", lambda: True)
    monkeypatch.setattr(conv_ops, "INFERENCE_CHUNK_BYTES", 3 * 4 * 9 * 36 * 4)      # three images a chunk
    x = np.random.default_rng(0).standard_normal((7, 4, 8, 8)).astype(np.float32)
    conv, dense = Conv2d(4, 6, 3), Dense(20, 5)
    for layer, rank, data, k, n, convolution in ((conv, 2, x, 4 * 9, 6, True),
                                                 (dense, 3, x.reshape(7, -1)[:, :20].copy(), 20, 5, False)):
        floor = layer_floors.rate_floor(layer, _converted(layer, rank), data, repeats=1)
        assert floor["seconds_compressed_products"] == pytest.approx(
            floor["seconds_dense_product"] * rank * (k + n) / (n * k))
        assert (floor["seconds_patches"] > 0) == convolution        # a dense layer forms no patches
        assert floor["seconds_bias"] > 0 and floor["dense_product_gflops"] > 0
        assert 0 < floor["seconds_own_products"] and floor["seconds_bias"] < floor["seconds_own_rate"]
        # the best chunking: no more than the pass's own chunk's total
        assert floor["seconds_own_rate"] <= floor["seconds_patches"] + floor["seconds_bias"] + floor["seconds_own_products"]
    assert layer_floors.rate_floor(ReLU(), _converted(dense, 3), x, repeats=1) is None     # neither kind


def test_breakdown_of_a_low_rank_lenet5_finds_the_converted_layers():
    import engine
    from compressors import lowrank
    from layers.models import lenet5
    from bench.inference import _image
    engine.manual_seed(0)
    dense = lenet5().eval()
    small = copy.deepcopy(dense)
    lowrank.truncate(small, rank=[5, 10, 10, 10])
    r = layer_times.breakdown(dense, small.eval(), _image(4), repeats=1)
    converted = {row["layer"]: row for row in r["layers"] if row["converted"]}
    assert set(converted) == {"0", "2", "5"}                # conv1, conv2, fc1; the 10-way output stays dense
    assert all("seconds_patch_copy" in converted[name] for name in ("0", "2"))
    assert "seconds_patch_copy" not in converted["5"]
    assert all(len(row["seconds_bare_products"]) == 2 for row in converted.values())
    assert all(row["seconds_rate_floor"][1] < row["seconds_rate_floor"][0] for row in converted.values())
    assert all(row["seconds_own_rate_floor"] > 0 for row in converted.values()) and r["own_rate_floor_bound"] > 0
    assert r["rate_floor_bound"] > 1        # both floors share one product rate: fewer FLOPs, a lower floor
    # against the dense layers' measured time: a ratio of two timings (one sample each here), so only
    # that it is formed; whether it exceeds 1 depends on the machine (CI read 0.09 once)
    assert r["rate_floor_bound_measured_dense"] > 0
    assert r["ops_compressed"] == r["ops_dense"]            # each factored layer is one op (pointwise, low_rank_linear)
    assert r["flop_reduction"] > 2
    text = layer_times.layer_table("low-rank LeNet-5", r)
    assert "Conv2d -> LowRankConv2d" in text and "Dense -> LowRankDense" in text


def test_recurrent_sublayers_count_once_per_step():
    import engine
    from compressors import lowrank
    from layers.models import sequence_model
    from bench.inference import _sequence
    engine.manual_seed(0)
    dense = sequence_model("gru", n_in=2, hidden=16).eval()
    small = copy.deepcopy(dense)
    lowrank.truncate(small, rank=4)
    pairs = layer_times.converted_pairs(dense, small)
    assert {name.rsplit(".", 1)[-1] for name, _, _ in pairs} == {"hh_reset", "hh_update", "hh_state"}
    x = _sequence(3)
    _, calls = layer_times.layer_inputs(small, x, [(name, module) for name, _, module in pairs])
    assert set(calls.values()) == {x.shape[1]}              # one call per time step
    r = layer_times.breakdown(dense, small, x, repeats=1)   # the cell's other work is in no floor: no bound
    assert r["rate_floor_bound"] is None and r["rate_floor_bound_measured_dense"] is None


def test_whole_seconds_times_both_models_in_turn_without_a_graph(monkeypatch):
    import numpy as np
    import engine
    from bench import timing
    from layers import Dense
    seen = []

    def in_turn(fns, repeats, warmup, min_time):
        for fn in fns:
            fn()
        return [0.3, 0.1]
    monkeypatch.setattr(timing, "paired_median_seconds", in_turn)
    dense, small = Dense(4, 4), Dense(4, 4)
    for name, model in (("dense", dense), ("small", small)):
        model.register_forward_hook(lambda m, a, out, name=name: seen.append((name, engine.is_grad_enabled())))
    assert layer_times.whole_seconds(dense, small, np.zeros((2, 4), np.float32), repeats=2) == (0.3, 0.1)
    assert seen == [("dense", False), ("small", False)]
