"""Tests of the image-aware ("spatial") Tucker reshape: digit groups, round trip, counts, input shapes."""
import math

import numpy as np
import pytest

import engine
from engine import Tensor
from layers import Dense
from layers.models import lenet300, lenet5
from compressors import tucker
from compressors.tucker import TuckerCompressor, TuckerDense


@pytest.fixture
def seeded():
    engine.manual_seed(0)
    return np.random.default_rng(0)


@pytest.mark.parametrize("axes, n_out, order", [((28, 28), 300, 3), ((1, 28, 28), 300, 2), ((50, 4, 4), 500, 3),
                                                ((4, 6), 6, 2), ((3, 4, 4), 10, 2)])
@pytest.mark.parametrize("coarse", ["small", "large"])
def test_spatial_shape_splits_every_index_into_one_digit_per_mode(axes, n_out, order, coarse):
    modes, groups = tucker.spatial_shape(axes, n_out, order, coarse=coarse)
    kept = [a for a in axes if a > 1]
    assert len(groups) == len(kept) + 1 and all(len(g) == order for g in groups)
    assert [math.prod(g) for g in groups] == kept + [n_out]
    assert modes == tuple(math.prod(g[i] for g in groups) for i in range(order))
    assert min(modes) >= 2
    rows, cols = groups[len(kept) - 2], groups[len(kept) - 1]
    assert list(rows) == sorted(rows, reverse=coarse == "large")      # coarse digit first
    assert (rows == cols) == (kept[-1] == kept[-2])


def test_spatial_shape_of_a_mnist_image_pairs_rows_and_columns_at_each_scale():
    modes, groups = tucker.spatial_shape((1, 28, 28), 300, 3)
    assert groups[0] == groups[1] == (2, 2, 7)
    assert sorted(groups[2]) == [5, 6, 10] and modes == (4 * groups[2][0], 4 * groups[2][1], 49 * groups[2][2])
    assert groups[2][2] == 5                            # the largest input part takes the smallest output digit


def test_spatial_shape_errors():
    with pytest.raises(ValueError, match="needs an input of >= 2 axes"):
        tucker.spatial_shape((784,), 300, 3)
    with pytest.raises(ValueError, match="coarse must be"):
        tucker.spatial_shape((28, 28), 300, 3, coarse="middle")
    with pytest.raises(ValueError, match="mode of size 1"):
        tucker.spatial_shape((2, 2), 1, 3)


def reference_spatial_weight(tensor, groups):
    """W[(r, c), o] = T[i_1, ..., i_D] with i_t the mixed-radix number of the t-th digits of r, c and o."""
    *inputs, outputs = [math.prod(g) for g in groups]
    n_in = math.prod(inputs)
    weight = np.empty((n_in, outputs))
    for flat_in in range(n_in):
        index = np.unravel_index(flat_in, inputs)
        for o in range(outputs):
            digits = [np.unravel_index(v, g) for v, g in zip(list(index) + [o], groups)]
            mode_index = []
            for t in range(len(groups[0])):
                position = 0
                for digit, g in zip(digits, groups):
                    position = position * g[t] + digit[t]
                mode_index.append(position)
            weight[flat_in, o] = tensor[tuple(mode_index)]
    return weight


def test_spatial_dense_rebuild_matches_the_elementwise_definition(seeded):
    modes, groups = tucker.spatial_shape((4, 6), 6, 2)
    layer = TuckerDense.from_dense(Dense(24, 6, dtype=np.float64), ranks=[2, 3], order=2, shape=modes,
                                   pairing=groups)
    tensor = engine.ops.tucker_to_tensor(layer.core, layer.factors).data
    np.testing.assert_allclose(layer.rebuilt_weight().data, reference_spatial_weight(tensor, groups), rtol=1e-12)


@pytest.mark.parametrize("axes, n_out, order", [((4, 6), 6, 2), ((3, 4, 4), 10, 2), ((8, 8), 12, 3)])
def test_spatial_weight_to_tensor_to_weight_is_the_identity(seeded, axes, n_out, order):
    modes, groups = tucker.spatial_shape(axes, n_out, order)
    n_in = math.prod(axes)
    layer = TuckerDense(n_in, n_out, ranks=2, order=order, shape=modes, dtype=np.float64)
    layer.set_pairing(*groups)
    weight = seeded.standard_normal((n_in, n_out))
    tensor = layer._weight_to_tensor(weight)
    assert tensor.shape == modes
    np.testing.assert_array_equal(layer._tensor_to_weight(Tensor(tensor)).data, weight)
    assert len(np.unique(tensor)) == weight.size         # a permutation: every value once


