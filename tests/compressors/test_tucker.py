"""Tests of ADA-/SCADA-Tucker: dimension adjustment, counting, ratios, init variance, caching, gradients."""
import argparse
import itertools
import math

import numpy as np
import pytest

import engine
from engine import Tensor
from engine.kernels import tucker as kernels
from layers import Conv2d, Dense, Sequential
from layers.models import lenet300, lenet5
from compressors import tucker
from compressors.tucker import TuckerCompressor, TuckerConv2d, TuckerDense, ScadaCompressor


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


def brute_force_best_sum(count, order):
    """Smallest sum of `order` sizes >= 2 whose product is `count`, by trying every divisor tuple."""
    divisors = [d for d in range(2, count + 1) if count % d == 0]
    best = None
    for combo in itertools.combinations_with_replacement(divisors, order):
        if math.prod(combo) == count and (best is None or sum(combo) < best):
            best = sum(combo)
    return best


# ---------------------------------------------------------------- dimension adjustment
@pytest.mark.parametrize("count,order", [(784 * 300, 5), (500 * 800, 5), (20 * 1 * 5 * 5, 4),
                                         (300 * 100, 5), (100 * 10, 5), (720, 3), (4096, 4)])
def test_balanced_shape_is_exact_and_as_balanced_as_any(count, order):
    shape = tucker.balanced_shape(count, order)
    assert len(shape) == order and math.prod(shape) == count and min(shape) >= 2
    if count <= 5000:
        assert sum(shape) == brute_force_best_sum(count, order)


def test_balanced_shape_of_lenet300_first_layer_matches_the_paper_balance():
    # the paper writes 784 x 300 as 10 x 12 x 14 x 14 x 10 (sum 60); ours is a permutation-equal balance
    shape = tucker.balanced_shape(784 * 300, 5)
    assert sorted(shape) == sorted((10, 12, 14, 14, 10))


@pytest.mark.parametrize("count,order", [(7, 2), (97 * 2, 3), (20 * 1 * 5 * 5, 6), (1, 2)])
def test_balanced_shape_refuses_counts_that_cannot_be_split(count, order):
    with pytest.raises(ValueError, match=f"cannot be split into {order} mode sizes"):
        tucker.balanced_shape(count, order)


def test_explicit_shapes_are_checked():
    assert tucker.adjust_dimensions(500, shape=(20, 25)) == (20, 25)
    with pytest.raises(ValueError, match=r"explicit shape \(20, 24\) has product 480, but the weight has 500"):
        tucker.adjust_dimensions(500, shape=(20, 24))
    with pytest.raises(ValueError, match="order"):
        tucker.adjust_dimensions(500)
    layer = TuckerDense(20, 25, ranks=3, shape=(4, 5, 5, 5))
    assert layer.modes == (4, 5, 5, 5) and layer.ranks == (3, 3, 3, 3)


# ---------------------------------------------------------------- counting and ratios
def test_stored_params_are_core_plus_factors_plus_bias(seeded):
    layer = TuckerDense(784, 300, ranks=[3, 4, 2, 5, 3], order=5)
    m = layer.modes
    by_hand = 3 * 4 * 2 * 5 * 3 + (m[0] * 3 + m[1] * 4 + m[2] * 2 + m[3] * 5 + m[4] * 3) + 300
    assert layer.num_parameters() == by_hand
    conv = TuckerConv2d(20, 50, 5, ranks=2, order=5, bias=False)
    assert conv.num_parameters() == 2 ** 5 + 2 * sum(conv.modes)
    assert math.prod(conv.modes) == 50 * 20 * 5 * 5


def test_ratio_of_a_compressed_lenet300_equals_the_formula(seeded):
    model = lenet300()
    dense = model.num_parameters()
    assert dense == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    report = tucker.compress(model, ratio=100, order=5)
    by_hand = 0
    for row, (n_in, n_out) in zip(report["layers"], [(784, 300), (300, 100), (100, 10)]):
        modes, ranks = row["modes"], row["ranks"]
        assert math.prod(modes) == n_in * n_out
        by_hand += math.prod(ranks) + sum(mi * ki for mi, ki in zip(modes, ranks)) + n_out
    assert model.num_parameters() == by_hand == report["params"]
    assert report["ratio"] == pytest.approx(dense / by_hand)
    assert 100 <= report["ratio"] < 105      # the budget is met and nearly filled
    assert report["bytes"] == 4 * by_hand   # float32


