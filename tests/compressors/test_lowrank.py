"""Tests of compression-aware low-rank training: proximal operators, proximal steps, truncation, errors."""
import argparse

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor
from engine.optim import SGD
from layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU, Sequential
from layers.models import lenet300, lenet5
from compressors import lowrank
from compressors.lowrank import (LowRankCompressor, LowRankConv2d, LowRankDense, ProximalRegularizer,
                                 group_soft_threshold, singular_value_threshold, soft_threshold)


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


def nuclear_norm(x):
    return np.linalg.svd(x, compute_uv=False).sum()


def conv_net():
    """conv 2->5 3x3 (stride 2, pad 1), ReLU, conv 5->4 3x3 (dilation 2, pad 1), pool, flatten, dense."""
    return Sequential(Conv2d(2, 5, 3, stride=2, padding=1, dtype=np.float64), ReLU(),
                      Conv2d(5, 4, 3, dilation=2, padding=1, dtype=np.float64), MaxPool2d(2), Flatten(),
                      Dense(4 * 1 * 1, 3, dtype=np.float64))


# ------------------------------------------------------------- proximal operators
@pytest.mark.parametrize("shape", [(7, 4), (3, 9), (6, 6)])
def test_svt_equals_the_closed_form_and_is_the_prox(seeded, shape):
    y = seeded.standard_normal(shape)
    s_all = np.linalg.svd(y, compute_uv=False)
    t = float(np.median(s_all))           # some values survive, some are cut
    x, s = singular_value_threshold(y, t)
    # closed form computed independently through the eigen-decomposition of Y^T Y
    evals, v = np.linalg.eigh(y.T @ y)
    sigma = np.sqrt(np.clip(evals, 0, None))
    keep = sigma > t
    expected = y @ (v[:, keep] * ((sigma[keep] - t) / sigma[keep])) @ v[:, keep].T
    np.testing.assert_allclose(x, expected, atol=1e-10)
    np.testing.assert_allclose(np.sort(s)[::-1], np.maximum(s_all - t, 0), atol=1e-12)

    def objective(z):
        return 0.5 * ((z - y) ** 2).sum() + t * nuclear_norm(z)
    best = objective(x)
    for scale in (1e-1, 1e-3):
        for _ in range(20):
            assert objective(x + scale * seeded.standard_normal(shape)) >= best - 1e-12
    assert objective(y) > best and objective(np.zeros(shape)) > best


def test_svt_with_a_large_threshold_gives_zero(seeded):
    y = seeded.standard_normal((4, 5))
    x, s = singular_value_threshold(y, np.linalg.norm(y, 2) + 1)
    assert np.all(x == 0) and np.all(s == 0)


def test_group_soft_threshold_zeroes_exactly_the_small_groups(seeded):
    directions = seeded.standard_normal((8, 5))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = np.array([0.2, 1.5, 0.9, 3.0, 0.99, 1.01, 0.1, 2.0])
    groups = directions * norms[:, None]
    out = group_soft_threshold(groups, 1.0)
    zero = np.all(out == 0, axis=1)
    np.testing.assert_array_equal(zero, norms <= 1.0)
    survivors = ~zero
    np.testing.assert_allclose(np.linalg.norm(out[survivors], axis=1), norms[survivors] - 1.0, atol=1e-12)
    np.testing.assert_allclose(out[survivors] / np.linalg.norm(out[survivors], axis=1, keepdims=True),
                               directions[survivors], atol=1e-12)


def test_sparse_group_lasso_prox_is_the_minimiser(seeded):
    y = seeded.standard_normal((4, 6))
    l1, group = 0.3, 0.8
    x = group_soft_threshold(soft_threshold(y, l1), group)

    def objective(z):
        return 0.5 * ((z - y) ** 2).sum() + l1 * np.abs(z).sum() + group * np.linalg.norm(z, axis=1).sum()
    best = objective(x)
    for _ in range(40):
        assert objective(x + 1e-2 * seeded.standard_normal(y.shape)) >= best - 1e-12


