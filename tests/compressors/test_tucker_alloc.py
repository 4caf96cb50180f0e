"""Tests of Tucker core-size allocation (greedy vs uniform) and the aligned / paired reshapes."""
import argparse
import math

import numpy as np
import pytest

import engine
from engine import Tensor
from layers import Conv2d, Dense
from layers.models import lenet300, lenet5
from compressors import tucker
from compressors.tucker import ScadaCompressor, TuckerCompressor, TuckerConv2d, TuckerDense


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


def total_values(layer_modes, ranks):
    return sum(tucker.tucker_params(m, k) for m, k in zip(layer_modes, ranks))


LENET5_MODES = [(4, 5, 5, 5), (10, 10, 10, 25), (20, 25, 25, 32), (5, 10, 10, 10)]   # balanced, D = 4


# ---------------------------------------------------------------- greedy allocation
@pytest.mark.parametrize("budget", [500, 624, 1000, 1850, 5000])
def test_greedy_respects_the_budget_and_no_allowed_step_still_fits(budget):
    ranks = tucker.solve_ranks_greedy(LENET5_MODES, budget, min_rank=2)
    assert total_values(LENET5_MODES, ranks) <= budget
    for li, (modes, rs) in enumerate(zip(LENET5_MODES, ranks)):
        for i, (m, k) in enumerate(zip(modes, rs)):
            assert 2 <= k <= m and k <= math.prod(modes) // m
            if k < m and k < math.prod(modes) // m:       # every allowed increment would break the budget
                raised = [list(r) for r in ranks]
                raised[li][i] += 1
                assert total_values(LENET5_MODES, raised) > budget, (li, i)
    assert ranks == tucker.solve_ranks_greedy(LENET5_MODES, budget, min_rank=2)     # deterministic


def test_greedy_gives_small_layers_more_than_the_uniform_rule():
    budget = 624                                           # LeNet-5 at 691x without biases
    uniform = tucker.solve_ranks(LENET5_MODES, budget, min_rank=2)
    greedy = tucker.solve_ranks_greedy(LENET5_MODES, budget, min_rank=2)
    # the uniform rule leaves conv1 (500 values) and the 10-class layer at 2 x 2 x 2 x 2
    assert math.prod(uniform[0]) == 16 and math.prod(uniform[3]) == 16
    assert math.prod(greedy[0]) > 16 and math.prod(greedy[3]) > 16
    # and the total of log core sizes, the quantity greedy maximises, is larger
    log_size = lambda ranks: sum(math.log(math.prod(r)) for r in ranks)   # noqa: E731
    assert log_size(greedy) > log_size(uniform)


def test_greedy_step_value_orders_cheap_modes_first():
    # one layer of modes (2, 50): raising the size-2 mode costs 2 + 1, the size-50 mode 50 + 1
    ranks = tucker.solve_ranks_greedy([(2, 50)], budget=1 + 2 + 50 + 3, min_rank=1)
    assert ranks == [[2, 1]]
    ranks = tucker.solve_ranks_greedy([(2, 50)], budget=1 + 2 + 50 + 3 + 52, min_rank=1)
    assert ranks == [[2, 2]]


def test_greedy_refuses_a_budget_below_the_minimum_cores():
    with pytest.raises(ValueError, match="too small"):
        tucker.solve_ranks_greedy(LENET5_MODES, 100, min_rank=2)


def test_compress_with_greedy_allocation_meets_the_ratio_and_counts_exactly(seeded):
    model = lenet5()
    dense = model.num_parameters()
    report = tucker.compress(model, ratio=691, order=4, min_rank=2, bias=False, allocation="greedy")
    by_hand = sum(math.prod(r["ranks"]) + sum(m * k for m, k in zip(r["modes"], r["ranks"]))
                  for r in report["layers"])
    assert report["params"] == by_hand == model.num_parameters()
    assert report["ratio"] == pytest.approx(dense / by_hand)
    assert 691 <= report["ratio"] <= 691 * 1.03      # budget met and nearly filled
    with pytest.raises(ValueError, match="allocation"):
        tucker.compress(lenet5(), ratio=50, order=4, allocation="best")