def test_network_ratio_solver_fills_the_budget_and_no_single_rank_fits_more():
    layer_modes = [(10, 10, 12, 14, 14), (5, 6, 10, 10, 10)]
    budget = 900
    ranks = tucker.solve_ranks(layer_modes, budget)
    total = sum(tucker.tucker_params(m, k) for m, k in zip(layer_modes, ranks))
    assert total <= budget
    for li, (modes, rs) in enumerate(zip(layer_modes, ranks)):
        for i in range(len(modes)):
            if rs[i] < modes[i]:
                raised = [list(r) for r in ranks]
                raised[li][i] += 1
                assert sum(tucker.tucker_params(m, k) for m, k in zip(layer_modes, raised)) > budget
    with pytest.raises(ValueError, match="too small"):
        tucker.solve_ranks(layer_modes, 50)


def test_per_layer_ratio(seeded):
    layer = TuckerDense(300, 100, ratio=50, order=4)
    assert (300 * 100 + 100) / layer.num_parameters() >= 50
    model = lenet300()
    report = tucker.compress(model, ratio=20, order=4, per_layer=True, min_rank=1)
    for row in report["layers"]:
        assert row["dense_params"] / row["params"] >= 20


def test_scada_counts_the_shared_core_once(seeded):
    model = lenet300()
    report = tucker.compress(model, order=5, shared_core=True, k=3)
    layers = [m for m in model.modules() if isinstance(m, TuckerDense)]
    assert len(layers) == 3 and all(m.core is layers[0].core for m in layers)
    by_hand = 3 ** 5 + sum(3 * sum(m.modes) + m.n_out for m in layers)
    assert model.num_parameters() == by_hand == report["params"]
    assert sum(1 for k in model.state_dict() if k.endswith(".core")) == 1
    # a state_dict round trip keeps one core and the same outputs
    x = seeded.standard_normal((2, 784)).astype(np.float32)
    expected = model(x).data
    clone = lenet300()
    tucker.compress(clone, order=5, shared_core=True, k=3)
    clone.load_state_dict(model.state_dict())
    np.testing.assert_allclose(clone(x).data, expected, rtol=1e-5, atol=1e-6)


def test_no_bias_option_drops_biases_but_the_dense_count_keeps_them(seeded):
    model = lenet5()
    report = tucker.compress(model, ratio=691, order=4, min_rank=2, bias=False)
    layers = [m for m in model.modules() if isinstance(m, (TuckerDense, TuckerConv2d))]
    assert all(m.bias is None for m in layers)
    by_hand = sum(math.prod(m.ranks) + sum(a * b for a, b in zip(m.modes, m.ranks)) for m in layers)
    assert report["params"] == model.num_parameters() == by_hand
    assert report["ratio"] == pytest.approx(431080 / by_hand) and report["ratio"] >= 691


def test_scada_ratio_solves_the_largest_shared_core(seeded):
    model = lenet300()
    report = tucker.compress(model, ratio=150, order=5, shared_core=True)
    k = report["shared_core"][0]
    sums = [sum(r["modes"]) for r in report["layers"]]
    total = lambda side: side ** 5 + side * sum(sums) + 410   # noqa: E731  (410 biases)
    assert total(k) <= 266610 / 150 < total(k + 1)
    assert report["params"] == total(k)


# ---------------------------------------------------------------- forward, init, gradients
def test_forward_equals_the_dense_layer_of_the_rebuilt_weight(seeded):
    tl = pytest.importorskip("tensorly", reason="tensorly (test extra) is the oracle for the rebuild")
    layer = TuckerDense(6, 10, ranks=2, order=3, dtype=np.float64)
    x = seeded.standard_normal((4, 6))
    w = tl.tucker_to_tensor((layer.core.data, [f.data for f in layer.factors])).reshape(6, 10)
    np.testing.assert_allclose(layer(x).data, x @ w + layer.bias.data, rtol=1e-12)


def test_conv_forward_equals_conv2d_with_the_rebuilt_weight(seeded):
    layer = TuckerConv2d(3, 4, 3, ranks=2, order=3, stride=2, padding=1, dtype=np.float64)
    reference = Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    with engine.no_grad():
        reference.weight.data = layer.rebuilt_weight().data.copy()
    reference.bias.data = layer.bias.data.copy()
    x = seeded.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(layer(x).data, reference(x).data, rtol=1e-12)


@pytest.mark.parametrize("make,fan_in", [
    (lambda: TuckerDense(784, 300, ranks=4, order=5), 784),
    (lambda: TuckerDense(300, 100, ranks=[2, 3, 4, 5, 6], order=5), 300),
    (lambda: TuckerConv2d(20, 50, 5, ranks=4, order=5), 20 * 25),
])
def test_init_gives_the_dense_init_variance(make, fan_in):
    variances = []
    for seed in range(4):
        engine.manual_seed(seed)
        variances.append(float(make().rebuilt_weight().data.astype(np.float64).var()))
    assert np.mean(variances) == pytest.approx(1.0 / (3.0 * fan_in), rel=0.2)


