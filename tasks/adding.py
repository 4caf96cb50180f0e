"""The adding problem: sum the two marked values of a long random sequence (a memory benchmark)."""
import numpy as np

import engine.ops as F
from engine import backend

from .base import SyntheticSequenceTask, like_output, output_array

TOLERANCE = 0.05   # a prediction counts as correct when |error| < TOLERANCE


def adding_batch(rng, batch_size, T):
    """Inputs (B, T, 2) float32 and targets (B, 1) float32 drawn from `rng`.

    Channel 0 holds U(0, 1) values; channel 1 marks one position in the first half
    [0, T//2) and one in the second half [T//2, T); the target is the sum of the two marked values.
    """
    values = rng.random((batch_size, T), dtype=np.float32)
    half = T // 2
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, T, size=batch_size)
    rows = np.arange(batch_size)
    markers = np.zeros((batch_size, T), dtype=np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return np.stack([values, markers], axis=2), targets


class AddingTask(SyntheticSequenceTask):
    """Adding problem with sequences of length T; fresh training sequences every batch."""

    name = "adding"
    metric_name = "mse"
    higher_is_better = False
    notes = {"accuracy": f"share of test sequences whose predicted sum is within {TOLERANCE} of the true sum "
                         f"(|error| < {TOLERANCE}); always predicting 1.0 scores {1 - (1 - TOLERANCE) ** 2:.4g}"}
    default_model = "sequence_model"
    min_T = 2
    output_layout = "batch, 1"

    def __init__(self, T=150, train_size_per_epoch=10000, test_size=1000, valid_size=1000, seed=1234):
        super().__init__(T, train_size_per_epoch, test_size, valid_size, seed)

    def make_batch(self, rng, batch_size, T):
        return adding_batch(rng, batch_size, T)

    def model_kwargs(self):
        return {"n_in": 2, "n_out": 1, "output": "last"}

    def output_shape(self, targets):
        return targets.shape

    def loss(self, output, targets):
        self.check_output(output, targets)
        return F.mse_loss(output, like_output(targets, output, cast=True))

    def batch_totals(self, outputs, targets):
        pred = output_array(outputs)
        xp = backend.xp_of(pred)
        err = pred - like_output(targets, outputs, cast=True)
        return {"squared_error": float(xp.sum(err * err)),
                "correct": float(xp.sum(xp.abs(err) < TOLERANCE)),
                "count": float(err.size)}

    def summarize(self, totals):
        mse = totals["squared_error"] / totals["count"]
        return {"loss": mse, "mse": mse, "accuracy": totals["correct"] / totals["count"]}

    def trivial_baseline(self):
        """Always predicting the mean target 1: MSE = Var(a + b) = 2 Var(U(0,1)) = 2/12, and the
        chance |a + b - 1| < tol is 1 - (1 - tol)^2 for the triangular density of a + b."""
        mse = 2.0 / 12.0
        return {"loss": mse, "mse": mse, "accuracy": 1.0 - (1.0 - TOLERANCE) ** 2,
                "predictor": "constant 1.0 (the mean target)"}
