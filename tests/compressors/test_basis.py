"""Tests of BasisConv: exact conversion, truncation error, frozen basis, counting, gradients, errors."""
import argparse

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor
from engine.optim import SGD, Adam
from layers import Conv2d, Dense, Flatten, ReLU, Sequential
from compressors import basis
from compressors.basis import BasisConv2d, BasisCompressor


def float64_conv(c, n, k, **kw):
    return Conv2d(c, n, k, dtype=np.float64, **kw)


def tiny_net():
    """conv 2->6 3x3 (stride 2, pad 1), ReLU, conv 6->4 3x3 (dilation 2), flatten, dense."""
    net = Sequential(float64_conv(2, 6, 3, stride=2, padding=1), ReLU(),
                     float64_conv(6, 4, 3, dilation=2), Flatten(), Dense(4 * 1 * 1, 3, dtype=np.float64))
    return net


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


@pytest.mark.parametrize("geometry", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=2)])
def test_full_rank_conversion_equals_the_conv(seeded, geometry):
    conv = float64_conv(3, 5, 3, **geometry)
    x = seeded.standard_normal((2, 3, 9, 8))
    expected = conv(x).data
    converted = BasisConv2d.from_conv(conv, energy=1.0)
    assert converted.num_basis == min(5, 3 * 9)
    np.testing.assert_allclose(converted(x).data, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("geometry", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=2)])
def test_the_pass_without_a_graph_equals_the_recorded_one(seeded, geometry, monkeypatch):
    # without a graph: one chunked pass (conv2d_pointwise, two images a chunk here); with one: two convs
    from engine.ops import conv as conv_ops
    monkeypatch.setattr(conv_ops, "_one_thread", lambda: True)
    monkeypatch.setattr(conv_ops, "POINTWISE_CHUNK_BYTES", 2 * 3 * 9 * 9 * 8 * 8)
    converted = BasisConv2d.from_conv(float64_conv(3, 5, 3, **geometry), num_basis=2)
    x = seeded.standard_normal((7, 3, 9, 8))
    recorded = converted(x)
    assert recorded.requires_grad
    with engine.no_grad():
        plain = converted(x)
    np.testing.assert_allclose(plain.data, recorded.data, rtol=1e-10, atol=1e-12)


def test_rank_deficient_layer_is_reproduced_with_m_equal_rank(seeded):
    conv = float64_conv(2, 6, 3)
    low_rank = seeded.standard_normal((6, 2)) @ seeded.standard_normal((2, 18))   # rank 2 filters
    conv.weight.data = low_rank.reshape(6, 2, 3, 3)
    x = seeded.standard_normal((2, 2, 7, 7))
    converted = BasisConv2d.from_conv(conv, energy=1.0)
    assert converted.num_basis == np.linalg.matrix_rank(low_rank)
    np.testing.assert_allclose(converted(x).data, conv(x).data, rtol=1e-10, atol=1e-12)


def test_truncation_error_decreases_with_m_and_matches_the_discarded_energy(seeded):
    conv = float64_conv(3, 8, 3)
    x = seeded.standard_normal((4, 3, 10, 10))
    reference = conv(x).data
    h = conv.weight.data.reshape(8, -1)
    s = np.linalg.svd(h, compute_uv=False)
    output_errors = []
    for m in range(1, 9):
        converted = BasisConv2d.from_conv(conv, num_basis=m)
        filter_error = np.linalg.norm(converted.filters().reshape(8, -1) - h)
        np.testing.assert_allclose(filter_error, np.sqrt((s[m:] ** 2).sum()), atol=1e-10)
        output_errors.append(np.linalg.norm(converted(x).data - reference))
    assert all(a > b for a, b in zip(output_errors, output_errors[1:]))
    assert output_errors[-1] < 1e-10