# ---------------------------------------------------------------- aligned and paired reshapes
@pytest.mark.parametrize("n_first,n_second,order", [(784, 300, 4), (100, 10, 4), (20, 25, 4), (800, 500, 3)])
def test_aligned_shape_keeps_the_two_indices_in_separate_modes(n_first, n_second, order):
    modes = tucker.aligned_shape(n_first, n_second, order)
    assert len(modes) == order and min(modes) >= 2
    split = next(d for d in range(1, order) if math.prod(modes[:d]) == n_first)
    assert math.prod(modes[split:]) == n_second
    assert tucker.aligned_shape(784, 300, 4) == (28, 28, 15, 20)


def test_aligned_shape_errors():
    with pytest.raises(ValueError, match="order >= 2"):
        tucker.aligned_shape(6, 6, 1)
    with pytest.raises(ValueError, match="cannot be split"):
        tucker.aligned_shape(7, 11, 3)


@pytest.mark.parametrize("n_first,n_second,order", [(784, 300, 3), (784, 300, 4), (100, 10, 3), (20, 25, 5),
                                                    (50, 500, 4)])
def test_paired_shape_pairs_a_part_of_each_index_in_every_mode(n_first, n_second, order):
    modes, p, q = tucker.paired_shape(n_first, n_second, order)
    assert math.prod(p) == n_first and math.prod(q) == n_second
    assert modes == tuple(a * b for a, b in zip(p, q)) and min(modes) >= 2
    with pytest.raises(ValueError, match="cannot be paired"):
        tucker.paired_shape(2, 3, 3)


def reference_paired_weight(tensor, p, q):
    """W[i, j] = T[(p_t digit of i) * q_t + (q_t digit of j) for each mode t], element by element."""
    n_first, n_second = math.prod(p), math.prod(q)
    weight = np.empty((n_first, n_second))
    for i in range(n_first):
        pi = np.unravel_index(i, p)
        for j in range(n_second):
            qj = np.unravel_index(j, q)
            weight[i, j] = tensor[tuple(a * qt + b for a, b, qt in zip(pi, qj, q))]
    return weight


def test_paired_dense_rebuild_matches_the_elementwise_definition(seeded):
    modes, p, q = tucker.paired_shape(6, 10, 3)
    layer = TuckerDense.from_dense(Dense(6, 10, dtype=np.float64), ranks=[2, 2, 2], order=3, shape=modes,
                                   pairing=(p, q))
    tensor = engine.ops.tucker_to_tensor(layer.core, layer.factors).data
    np.testing.assert_allclose(layer.rebuilt_weight().data, reference_paired_weight(tensor, p, q), rtol=1e-12)
    layer.eval()                                           # the cached weight is the same
    np.testing.assert_allclose(layer.rebuilt_weight().data, reference_paired_weight(tensor, p, q), rtol=1e-12)


@pytest.mark.parametrize("layer_kind", ["dense", "conv"])
def test_paired_from_weights_with_full_ranks_is_exact(seeded, layer_kind):
    if layer_kind == "dense":
        original = Dense(6, 10, dtype=np.float64)
        modes, p, q = tucker.paired_shape(6, 10, 2)
        x = seeded.standard_normal((3, 6))
        converted = TuckerDense.from_dense(original, ranks=list(modes), order=2, shape=modes, pairing=(p, q),
                                           from_weights=True)
    else:
        original = Conv2d(2, 4, 2, dtype=np.float64)
        modes, p, q = tucker.paired_shape(4, 8, 3)
        x = seeded.standard_normal((2, 2, 4, 4))
        converted = TuckerConv2d.from_conv(original, ranks=list(modes), order=3, shape=modes, pairing=(p, q),
                                           from_weights=True)
    np.testing.assert_allclose(converted(x).data, original(x).data, rtol=1e-10, atol=1e-12)


def test_gradcheck_paired_layers(seeded):
    modes, p, q = tucker.paired_shape(4, 6, 2)
    dense = TuckerDense.from_dense(Dense(4, 6, dtype=np.float64), ranks=[2, 2], order=2, shape=modes,
                                   pairing=(p, q))
    x = Tensor(seeded.standard_normal((2, 4)), requires_grad=True)
    assert engine.gradcheck(lambda x_, *ps: dense(x_), x, *dense.parameters())
    modes, p, q = tucker.paired_shape(2, 8, 2)
    conv = TuckerConv2d.from_conv(Conv2d(2, 2, 2, dtype=np.float64), ranks=[2, 2], order=2, shape=modes,
                                  pairing=(p, q))
    x = Tensor(seeded.standard_normal((1, 2, 3, 3)), requires_grad=True)
    assert engine.gradcheck(lambda x_, *ps: conv(x_), x, *conv.parameters())