def test_scada_init_gives_each_layer_its_dense_variance():
    variances = {784: [], 300: [], 100: []}
    for seed in range(4):
        engine.manual_seed(seed)
        model = lenet300()
        tucker.compress(model, order=5, shared_core=True, k=4)
        for m in model.modules():
            if isinstance(m, TuckerDense):
                variances[m.n_in].append(float(m.rebuilt_weight().data.astype(np.float64).var()))
    for fan_in, values in variances.items():
        assert np.mean(values) == pytest.approx(1.0 / (3.0 * fan_in), rel=0.3), fan_in


def test_gradcheck_tucker_dense(seeded):
    layer = TuckerDense(4, 6, ranks=2, order=3, dtype=np.float64)
    x = Tensor(seeded.standard_normal((3, 4)), requires_grad=True)
    params = [p for p in layer.parameters()]
    assert len(params) == 1 + 3 + 1
    assert engine.gradcheck(lambda x_, *ps: layer(x_), x, *params)


def test_gradcheck_tucker_conv2d(seeded):
    layer = TuckerConv2d(2, 2, 2, ranks=[2, 1, 2], order=3, padding=1, dtype=np.float64)
    x = Tensor(seeded.standard_normal((1, 2, 3, 3)), requires_grad=True)
    assert engine.gradcheck(lambda x_, *ps: layer(x_), x, *layer.parameters())


def test_gradcheck_shared_core_sums_gradients_from_every_layer(seeded):
    from layers.module import Parameter
    shared = Parameter(seeded.standard_normal((2, 2, 2)))
    a = TuckerDense(4, 2, order=3, core=shared, dtype=np.float64)
    b = TuckerDense(2, 4, order=3, core=shared, dtype=np.float64)
    net = Sequential(a, b)
    x = Tensor(seeded.standard_normal((2, 4)))
    assert engine.gradcheck(lambda *ps: net(x), *net.parameters())


# ---------------------------------------------------------------- caching and HOSVD
def test_eval_mode_caches_and_invalidates(seeded):
    layer = TuckerDense(12, 10, ranks=2, order=3)
    x = seeded.standard_normal((2, 12)).astype(np.float32)
    layer.eval()
    with engine.no_grad():
        first = layer(x).data
        w1 = layer.rebuilt_weight()
        assert layer.rebuilt_weight() is w1             # cached
    # load_state_dict replaces the arrays: the cache must not serve the old weight
    other = TuckerDense(12, 10, ranks=2, order=3)
    other.eval()
    layer.load_state_dict(other.state_dict())
    with engine.no_grad():
        assert layer.rebuilt_weight() is not w1
        np.testing.assert_allclose(layer(x).data, other(x).data, rtol=1e-6)
        assert not np.allclose(layer(x).data, first)
    # training mode rebuilds with a graph, so the parameters get gradients
    layer.train()
    layer(x).sum().backward()
    assert layer.core.grad is not None and all(f.grad is not None for f in layer.factors)
    assert layer._weight_cache.empty


