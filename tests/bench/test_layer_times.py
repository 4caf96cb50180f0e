"""bench/layer_times.py: the Amdahl sums on scripted layers, and a real breakdown of a small model pair."""
import copy

import pytest

from bench import layer_times


def _row(name, flops, seconds, converted, bare=None):
    row = {"layer": name, "flops_dense": flops[0], "flops_compressed": flops[1], "seconds_dense": seconds[0],
           "seconds_compressed": seconds[1], "converted": converted}
    if bare:
        row["seconds_bare_products"] = bare
    return row


def test_summary_sums_bounds_and_rates():
    layers = [_row("0", (900, 100), (0.8, 0.4), True, bare=(0.6, 0.2)), _row("1", (100, 100), (0.2, 0.2), False)]
    r = layer_times.summarize(layers, whole_dense=1.0, whole_compressed=0.6, batch=10)
    assert r["flop_reduction"] == pytest.approx(1000 / 200)
    assert r["speedup"] == pytest.approx(1.0 / 0.6)
    assert r["converted_flop_reduction"] == pytest.approx(9.0) and r["converted_speedup"] == pytest.approx(2.0)
    assert r["unchanged_share_dense"] == pytest.approx(0.2)
    assert r["amdahl_bound"] == pytest.approx(1.0 / (0.2 + 0.8 / 9))          # converted at their FLOP reduction
    assert r["bare_products_speedup"] == pytest.approx(3.0)
    assert r["bare_bound"] == pytest.approx((0.2 + 0.6) / (0.2 + 0.2))        # converted at the bare BLAS floor
    assert r["gflops"] == pytest.approx([1000 * 10 / 1.0 / 1e9, 200 * 10 / 0.6 / 1e9])
    r.update(ops_dense=1, ops_compressed=2)
    assert "| case | 5.00x | 1.67x | 3.00x | 20% |" in layer_times.table([("case", r)])


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
    assert r["ops_compressed"] > r["ops_dense"]             # the factored fc1 makes two products
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