def test_energy_threshold_picks_the_smallest_sufficient_m(seeded):
    s = np.sort(seeded.uniform(0.1, 3.0, size=12))[::-1]
    energy = np.cumsum(s ** 2) / (s ** 2).sum()
    for t in (0.3, 0.5, 0.9, 0.99):
        m = basis.rank_for_energy(s, t)
        assert energy[m - 1] >= t
        assert m == 1 or energy[m - 2] < t
    assert basis.rank_for_energy(s, 1.0) == len(s)


def test_m_is_capped_at_min_of_n_and_d(seeded):
    conv = float64_conv(1, 30, 3)          # N = 30 > d = 9
    assert BasisConv2d.from_conv(conv, num_basis=25).num_basis == 9
    assert BasisConv2d.from_conv(conv, energy=1.0).num_basis == 9


def test_frozen_basis_does_not_change_during_training(seeded):
    engine.manual_seed(1)
    net = tiny_net()
    basis.compress(net, m=2, from_scratch=True)
    layer = net[0]
    basis_before = layer.basis.data.copy()
    combination_before = layer.combination.data.copy()
    x = seeded.standard_normal((4, 2, 10, 10))
    labels = np.array([0, 1, 2, 1])
    trainable = [p for p in net.parameters() if p.requires_grad]
    for optimizer in (SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01),
                      Adam(trainable, lr=0.01)):
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(net(x), labels).backward()
            optimizer.step()
    assert layer.basis.grad is None
    np.testing.assert_array_equal(layer.basis.data, basis_before)
    assert not np.allclose(layer.combination.data, combination_before)


def test_train_basis_flag_lets_the_basis_learn(seeded):
    net = tiny_net()
    basis.compress(net, energy=1.0, train_basis=True)
    before = net[0].basis.data.copy()
    optimizer = SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(net(seeded.standard_normal((3, 2, 10, 10))), np.array([0, 1, 2])).backward()
    optimizer.step()
    assert net[0].basis.requires_grad
    assert not np.allclose(net[0].basis.data, before)


def test_from_scratch_basis_is_orthonormal_and_frozen(seeded):
    layer = BasisConv2d(3, 7, 3, num_basis=5)
    b = layer.basis.data.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(b @ b.T, np.eye(5), atol=1e-5)
    assert not layer.basis.requires_grad and layer.combination.requires_grad


@pytest.mark.parametrize("train_basis", [False, True])
def test_parameter_counts(seeded, train_basis):
    n, c, k, m = 6, 4, 3, 3
    d = c * k * k
    layer = BasisConv2d(c, n, k, num_basis=m, train_basis=train_basis)
    assert layer.num_parameters() == m * d + m * n + n
    learnable = m * n + n + (m * d if train_basis else 0)
    assert layer.num_parameters(trainable_only=True) == learnable
    net = tiny_net()
    report = basis.compress(net, m=[m, 2], train_basis=train_basis)
    row = report["layers"][0]
    assert row["params_stored"] == sum(p.size for p in net[0].parameters())
    assert row["params_learnable"] == sum(p.size for p in net[0].parameters() if p.requires_grad)
    assert row["params_dense"] == 6 * 2 * 9 + 6


def test_flops_follow_the_protocol_and_the_report(seeded):
    x = seeded.standard_normal((2, 2, 10, 10))
    net = tiny_net()
    dense_pixels = [net[0](x).shape[2:], None]
    report = basis.compress(net, m=[3, 2], example_input=x)
    layer = net[0]
    out = layer(x)
    b, n, oh, ow = out.shape
    d, m = 2 * 9, 3
    assert tuple(dense_pixels[0]) == (oh, ow)
    assert layer.flops((x,), out) == b * oh * ow * (2 * d * m + 2 * m * n + n)
    row = report["layers"][0]
    assert row["flops_per_pixel_dense"] == 2 * d * n
    assert row["flops_per_pixel_basis"] == 2 * d * m + 2 * m * n
    assert row["flops_dense"] == 2 * d * n * oh * ow
    assert report["totals"]["flops_dense"] == sum(r["flops_dense"] for r in report["layers"])


