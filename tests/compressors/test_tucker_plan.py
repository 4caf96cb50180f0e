"""Tests of tucker.compress's steps: the one ratio-to-budget formula and the allocation-mode dispatcher."""
import math

import numpy as np
import pytest

import engine
from compressors import tucker, tucker_plan
from compressors.tucker import TuckerConv2d, TuckerDense
from compressors.tucker_shapes import ratio_budget, solve_ranks, tucker_params
from layers.models import lenet300, lenet5


@pytest.fixture
def seeded():
    engine.manual_seed(0)


@pytest.mark.parametrize("ratio", [0, -3, 0.0, float("nan")])
def test_every_ratio_path_rejects_a_non_positive_ratio_with_one_message(seeded, ratio):
    messages = []
    for call in (lambda: ratio_budget(100, ratio, where="here"),
                 lambda: TuckerDense(20, 10, ratio=ratio, order=2),
                 lambda: tucker.compress(lenet300(), ratio=ratio, order=3)):
        with pytest.raises(ValueError, match="ratio must be > 0") as error:
            call()
        messages.append(str(error.value).split(": ", 1)[1])
    assert len(set(messages)) == 1 and repr(ratio) in messages[0]


def test_budget_subtracts_each_kept_count_in_turn():
    # at this size a float step is 4: three single subtractions round away, their sum does not, so the
    # order is part of the result (compress's budgets stay bit for bit what they were)
    dense, ratio, kept = 10 ** 17 + 3, 3.0, (1, 1, 1)
    assert ratio_budget(dense, ratio, *kept) == ((dense / ratio - 1) - 1) - 1 != dense / ratio - sum(kept)
    assert ratio_budget(dense, ratio) == dense / ratio


@pytest.mark.parametrize("ratio", [2.0, 3.3, 4.9])
@pytest.mark.parametrize("bias", [True, False])
def test_per_layer_mode_meets_the_ratio_in_every_layer(seeded, ratio, bias):
    report = tucker.compress(lenet5(), ratio=ratio, order=3, per_layer=True, bias=bias)
    for row in report["layers"]:
        assert row["dense_params"] / row["params"] >= ratio, row


@pytest.mark.parametrize("ratio", [10.0, 60.0, 150.0])
@pytest.mark.parametrize("allocation", ["uniform", "greedy"])
def test_network_mode_meets_the_ratio_over_the_model(seeded, ratio, allocation):
    report = tucker.compress(lenet5(), ratio=ratio, order=4, min_rank=2, allocation=allocation)
    assert report["ratio"] >= ratio


@pytest.mark.parametrize("kind, ratio", [("dense", 9.0), ("conv", 4.0)])
def test_a_layer_built_from_a_ratio_meets_it(seeded, kind, ratio):
    for bias in (True, False):
        layer = (TuckerDense(300, 100, ratio=ratio, order=3, bias=bias) if kind == "dense"
                 else TuckerConv2d(20, 50, 5, ratio=ratio, order=3, bias=bias))
        dense = math.prod(layer.weight_shape) + (layer.weight_shape[1 if kind == "dense" else 0] if bias else 0)
        assert dense / layer.tucker_params() >= ratio


def _plan(model, fixed_ranks=None, **options):
    targets = tucker_plan.check_options(model, None, options.get("ratio"), "uniform", "balanced", None, "test")
    counts = {n: m.weight.size for n, m in targets}
    modes = {n: tucker.balanced_shape(counts[n], 3) for n in counts}
    biases = sum(m.bias.size for _, m in targets)
    return tucker_plan.Conversion(targets, modes, counts, fixed_ranks or {}, model.num_parameters(), biases,
                                  0, True, 1, solve_ranks, "test")


def test_allocate_picks_one_function_per_mode(seeded):
    model = lenet300()
    ratio = 3.0      # low enough for lenet300's 1,010-value output layer on its own
    plan = _plan(model)
    core, shared = tucker_plan.allocate(plan, ratio, None, None, True, False, np.float32)
    assert core is not None and core.ndim == 3 and set(shared.values()) == {None}
    core, explicit = tucker_plan.allocate(plan, ratio, 2, None, False, False, np.float32)
    assert core is None and explicit == dict.fromkeys(plan.names, 2)
    _, network = tucker_plan.allocate(plan, ratio, None, None, False, False, np.float32)
    _, per_layer = tucker_plan.allocate(plan, ratio, None, None, False, True, np.float32)
    assert network != per_layer
    total = sum(tucker_params(plan.modes[n], network[n]) for n in plan.names)
    assert total <= ratio_budget(plan.dense_total, ratio, plan.biases)
    for n, m in plan.targets:
        assert tucker_params(plan.modes[n], per_layer[n]) <= ratio_budget(plan.counts[n] + m.bias.size, ratio,
                                                                          m.bias.size)
    fixed = {n: [1, 1, 1] for n in plan.names}
    _, given = tucker_plan.allocate(_plan(model, fixed), None, None, None, False, False, np.float32)
    assert given == fixed
