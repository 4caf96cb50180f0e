"""Every differentiable op the engine promises exists in engine.ops and is exercised by an engine test."""
import pathlib
import re

import pytest

import engine.ops as F

PROMISED_OPS = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "exp", "log", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "leaky_relu", "softplus", "maximum", "minimum", "where", "clip", "cast", "reshape", "transpose",
    "swapaxes", "broadcast_to", "expand_dims", "squeeze", "flatten", "getitem", "concat", "stack", "split",
    "pad", "sum", "mean", "max", "min", "softmax", "log_softmax", "cross_entropy", "mse_loss", "dropout",
    "embedding", "conv2d", "max_pool2d", "avg_pool2d", "linear", "gru_gates", "lstm_gates", "unstack",
    "gru_sequence", "lstm_sequence", "distillation_loss", "low_rank_linear",
]
HERE = pathlib.Path(__file__).parent
# getitem is reached through t[index]
INDIRECT = {"getitem": r"leaf\(x\)\[index\]"}


@pytest.mark.parametrize("name", PROMISED_OPS)
def test_op_exists_and_is_tested(name):
    assert callable(getattr(F, name, None)), f"engine.ops.{name} is missing"
    pattern = INDIRECT.get(name, rf"F\.{name}\b")
    sources = [p.read_text() for p in HERE.glob("test_*.py") if p.name != pathlib.Path(__file__).name]
    assert any(re.search(pattern, s) for s in sources), f"no engine test calls {name}"
