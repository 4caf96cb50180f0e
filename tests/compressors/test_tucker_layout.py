"""Tests of per-layer Tucker layouts (--tucker-layout): digits, core sizes, the shared budget, errors."""
import argparse

import numpy as np
import pytest

import engine
from engine.kernels import tucker as tucker_kernels
from layers.models import lenet300, lenet5
from compressors import tucker
from compressors.tucker import TuckerCompressor

LENET300_LAYOUT = "1=7x8x14/10x6x5@2x4x2,3=5x6x10/5x5x4@4x4x3,5=4x5x5/5x2x1@3x5x5"


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


def test_parse_layouts_reads_names_digits_and_optional_ranks():
    layouts = tucker.parse_layouts(" 1=7x8x14/10x6x5@2x4x2, 3=5X6x10/5x5x4 ")
    assert layouts == {"1": {"digits": ((7, 8, 14), (10, 6, 5)), "ranks": (2, 4, 2)},
                       "3": {"digits": ((5, 6, 10), (5, 5, 4)), "ranks": None}}


@pytest.mark.parametrize("text, match", [("", "no entries"), ("1:7x8x14/10x6x5", "NAME=DIGITS"),
                                         ("1=7x8xa/10x6x5", "sizes like 7x8x14"),
                                         ("1=7x8x14/10x6x5,1=7x8x14/10x6x5", "given twice"),
                                         ("1=7x8x14/10x30", "digit groups of one length")])
def test_parse_layouts_errors(text, match):
    with pytest.raises(ValueError, match=match):
        tucker.parse_layouts(text)


def test_layout_sets_modes_pairing_and_ranks_and_counts_them(seeded):
    model = lenet300()
    dense = model.num_parameters()
    report = tucker.compress(model, order=3, bias=False, layouts=tucker.parse_layouts(LENET300_LAYOUT))
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["1"]["modes"] == [70, 48, 70] and rows["1"]["ranks"] == [2, 4, 2]
    assert rows["5"]["modes"] == [20, 10, 5] and rows["5"]["ranks"] == [3, 5, 5]
    by_hand = (2 * 4 * 2 + 70 * 2 + 48 * 4 + 70 * 2) + (4 * 4 * 3 + 25 * 4 + 30 * 4 + 40 * 3) \
        + (3 * 5 * 5 + 20 * 3 + 10 * 5 + 5 * 5)
    assert report["params"] == model.num_parameters() == by_hand == 1086
    assert report["ratio"] == pytest.approx(dense / by_hand)
    layer = dict(model.named_modules())["1"]
    assert layer.pairing[0] == ((7, 8, 14), (10, 6, 5))
    assert model(np.zeros((2, 1, 28, 28), dtype=np.float32)).shape == (2, 10)


def test_layout_weight_is_the_permuted_tucker_tensor(seeded):
    """W[i, o] with i = (i1, i2, i3) in digits 7x8x14 and o = (o1, o2, o3) in 10x6x5 is T[(i1,o1), (i2,o2), (i3,o3)]."""
    model = lenet300()
    tucker.compress(model, bias=False, layouts={"1": {"digits": [[7, 8, 14], [10, 6, 5]], "ranks": [2, 3, 2]}},
                    ranks=2, order=3, reshape="paired")
    layer = dict(model.named_modules())["1"]
    tensor = tucker_kernels.tucker_rebuild(layer.core.data, [f.data for f in layer.factors])
    weight = layer.rebuilt_weight().data
    rng = np.random.default_rng(1)
    for _ in range(20):
        i = [int(rng.integers(d)) for d in (7, 8, 14)]
        o = [int(rng.integers(d)) for d in (10, 6, 5)]
        flat_in = (i[0] * 8 + i[1]) * 14 + i[2]
        flat_out = (o[0] * 6 + o[1]) * 5 + o[2]
        assert weight[flat_in, flat_out] == pytest.approx(tensor[i[0] * 10 + o[0], i[1] * 6 + o[1], i[2] * 5 + o[2]])