def test_cache_survives_a_model_level_load_and_eval(seeded):
    model = lenet300()
    tucker.compress(model, ratio=50, order=5)
    x = seeded.standard_normal((3, 784)).astype(np.float32)
    model.eval()
    with engine.no_grad():
        model(x)
    fresh = lenet300()
    tucker.compress(fresh, ratio=50, order=5)
    model.load_state_dict(fresh.state_dict())
    fresh.eval()
    with engine.no_grad():
        np.testing.assert_allclose(model(x).data, fresh(x).data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer_kind", ["dense", "conv"])
def test_from_weights_with_full_ranks_is_exact(seeded, layer_kind):
    if layer_kind == "dense":
        dense = Dense(6, 10, dtype=np.float64)
        x = seeded.standard_normal((3, 6))
        converted = TuckerDense.from_dense(dense, ranks=list(tucker.balanced_shape(60, 3)), order=3,
                                           from_weights=True)
    else:
        dense = Conv2d(2, 3, 2, dtype=np.float64)
        x = seeded.standard_normal((2, 2, 4, 4))
        converted = TuckerConv2d.from_conv(dense, ranks=list(tucker.balanced_shape(24, 3)), order=3,
                                           from_weights=True)
    np.testing.assert_allclose(converted(x).data, dense(x).data, rtol=1e-10, atol=1e-12)


def test_compress_from_weights_truncation_error_shrinks_with_ranks(seeded):
    errors = []
    for ratio in (40, 10, 3):
        engine.manual_seed(1)
        model = lenet300()
        model.astype(np.float64)
        x = np.random.default_rng(1).standard_normal((4, 784))
        reference = model(x).data
        tucker.compress(model, ratio=ratio, order=3, from_weights=True)
        errors.append(float(np.abs(model(x).data - reference).max()))
    assert errors[0] > errors[1] > errors[2]


# ---------------------------------------------------------------- FLOPs, errors, plugin
def test_flops_are_the_dense_product_plus_one_rebuild_in_training(seeded):
    layer = TuckerDense(784, 300, ranks=3, order=5)
    x = Tensor(seeded.standard_normal((8, 784)).astype(np.float32))
    y = layer(x)
    rebuild = kernels.rebuild_flops((3,) * 5, [(m, 3) for m in layer.modes])
    assert layer.flops((x,), y) == 8 * 300 * (2 * 784 + 1) + rebuild
    conv = TuckerConv2d(1, 20, 5, ranks=2, order=4)
    xc = Tensor(seeded.standard_normal((2, 1, 28, 28)).astype(np.float32))
    yc = conv(xc)
    assert conv.flops((xc,), yc) == 2 * 20 * 24 * 24 * (2 * 25 + 1) + conv.rebuild_flops()
    layer.eval()   # inference reuses the cached weight: no rebuild per call
    assert layer.flops((x,), y) == 8 * 300 * (2 * 784 + 1)


def test_errors_name_the_layer_and_the_problem():
    with pytest.raises(ValueError, match="TuckerDense: expected input size 12"):
        TuckerDense(12, 10, ranks=2, order=3)(np.ones((2, 11), dtype=np.float32))
    with pytest.raises(ValueError, match="TuckerDense: ranks must be 3 positive ints"):
        TuckerDense(12, 10, ranks=[2, 2], order=3)
    with pytest.raises(ValueError, match="give ranks"):
        TuckerDense(12, 10, order=3)
    with pytest.raises(ValueError, match="too small"):
        tucker.compress(lenet300(), ratio=5000, order=5)
    with pytest.raises(ValueError, match="too small"):
        tucker.compress(lenet300(), ratio=5000, order=5, shared_core=True)
    with pytest.raises(ValueError, match=r"tucker.compress \(0\): .* 500 = 2 x 2 x 5 x 5 x 5 .* cannot be split into 6"):
        tucker.compress(lenet5(), ratio=10, order=6, layers=["0"])
    with pytest.raises(ValueError, match="no Dense/Conv2d layer named"):
        tucker.compress(lenet300(), ratio=10, layers=["nope"])


def _parse(argv, compressor):
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    ScadaCompressor.add_arguments(parser)      # both add the shared flags without a conflict
    return compressor(parser.parse_args(argv))


def test_plugins_compress_lenet5_and_report_the_ratio(seeded):
    ada = _parse(["--tucker-ratio", "100", "--tucker-order", "5"], TuckerCompressor)
    model = lenet5()
    dense = model.num_parameters()
    ada.apply(model, None)
    config = ada.config()
    assert config["ratio"] == pytest.approx(dense / model.num_parameters())
    assert config["ratio"] >= 100 and config["params"] == model.num_parameters()
    assert sum(isinstance(m, TuckerConv2d) for m in model.modules()) == 2
    x = seeded.standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert model(x).shape == (2, 10)

    scada = _parse(["--scada-k", "3", "--tucker-ranks", "2", "--tucker-order", "5"], ScadaCompressor)
    model = lenet5()
    scada.apply(model, None)
    assert scada.config()["shared_core"] == [3] * 5
    assert model(x).shape == (2, 10)
    with pytest.raises(SystemExit):
        _parse(["--tucker-ranks", "2,x"], TuckerCompressor)


MNIST_DIR = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="needs the real MNIST files in ../shared/data/mnist")
def test_train_py_metrics_ratio_equals_the_formula(tmp_path):
    import json
    import train
    out = tmp_path / "run"
    status = train.main(["--task", "mnist", "--model", "lenet300", "--data-dir", str(MNIST_DIR),
                         "--subset", "128", "--epochs", "1", "--steps", "1", "--no-progress",
                         "--compress", "tucker", "--tucker-ratio", "100", "--out", str(out)])
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    per_layer = metrics["compressor_config"]["per_layer"]
    by_hand = sum(math.prod(v["ranks"]) + sum(m * k for m, k in zip(v["modes"], v["ranks"]))
                  for v in per_layer.values()) + 300 + 100 + 10
    assert metrics["params"]["compressed"] == by_hand
    assert metrics["params"]["ratio"] == pytest.approx(266610 / by_hand)
    assert metrics["bytes"]["compressed"] == 4 * by_hand
