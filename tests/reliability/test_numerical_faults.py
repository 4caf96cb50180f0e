"""Numerical faults: an Inf/NaN loss stops the run and keeps the last good checkpoint; --detect-anomaly names the op."""
import re

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor
from engine.function import Function
from tests.reliability._cli import TINY, assert_same_weights, model_weights, train

# lr 0.01 in epoch 1, then x 1e30 per epoch: a genuine blow-up in epoch 2 (no clipping to save it)
EXPLODING = [*TINY, "--epochs", "4", "--optimizer", "sgd", "--lr", "0.01", "--clip-grad", "1e30",
             "--lr-schedule", "step", "--lr-step", "1", "--lr-gamma", "1e30"]


def _op_names():
    """Names of every Function subclass the engine defines."""
    names, todo = set(), [Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            names.add(sub.__name__)
            todo.append(sub)
    return names


def test_exploding_loss_stops_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = train(*EXPLODING, "--out", out)
    assert proc.returncode != 0 and proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    match = re.search(r"the loss became (nan|inf|-inf) at train epoch (\d+), step (\d+) \(global step (\d+)\)",
                      proc.stderr)
    assert match, proc.stderr
    assert int(match.group(2)) >= 2, "the blow-up was expected after the first epoch"
    weights, meta = model_weights(out)               # loads, checksum verified
    assert meta["epoch"] == int(match.group(2)) - 1 and meta["phase"] == "train"
    assert meta["global_step"] < int(match.group(4))
    for key, value in weights.items():
        assert np.isfinite(value).all(), f"{key} is not finite in the kept checkpoint"
    # the kept checkpoint is exactly the state after the last good epoch
    clean = train(*EXPLODING, "--epochs", str(meta["epoch"]), "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    assert_same_weights(weights, model_weights(tmp_path / "clean")[0])


def test_detect_anomaly_flag_names_the_first_op(tmp_path):
    proc = train(*EXPLODING, "--out", tmp_path / "run", "--detect-anomaly")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    match = re.search(r"detect_anomaly: (\w+) produced (NaN|Inf) in (forward|backward)", proc.stderr)
    assert match, proc.stderr
    assert match.group(1) in _op_names(), f"{match.group(1)} is not an engine op"


@pytest.mark.parametrize("build, first_op, what", [
    # exp overflows first; the later multiply by 0 turns it into NaN but is not the first culprit
    (lambda x: F.mul(F.exp(x * 100.0), 0.0), "Exp", "Inf"),
    (lambda x: F.sum(F.log(x - 20.0)), "Log", "NaN"),
    (lambda x: F.sqrt(F.tanh(x) - 2.0) + 1.0, "Sqrt", "NaN"),
    (lambda x: F.div(x, F.sub(x, x)), "Div", "Inf"),
])
def test_detect_anomaly_forward_names_first_op(build, first_op, what):
    x = Tensor(np.full((2, 3), 10.0, np.float32), requires_grad=True)
    with engine.detect_anomaly():
        with pytest.raises(FloatingPointError) as info:
            with np.errstate(all="ignore"):
                build(x)
    message = str(info.value)
    assert message.startswith(f"detect_anomaly: {first_op} produced {what} in forward"), message
    assert "all its inputs were finite" in message


def test_detect_anomaly_backward_names_the_op():
    """sqrt(0) is fine forward; its gradient 1/(2 sqrt(0)) is Inf, found in backward."""
    x = Tensor(np.zeros(3), requires_grad=True)
    with engine.detect_anomaly():
        y = F.sum(F.sqrt(x))
        with pytest.raises(FloatingPointError, match="detect_anomaly: Sqrt produced Inf in backward"):
            with np.errstate(all="ignore"):
                y.backward()


def test_without_detect_anomaly_nan_flows_silently():
    """The flag matters: without it the same graph gives NaN and no error (so the loss check is needed)."""
    x = Tensor(np.full(2, 10.0, np.float32))
    with np.errstate(all="ignore"):
        y = F.mul(F.exp(x * 100.0), 0.0)
    assert np.isnan(y.data).all()