def test_layout_without_ranks_shares_the_budget_left_by_the_fixed_layers(seeded):
    model = lenet300()
    dense = model.num_parameters()
    report = tucker.compress(model, ratio=233, order=3, bias=False, allocation="greedy", reshape="paired",
                             min_rank=1, layouts=tucker.parse_layouts("1=7x8x14/10x6x5@2x4x2,3=5x6x10/5x5x4"))
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["1"]["ranks"] == [2, 4, 2]                         # fixed
    assert report["params"] <= dense / 233
    fixed = tucker.tucker_params((70, 48, 70), (2, 4, 2))
    free = tucker.solve_ranks_greedy([(25, 30, 40), (20, 10, 5)], dense / 233 - fixed, 1)
    assert [rows["3"]["ranks"], rows["5"]["ranks"]] == [list(r) for r in free]


def test_layout_errors(seeded):
    with pytest.raises(ValueError, match=r"layers \['9'\] that are not converted"):
        tucker.compress(lenet300(), ratio=50, layouts={"9": {"digits": [[7, 8, 14], [10, 6, 5]]}})
    with pytest.raises(ValueError, match="has 235200 elements|235200"):
        tucker.compress(lenet300(), ratio=50, layouts={"1": {"digits": [[7, 8, 14], [10, 6, 4]]}})
    with pytest.raises(ValueError, match=r"ranks must be 3 positive ints"):
        tucker.compress(lenet300(), ratio=50, layouts={"1": {"digits": [[7, 8, 14], [10, 6, 5]], "ranks": [2, 2]}})
    with pytest.raises(ValueError, match=r"for layers \['3', '5'\], whose layouts give no ranks"):
        tucker.compress(lenet300(), layouts={"1": {"digits": [[7, 8, 14], [10, 6, 5]], "ranks": [2, 2, 2]}})
    with pytest.raises(ValueError, match="a shared core fixes"):
        tucker.compress(lenet300(), shared_core=True, k=2, order=3,
                        layouts={"1": {"digits": [[7, 8, 14], [10, 6, 5]], "ranks": [2, 2, 2]}})
    with pytest.raises(ValueError, match="pairing"):          # digits that do not cover the 784 inputs first
        tucker.compress(lenet300(), ratio=50, layouts={"1": {"digits": [[10, 6, 5], [7, 8, 14]]}})


def test_layout_on_conv_layers_and_shared_core(seeded):
    model = lenet5()
    report = tucker.compress(model, shared_core=True, k=2, order=3, bias=False, reshape="paired",
                             layouts={"0": {"digits": [[4, 5, 1], [5, 1, 5]]}})
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["0"]["modes"] == [20, 5, 5] and rows["0"]["ranks"] == [2, 2, 2]
    assert report["params"] == 8 + sum(2 * sum(r["modes"]) for r in report["layers"])
    assert model(np.zeros((2, 1, 28, 28), dtype=np.float32)).shape == (2, 10)


def _compressor(*flags):
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    return TuckerCompressor(parser.parse_args(list(flags)))


def test_plugin_flag_applies_the_layout_and_records_it(seeded):
    compressor = _compressor("--tucker-layout", LENET300_LAYOUT, "--tucker-no-bias")
    assert compressor.ratio is None                        # every layer has its ranks: no default ratio
    model = compressor.apply(lenet300(), None)
    config = compressor.config()
    assert config["layout"] == LENET300_LAYOUT and config["params"] == model.num_parameters() == 1086
    assert config["per_layer"]["3"] == {"modes": [25, 30, 40], "ranks": [4, 4, 3], "params": 388}
    partial = _compressor("--tucker-layout", "1=7x8x14/10x6x5", "--tucker-order", "3")
    assert partial.ratio == 50.0                           # the other layers need a budget
    with pytest.raises(SystemExit):
        _compressor("--tucker-layout", "1=7x8x14")