@pytest.mark.parametrize("reshape", lowrank.CONV_RESHAPES)
def test_weight_matrix_round_trip(seeded, reshape):
    w = seeded.standard_normal((5, 3, 2, 4))
    m = lowrank.weight_matrix(w, reshape)
    assert m.shape == ((5, 24) if reshape == "filters" else (6, 20))
    np.testing.assert_array_equal(lowrank.matrix_to_weight(m, w.shape, reshape), w)


# ------------------------------------------------------------- proximal training
def test_prox_step_after_sgd_equals_svt_of_the_sgd_iterate(seeded):
    engine.manual_seed(2)
    net = Sequential(Dense(6, 5, dtype=np.float64), ReLU(), Dense(5, 3, dtype=np.float64))
    lr, tau = 0.1, 0.5
    reg = ProximalRegularizer(net, tau=tau, every=2)
    optimizer = SGD(net.parameters(), lr=lr)
    reg.attach(optimizer)
    x, labels = seeded.standard_normal((8, 6)), seeded.integers(0, 3, 8)
    for step in range(2):
        optimizer.zero_grad()
        F.cross_entropy(net(x), labels).backward()
        sgd_iterate = net[0].weight.data - lr * net[0].weight.grad
        optimizer.step()
        if step == 0:     # every=2: no prox yet
            np.testing.assert_allclose(net[0].weight.data, sgd_iterate, atol=1e-12)
    expected, _ = singular_value_threshold(sgd_iterate, 2 * lr * tau)
    np.testing.assert_allclose(net[0].weight.data, expected, atol=1e-10)


def test_proximal_training_lowers_the_rank(seeded):
    engine.manual_seed(3)
    net = Sequential(Dense(10, 8, dtype=np.float64), ReLU(), Dense(8, 4, dtype=np.float64))
    reg = ProximalRegularizer(net, tau=[2.0, 0.0])
    optimizer = SGD(net.parameters(), lr=0.05)
    reg.attach(optimizer)
    x, labels = seeded.standard_normal((16, 10)), seeded.integers(0, 4, 16)
    for _ in range(10):
        optimizer.zero_grad()
        F.cross_entropy(net(x), labels).backward()
        optimizer.step()
    assert np.linalg.matrix_rank(net[0].weight.data) < 8
    assert np.linalg.matrix_rank(net[2].weight.data) == 4


def test_group_lasso_removes_units_and_truncation_drops_them(seeded):
    net = lenet300(n_in=12, n_classes=3).astype(np.float64)
    dead = [0, 5, 17, 200]
    net[1].weight.data[:, dead] = 1e-4
    net[1].bias.data[dead] = 1e-4
    reg = ProximalRegularizer(net, group_lambda={"1": 1.0})
    reg.apply(0.01)                          # threshold 0.01 * sqrt(13) kills the tiny units only
    zero_units = np.flatnonzero(~np.any(lowrank.unit_groups(net[1]) != 0, axis=1))
    np.testing.assert_array_equal(zero_units, dead)
    x = seeded.standard_normal((5, 12))
    expected = net(x).data
    report = lowrank.truncate(net, rank=1000, keep_if_larger=True)
    np.testing.assert_allclose(net(x).data, expected, atol=1e-10)
    assert report["layers"][0]["units_dropped"] == len(dead)
    assert net[1].weight.shape == (12, 300 - len(dead)) and net[3].weight.shape == (300 - len(dead), 100)


def test_dead_conv_filters_are_dropped_through_pool_and_flatten(seeded):
    net = lenet5().astype(np.float64)
    net[2].weight.data[[3, 7]] = 0
    net[2].bias.data[[3, 7]] = 0
    x = seeded.standard_normal((2, 1, 28, 28))
    expected = net(x).data
    report = lowrank.truncate(net, layers=["2"], rank=1000)
    np.testing.assert_allclose(net(x).data, expected, atol=1e-10)
    assert report["layers"][0]["units_dropped"] == 2
    assert net[5].weight.shape == (48 * 16, 500)