def test_set_pairing_checks_the_sizes(seeded):
    layer = TuckerDense(6, 10, ranks=2, order=2, shape=(12, 5))
    with pytest.raises(ValueError, match="TuckerDense: pairing"):
        layer.set_pairing((3, 2), (5, 2))                 # gives modes (15, 4), not (12, 5)


@pytest.mark.parametrize("reshape", ["aligned", "paired"])
def test_compress_with_a_reshape_counts_and_runs(seeded, reshape):
    model = lenet300()
    dense = model.num_parameters()
    report = tucker.compress(model, ratio=233, order=3, min_rank=1, bias=False, allocation="greedy",
                             reshape=reshape)
    assert report["ratio"] == pytest.approx(dense / model.num_parameters())
    assert 233 <= report["ratio"] <= 233 * 1.05
    for row, (n_in, n_out) in zip(report["layers"], [(784, 300), (300, 100), (100, 10)]):
        assert math.prod(row["modes"]) == n_in * n_out
    x = seeded.standard_normal((2, 784)).astype(np.float32)
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="reshape"):
        tucker.compress(lenet300(), ratio=50, order=3, reshape="zigzag")


def test_scada_with_paired_modes_shares_one_core(seeded):
    model = lenet5()
    report = tucker.compress(model, order=4, shared_core=True, k=2, reshape="paired", bias=False)
    cores = {id(m.core) for m in model.modules() if isinstance(m, (TuckerDense, TuckerConv2d))}
    assert len(cores) == 1
    factor_values = sum(sum(r["modes"]) * 2 for r in report["layers"])
    assert report["params"] == 2 ** 4 + factor_values == model.num_parameters()


def test_cli_flags_reach_compress(seeded):
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    ScadaCompressor.add_arguments(parser)
    args = parser.parse_args(["--tucker-ratio", "691", "--tucker-no-bias", "--tucker-order", "3",
                              "--tucker-min-rank", "1", "--tucker-alloc", "greedy", "--tucker-reshape", "paired"])
    compressor = TuckerCompressor(args)
    model = compressor.apply(lenet5(), None)
    config = compressor.config()
    assert config["allocation"] == "greedy" and config["reshape"] == "paired"
    assert config["params"] == model.num_parameters() and config["ratio"] >= 691
    assert all(getattr(m, "pairing", None) is not None for m in model.modules()
               if isinstance(m, (TuckerDense, TuckerConv2d)))
    with pytest.raises(SystemExit):
        parser.parse_args(["--tucker-alloc", "best"])


def test_per_layer_orders(seeded):
    model = lenet300()
    report = tucker.compress(model, ratio=233, order=[3, 3, 4], min_rank=1, bias=False, allocation="greedy",
                             reshape="paired")
    assert [len(r["modes"]) for r in report["layers"]] == [3, 3, 4]
    assert report["params"] == model.num_parameters()
    with pytest.raises(ValueError, match="3 orders for 2 layers"):
        tucker.compress(lenet300(), ratio=50, order=[3, 3, 4], layers="1,3")
    with pytest.raises(ValueError, match="one order for every layer"):
        tucker.compress(lenet300(), order=[3, 3, 4], shared_core=True, k=2, reshape="paired")
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    args = parser.parse_args(["--tucker-order", "3,3,4", "--tucker-ratio", "233", "--tucker-ranks", "2,3,2"])
    assert TuckerCompressor(args).order == [3, 3, 4] and TuckerCompressor(args).ranks == [2, 3, 2]
    assert TuckerCompressor(parser.parse_args(["--tucker-order", "3"])).order == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--tucker-order", "3,x"])


def test_list_flags_survive_a_config_file_round_trip(tmp_path):
    from training import argconfig
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    args = parser.parse_args(["--tucker-order", "3,3,4", "--tucker-ranks", "2,3,2"])
    # train.py writes the parsed values to config.toml and checks them against the parser on --config
    checked = argconfig.check_values({"tucker_order": args.tucker_order, "tucker_ranks": args.tucker_ranks},
                                     parser, "config.toml")
    compressor = TuckerCompressor(argparse.Namespace(**checked))
    assert compressor.order == [3, 3, 4] and compressor.ranks == [2, 3, 2]