def test_compress_converts_named_layers_only_and_keeps_order(seeded):
    net = tiny_net()
    x = seeded.standard_normal((2, 2, 10, 10))
    expected = net(x).data
    report = basis.compress(net, energy=1.0, layers=["2"])
    assert isinstance(net[0], Conv2d) and isinstance(net[2], BasisConv2d)
    assert [r["name"] for r in report["layers"]] == ["2"]
    np.testing.assert_allclose(net(x).data, expected, rtol=1e-10, atol=1e-12)


def test_gradcheck_basis_conv(seeded):
    layer = BasisConv2d(2, 3, 3, num_basis=4, stride=2, padding=1, train_basis=True, dtype=np.float64)
    x = Tensor(seeded.standard_normal((2, 2, 5, 5)), requires_grad=True)
    assert engine.gradcheck(lambda x, b, w, c: layer(x), x, layer.basis, layer.combination, layer.bias)


def test_gradcheck_basis_conv_with_batch_norm(seeded):
    layer = BasisConv2d(2, 3, 3, num_basis=2, batch_norm=True, dtype=np.float64)
    layer.norm.astype(np.float64)
    x = Tensor(seeded.standard_normal((3, 2, 4, 4)), requires_grad=True)
    assert engine.gradcheck(lambda x, c: layer(x), x, layer.combination)


@pytest.mark.parametrize("energy", [0.0, -0.5, 1.5, float("nan")])
def test_bad_energy_is_a_clear_error(seeded, energy):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        basis.compress(tiny_net(), energy=energy)


def test_bad_inputs_are_clear_errors(seeded):
    conv = float64_conv(2, 4, 3)
    with pytest.raises(ValueError, match=">= 1"):
        BasisConv2d.from_conv(conv, num_basis=0)
    with pytest.raises(TypeError, match="number"):
        basis.compress(tiny_net(), energy="high")
    with pytest.raises(ValueError, match="one per layer"):
        basis.compress(tiny_net(), energy=[0.9, 0.9, 0.9])
    with pytest.raises(ValueError, match="no Conv2d layer named"):
        basis.compress(tiny_net(), layers=["nope"])
    with pytest.raises(ValueError, match="groups"):
        BasisConv2d.from_conv(Conv2d(4, 4, 3, groups=2), energy=0.9)
    with pytest.raises(ValueError, match="no Conv2d"):
        basis.compress(Sequential(Dense(3, 2)))
    with pytest.raises(ValueError, match="num_basis must be <="):
        BasisConv2d(1, 4, 3, num_basis=10)
    with pytest.raises(ValueError, match="BasisConv2d: expected input size 2"):
        BasisConv2d(2, 4, 3, num_basis=2)(np.zeros((1, 3, 5, 5), np.float32))


def test_compressor_plugin_flags_and_apply(seeded):
    parser = argparse.ArgumentParser()
    BasisCompressor.add_arguments(parser)
    args = parser.parse_args(["--basis-energy", "1.0,0.5", "--basis-from-scratch"])
    assert args.basis_energy == [1.0, 0.5] and args.basis_from_scratch
    compressor = BasisCompressor(args)
    net = compressor.apply(tiny_net(), None)
    assert isinstance(net[0], BasisConv2d) and isinstance(net[2], BasisConv2d)
    config = compressor.config()
    assert config["per_layer_M"] == {"0": net[0].num_basis, "2": net[2].num_basis}
    assert compressor.log_values(net)["conv_learnable_params"] == sum(
        p.size for layer in (net[0], net[2]) for p in layer.parameters() if p.requires_grad)
    with pytest.raises(SystemExit):
        parser.parse_args(["--basis-m", "two"])


def test_train_py_optimiser_leaves_the_frozen_basis_out(seeded):
    from training import builders
    net = tiny_net()
    basis.compress(net, m=2, from_scratch=True)
    args = argparse.Namespace(optimizer="momentum", weight_decay=0.1, momentum=0.9, explicit=set())
    optimizer = builders.make_optimizer(args, net.parameters(), 0.1)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(net[0].basis) not in optimised and id(net[2].basis) not in optimised
    assert id(net[0].combination) in optimised