def test_regularizer_value_matches_an_independent_sum(seeded):
    net = Sequential(Conv2d(2, 3, 3, dtype=np.float64), Flatten(), Dense(12, 4, dtype=np.float64))
    values = ProximalRegularizer(net, tau=[0.5, 2.0], group_lambda=0.1, l1=0.01,
                                 conv_reshape="spatial").values()
    w0, w2 = net[0].weight.data, net[2].weight.data
    nuclear = 0.5 * nuclear_norm(w0.transpose(1, 2, 3, 0).reshape(6, 9)) + 2.0 * nuclear_norm(w2)
    g0 = np.concatenate([w0.reshape(3, -1), net[0].bias.data[:, None]], axis=1)
    g2 = np.concatenate([w2.T, net[2].bias.data[:, None]], axis=1)
    group = 0.1 * (np.sqrt(19) * np.linalg.norm(g0, axis=1).sum() + np.sqrt(13) * np.linalg.norm(g2, axis=1).sum())
    l1 = 0.01 * (np.abs(w0).sum() + np.abs(w2).sum())
    np.testing.assert_allclose(values["nuclear"], nuclear, rtol=1e-10)
    np.testing.assert_allclose(values["group"], group, rtol=1e-10)
    np.testing.assert_allclose(values["regularizer"], nuclear + group + l1, rtol=1e-10)
    assert lowrank.regularizer_value(net, tau=[0.5, 2.0], conv_reshape="spatial") == pytest.approx(nuclear)


# ------------------------------------------------------------- truncation
@pytest.mark.parametrize("reshape", lowrank.CONV_RESHAPES)
def test_truncation_at_full_rank_reproduces_the_network(seeded, reshape):
    nets = [(conv_net(), seeded.standard_normal((3, 2, 9, 10)))]
    if reshape == "filters":      # one real model through pool and flatten; the spatial split is covered above
        nets.append((lenet5().astype(np.float64), seeded.standard_normal((2, 1, 28, 28))))
    for net, x in nets:
        expected = net(x).data
        report = lowrank.truncate(net, rank=10_000, keep_if_larger=False, conv_reshape=reshape)
        assert all(r["factored"] for r in report["layers"])
        np.testing.assert_allclose(net(x).data, expected, rtol=1e-9, atol=1e-11)
    net = lenet300(n_in=40).astype(np.float64)
    x = seeded.standard_normal((4, 40))
    expected = net(x).data
    lowrank.truncate(net, energy=1.0, keep_if_larger=False)
    assert all(isinstance(net[i], LowRankDense) for i in (1, 3, 5))
    np.testing.assert_allclose(net(x).data, expected, rtol=1e-9, atol=1e-11)


def test_truncation_counts_params_and_flops(seeded):
    net = lenet300(n_in=60).astype(np.float64)
    x = seeded.standard_normal((2, 60))
    report = lowrank.truncate(net, rank=[20, 10, 10], example_input=x)
    first, second, last = report["layers"]
    assert first["factored"] and second["factored"] and not last["factored"]   # 10 x (100 + 10) > 1,010
    assert first["params_after"] == 20 * (60 + 300) + 300
    assert second["params_after"] == 10 * (300 + 100) + 100
    assert last["params_after"] == last["params_before"] == 100 * 10 + 10
    assert report["params_after"] == net.num_parameters() == sum(r["params_after"] for r in report["layers"])
    assert first["flops_before"] == 2 * 60 * 300 and first["flops_after"] == 2 * 20 * (60 + 300)
    assert lowrank.ranks_of(report) == {"1": 20, "3": 10, "5": 10}


def test_truncation_to_rank_r_is_the_best_rank_r_approximation(seeded):
    dense = Dense(9, 7, dtype=np.float64)
    w, s = dense.weight.data.copy(), np.linalg.svd(dense.weight.data, compute_uv=False)
    factored = LowRankDense.from_dense(dense, 3)
    product = factored.first.weight.data @ factored.second.weight.data
    np.testing.assert_allclose(np.linalg.norm(product - w), np.sqrt((s[3:] ** 2).sum()), atol=1e-12)


def test_gradcheck_factored_layers(seeded):
    dense = LowRankDense.from_dense(Dense(4, 3, dtype=np.float64), 2)
    x = Tensor(seeded.standard_normal((2, 4)), requires_grad=True)
    assert engine.gradcheck(lambda x, a, b: dense(x), x, dense.first.weight, dense.second.weight)
    for mode in lowrank.CONV_RESHAPES:
        conv = LowRankConv2d.from_conv(Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64), 2, mode)
        x = Tensor(seeded.standard_normal((2, 2, 5, 5)), requires_grad=True)
        assert engine.gradcheck(lambda x, a, b, c: conv(x), x, conv.first.weight, conv.second.weight,
                                conv.second.bias)


