"""Tests of compressors/report.py: FLOP, parameter and byte counts checked against hand-computed values."""
import numpy as np
import pytest

import engine
from compressors import report
from layers import Dense, Module, Parameter, Sequential

layers = pytest.importorskip("layers", reason="layers package missing")
Conv2d = getattr(layers, "Conv2d", None)
MaxPool2d = getattr(layers, "MaxPool2d", None)
ReLU = getattr(layers, "ReLU", None)
Flatten = getattr(layers, "Flatten", None)
needs_conv = pytest.mark.skipif(None in (Conv2d, MaxPool2d, ReLU, Flatten),
                                reason="layers.Conv2d/MaxPool2d/ReLU/Flatten not available")


def dense_flops(n_in, n_out, bias=True):
    """Per example: a multiply-add (2 FLOPs) per weight plus one add per bias."""
    return n_out * (2 * n_in + (1 if bias else 0))


class Scale(Module):
    """Elementwise scale by a learned vector: one multiply per element."""

    def __init__(self, n):
        super().__init__()
        self.weight = Parameter(np.ones(n, dtype=np.float32))

    def forward(self, x):
        return x * self.weight

    def flops(self, inputs, output):
        return output.size


class ThreeTimes(Module):
    """Applies the same child three times: the child's FLOPs must be counted three times."""

    def __init__(self, n):
        super().__init__()
        self.inner = Dense(n, n)

    def forward(self, x):
        for _ in range(3):
            x = self.inner(x)
        return x


@pytest.fixture(autouse=True)
def _seed():
    engine.manual_seed(0)


def test_dense_net_flops_and_params():
    model = Sequential(Dense(4, 3), Dense(3, 2, bias=False))
    x = np.zeros((5, 4), dtype=np.float32)
    total, per_module = report.count_flops(model, x)
    assert per_module == {"0": dense_flops(4, 3), "1": dense_flops(3, 2, bias=False)}
    assert total == dense_flops(4, 3) + dense_flops(3, 2, bias=False)
    rows = report.summary(model, x)
    t = report.totals(rows)
    assert t["params"] == 4 * 3 + 3 + 3 * 2
    assert t["learnable"] == t["params"]
    assert t["bytes"] == 4 * t["params"]
    assert [r["name"] for r in rows] == ["0", "1"]
    assert rows[0]["shapes"] == "4x3, 3" and rows[0]["output"] == "3"


@needs_conv
def test_small_conv_net_flops():
    model = Sequential(Conv2d(1, 2, 3), ReLU(), MaxPool2d(2), Flatten(), Dense(8, 3))
    x = np.zeros((4, 1, 6, 6), dtype=np.float32)
    conv_out = 2 * 4 * 4                  # channels x 4 x 4 output pixels
    conv = conv_out * (2 * 1 * 3 * 3 + 1)  # a multiply-add per kernel tap, one bias add per output
    relu = conv_out                        # one op per element
    pool = (2 * 2 * 2) * (2 * 2)           # per output: compare over a 2x2 window
    dense = dense_flops(8, 3)
    total, per_module = report.count_flops(model, x)
    assert per_module["0"] == conv
    assert per_module["2"] == pool
    assert total == conv + relu + pool + dense
    rows = report.summary(model, x)
    assert report.totals(rows)["params"] == (2 * 9 + 2) + (8 * 3 + 3) == model.num_parameters()


def test_reused_module_counted_per_call_and_batch_independent():
    model = ThreeTimes(4)
    small, _ = report.count_flops(model, np.zeros((1, 4), dtype=np.float32))
    large, per_module = report.count_flops(model, np.zeros((7, 4), dtype=np.float32))
    assert small == large == 3 * dense_flops(4, 4)
    assert per_module == {"inner": 3 * dense_flops(4, 4)}
    rows = report.summary(model, np.zeros((2, 4), dtype=np.float32))
    assert rows[0]["calls"] == 3


def test_shared_and_frozen_parameters():
    first, second = Dense(3, 3), Dense(3, 3)
    second.weight = first.weight                       # shared: stored once
    frozen = Scale(3)
    frozen.weight.requires_grad = False                # stored, not learnable
    model = Sequential(first, second, frozen)
    rows = report.summary(model)
    t = report.totals(rows)
    assert t["params"] == 9 + 3 + 3 + 3 == model.num_parameters()
    assert t["learnable"] == 9 + 3 + 3 == model.num_parameters(trainable_only=True)
    assert t["flops"] is None                          # no example input: FLOPs unknown
    assert "| **total** |" in report.format_summary(rows)


def test_bytes_follow_dtype():
    model = Sequential(Dense(2, 2)).astype(np.float64)
    rows = report.summary(model, np.zeros((1, 2)))
    assert report.totals(rows)["bytes"] == 8 * 6


def test_compare_ratios():
    dense = Sequential(Dense(8, 8), Dense(8, 2))
    small = Sequential(Scale(8), Dense(8, 2))
    x = np.zeros((3, 8), dtype=np.float32)
    c = report.compare(dense, small, x)
    dense_params, small_params = 8 * 8 + 8 + 8 * 2 + 2, 8 + 8 * 2 + 2
    assert c["params"]["dense"] == dense_params and c["params"]["compressed"] == small_params
    assert c["params"]["ratio"] == pytest.approx(dense_params / small_params)
    dense_f, small_f = dense_flops(8, 8) + dense_flops(8, 2), 8 + dense_flops(8, 2)
    assert c["flops"]["ratio"] == pytest.approx(dense_f / small_f)
    assert c["bytes"]["dense"] == 4 * dense_params
    table = report.format_compare(c)
    assert f"{dense_params / small_params:,.2f}x" in table


def test_counting_leaves_model_state_alone():
    model = Sequential(Dense(2, 2))
    model.train()
    report.count_flops(model, np.zeros((2, 2), dtype=np.float32))
    assert model.training and all(m.training for m in model.modules())
    assert not model[0]._post_hooks
    out = model(engine.Tensor(np.ones((1, 2), dtype=np.float32)))
    assert out.requires_grad                           # graph recording still on after counting


def test_bad_example_input():
    with pytest.raises(ValueError, match="batch axis"):
        report.count_flops(Sequential(Dense(2, 2)), 3.0)