def test_spatial_from_weights_with_full_ranks_is_exact_and_gradchecks(seeded):
    modes, groups = tucker.spatial_shape((4, 6), 6, 2)
    original = Dense(24, 6, dtype=np.float64)
    converted = TuckerDense.from_dense(original, ranks=list(modes), order=2, shape=modes, pairing=groups,
                                       from_weights=True)
    x = seeded.standard_normal((3, 24))
    np.testing.assert_allclose(converted(x).data, original(x).data, rtol=1e-10, atol=1e-12)
    small = TuckerDense.from_dense(Dense(24, 6, dtype=np.float64), ranks=[2, 2], order=2, shape=modes,
                                   pairing=groups)
    xt = Tensor(seeded.standard_normal((2, 24)), requires_grad=True)
    assert engine.gradcheck(lambda x_, *ps: small(x_), xt, *small.parameters())


def test_set_pairing_rejects_groups_that_miss_the_first_index(seeded):
    modes, groups = tucker.spatial_shape((4, 6), 6, 2)
    layer = TuckerDense(24, 6, ranks=2, order=2, shape=modes)
    with pytest.raises(ValueError, match="TuckerDense: pairing"):
        layer.set_pairing(groups[0], groups[1][::-1], groups[2])    # different modes
    with pytest.raises(ValueError, match="TuckerDense: a pairing needs"):
        layer.set_pairing(groups[0])


def test_dense_input_shapes_finds_the_flattened_inputs(seeded):
    images = np.zeros((2, 1, 28, 28), dtype=np.float32)
    model = lenet5()
    assert tucker.dense_input_shapes(model, images) == {"5": (50, 4, 4)}
    assert model.training                                # the training flag is restored
    assert tucker.dense_input_shapes(lenet300(), images) == {"1": (1, 28, 28)}


def test_compress_spatial_counts_and_falls_back_to_paired(seeded):
    images = np.zeros((2, 1, 28, 28), dtype=np.float32)
    model = lenet5()
    dense = model.num_parameters()
    shapes = tucker.dense_input_shapes(model, images)
    report = tucker.compress(model, ratio=691, order=3, min_rank=1, bias=False, allocation="greedy",
                             reshape="spatial", input_shapes=shapes)
    rows = {r["name"]: r for r in report["layers"]}
    assert tuple(rows["5"]["modes"]) == tucker.spatial_shape((50, 4, 4), 500, 3)[0]
    assert tuple(rows["7"]["modes"]) == tucker.paired_shape(500, 10, 3)[0]      # not fed by a Flatten
    assert tuple(rows["0"]["modes"]) == tucker.paired_shape(20, 25, 3)[0]       # conv: paired
    stored = sum(tucker.tucker_params(r["modes"], r["ranks"]) for r in report["layers"])
    assert report["params"] == stored == model.num_parameters()
    assert report["ratio"] == pytest.approx(dense / stored)
    assert model(images).shape == (2, 10)
    with pytest.raises(ValueError, match="needs input_shapes"):
        tucker.compress(lenet300(), ratio=50, order=3, reshape="spatial")


def test_plugin_finds_the_input_shapes_from_the_task(seeded):
    class Task:
        def test_batches(self, batch_size):
            yield np.zeros((batch_size, 1, 28, 28), dtype=np.float32), np.zeros(batch_size, dtype=np.int64)

    import argparse
    parser = argparse.ArgumentParser()
    TuckerCompressor.add_arguments(parser)
    args = parser.parse_args(["--tucker-ratio", "233", "--tucker-order", "3", "--tucker-reshape", "spatial",
                              "--tucker-alloc", "greedy", "--tucker-min-rank", "1", "--tucker-no-bias"])
    compressor = TuckerCompressor(args)
    model = compressor.apply(lenet300(), Task())
    assert compressor.config()["per_layer"]["1"]["modes"] == list(tucker.spatial_shape((28, 28), 300, 3)[0])
    assert compressor.config()["spatial_coarse"] == "small"
    assert model(np.zeros((2, 1, 28, 28), dtype=np.float32)).shape == (2, 10)