def test_conv_pass_without_a_graph_equals_the_recorded_one(seeded):
    for mode in lowrank.CONV_RESHAPES:
        conv = LowRankConv2d.from_conv(Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64), 2, mode)
        x = seeded.standard_normal((6, 2, 7, 7))
        recorded = conv(x)
        assert recorded.requires_grad
        with engine.no_grad():
            plain = conv(x)
        np.testing.assert_allclose(plain.data, recorded.data, rtol=1e-10, atol=1e-12, err_msg=mode)


# ------------------------------------------------------------- errors and the plugin
def test_bad_input_is_a_clear_error(seeded):
    net = lenet300(n_in=8, n_classes=3)
    for energy in (0.0, 1.2, -1.0):
        with pytest.raises(ValueError, match=r"truncate.*\(0, 1\]"):
            lowrank.truncate(net, energy=energy)
    for rank in (0, -3):
        with pytest.raises(ValueError, match=r"truncate.*>= 1"):
            lowrank.truncate(net, rank=rank)
    with pytest.raises(TypeError, match="rank"):
        lowrank.truncate(net, rank=2.5)
    with pytest.raises(ValueError, match="conv_reshape"):
        lowrank.truncate(net, conv_reshape="rows")
    with pytest.raises(ValueError, match="one per layer"):
        lowrank.truncate(net, rank=[2, 2])
    with pytest.raises(ValueError, match="tau for layer 1 must be >= 0"):
        ProximalRegularizer(net, tau=-1.0)
    with pytest.raises(ValueError, match="every"):
        ProximalRegularizer(net, tau=1.0, every=0)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        singular_value_threshold(np.eye(3), -0.1)
    parser = argparse.ArgumentParser()
    LowRankCompressor.add_arguments(parser)
    with pytest.raises(ValueError, match="--lowrank-energy"):
        LowRankCompressor(parser.parse_args(["--lowrank-energy", "1.5"]))


def test_compressor_plugin_trains_logs_and_truncates(seeded):
    parser = argparse.ArgumentParser()
    LowRankCompressor.add_arguments(parser)
    args = parser.parse_args(["--lowrank-tau", "8.0,8.0,0", "--lowrank-every", "1"])
    assert args.lowrank_tau == [8.0, 8.0, 0.0]
    compressor = LowRankCompressor(args)
    net = compressor.apply(lenet300(n_in=20, n_classes=3).astype(np.float64), None)
    optimizer = SGD(net.parameters(), lr=0.05)
    x, labels = seeded.standard_normal((16, 20)), seeded.integers(0, 3, 16)
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(net(x), labels).backward()
        optimizer.step()
        compressor.on_step(optimizer, net)
    logged = compressor.log_values(net)
    assert logged["regularizer"] == pytest.approx(
        8 * nuclear_norm(net[1].weight.data) + 8 * nuclear_norm(net[3].weight.data))
    survivors = np.linalg.matrix_rank(net[1].weight.data, tol=1e-9)
    s = np.linalg.svd(net[1].weight.data, compute_uv=False)
    assert logged["rank_1"] == (s > 1e-6 * s[0]).sum() and "rank_5" not in logged   # tau = 0 there
    before = net.num_parameters()
    expected = net(x).data
    net = compressor.finalize(net, None)
    assert isinstance(net[1], LowRankDense) and net[1].rank <= survivors < 20
    assert net.num_parameters() < before
    # the final proximal step moved the weights only a little: predictions agree
    np.testing.assert_array_equal(net(x).data.argmax(1), expected.argmax(1))
    assert compressor.config()["ranks"]["1"] == net[1].rank
    assert compressor.log_values(net) == {}


def test_truncate_names_a_missing_layer():
    from compressors import lowrank
    from layers.models import lenet300
    with pytest.raises(ValueError, match=r"no Dense/Conv2d layer named \['nope'\]"):
        lowrank.truncate(lenet300(), rank=5, layers=["nope"])
