"""The copy-memory problem: recall 10 symbols after a long run of blanks (a memory benchmark)."""
import math

import numpy as np

from engine import backend

from .base import SyntheticSequenceTask, cross_entropy_sum, like_output, output_array

N_SYMBOLS = 8          # data symbols are 1..8
N_RECALL = 10          # how many symbols to remember
BLANK, MARKER = 0, 9   # so inputs and outputs both use the 10 classes 0..9
N_CLASSES = 10


def copy_batch(rng, batch_size, T):
    """One-hot inputs (B, T+20, 10) float32 and integer targets (B, T+20) int64 from `rng`.

    Input: 10 symbols in 1..8, T-1 blanks, the marker 9, 10 blanks. Target: blanks except the last
    10 steps, which hold the 10 symbols.
    """
    length = T + 2 * N_RECALL
    symbols = rng.integers(1, N_SYMBOLS + 1, size=(batch_size, N_RECALL))
    codes = np.full((batch_size, length), BLANK, dtype=np.int64)
    codes[:, :N_RECALL] = symbols
    codes[:, N_RECALL + T - 1] = MARKER
    targets = np.full((batch_size, length), BLANK, dtype=np.int64)
    targets[:, -N_RECALL:] = symbols
    inputs = np.eye(N_CLASSES, dtype=np.float32)[codes]
    return inputs, targets


class CopyTask(SyntheticSequenceTask):
    """Copy-memory problem with delay T; outputs are 10-way logits at every step (classes 0..9,
    of which 9, the marker, is never a target)."""

    name = "copy"
    metric_name = "cross_entropy"
    higher_is_better = False
    default_model = "sequence_model"
    min_T = 1
    output_layout = "batch, steps, classes"

    def __init__(self, T=60, train_size_per_epoch=10000, test_size=1000, valid_size=1000, seed=1234):
        super().__init__(T, train_size_per_epoch, test_size, valid_size, seed)

    def make_batch(self, rng, batch_size, T):
        return copy_batch(rng, batch_size, T)

    def model_kwargs(self):
        return {"n_in": N_CLASSES, "n_out": N_CLASSES, "output": "all"}

    def output_shape(self, targets):
        return targets.shape + (N_CLASSES,)

    def batch_totals(self, outputs, targets):
        labels = like_output(targets, outputs)
        logits = output_array(outputs)
        xp = backend.xp_of(logits)
        recalled = xp.argmax(logits[:, -N_RECALL:], axis=-1) == labels[:, -N_RECALL:]
        return {"ce_sum": cross_entropy_sum(outputs, labels), "ce_count": float(labels.size),
                "correct": float(xp.sum(recalled)), "recall_count": float(recalled.size)}

    def summarize(self, totals):
        ce = totals["ce_sum"] / totals["ce_count"]
        return {"loss": ce, "cross_entropy": ce, "accuracy": totals["correct"] / totals["recall_count"]}

    def trivial_baseline(self):
        """Predict blanks perfectly and guess the 10 recalled symbols uniformly among 8:
        cross-entropy 10 ln 8 / (T + 20) per step, recall accuracy 1/8."""
        ce = N_RECALL * math.log(N_SYMBOLS) / (self.T + 2 * N_RECALL)
        return {"loss": ce, "cross_entropy": ce, "accuracy": 1.0 / N_SYMBOLS,
                "predictor": "blank, then uniform over the 8 symbols for the last 10 steps"}
