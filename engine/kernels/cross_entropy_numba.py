"""Numba CPU kernels for softmax cross-entropy on (N, C) logits with integer labels.

NumPy forms the loss in about ten calls (a max, a shift, exp, a sum, a log, a subtraction, a
fancy-index pick, a sum, two label bounds checks), each a microsecond or more on a batch of 128
ten-class rows, and its backward writes the one-hot through a fancy index (9 us there). These
kernels do the row-wise steps in single passes and leave exp to NumPy: its SIMD exp is several
times faster than a scalar loop of math.exp, which Numba does not vectorize without Intel's SVML
(bench/results/microbench-session9.md). The formula is NumPy's path's:
log p = (x - max) - log(sum(exp(x - max))), the gradient (exp(log p) - onehot) * scale; the row
sums are accumulated in float64.
"""
import math

import numba


@numba.njit(cache=True)
def labels_in_range(labels, classes):
    """Whether every label lies in [0, classes)."""
    for i in range(labels.size):
        if labels[i] < 0 or labels[i] >= classes:
            return False
    return True


@numba.njit(cache=True, error_model="numpy")
def shift_by_row_max(logits, shifted):
    """shifted <- logits - max of its row ((N, C) C-contiguous; a NaN in a row makes that row NaN, as
    NumPy's max does)."""
    n, c = logits.shape
    for i in range(n):
        row, out = logits[i], shifted[i]
        top = row[0]
        for j in range(1, c):
            if row[j] > top or math.isnan(row[j]):
                top = row[j]
        for j in range(c):
            out[j] = row[j] - top


@numba.njit(cache=True, error_model="numpy")
def log_softmax_from_exp(shifted, exps, labels, picked):
    """shifted <- shifted - log(sum of its row of exps) (the log-softmax, in place), and
    picked[i] <- -log p[i, labels[i]]; exps = exp(shifted) ((N, C) C-contiguous)."""
    n, c = shifted.shape
    for i in range(n):
        row, e = shifted[i], exps[i]
        total = 0.0
        for j in range(c):
            total += e[j]
        log_total = math.log(total)
        for j in range(c):
            row[j] -= log_total
        picked[i] = -row[labels[i]]


@numba.njit(cache=True, error_model="numpy")
def subtract_onehot_and_scale(probabilities, labels, scale):
    """probabilities <- (probabilities - onehot(labels)) * scale, in place ((N, C) C-contiguous)."""
    n, c = probabilities.shape
    for i in range(n):
        row = probabilities[i]
        row[labels[i]] -= 1
        for j in range(c):
            row[j] *= scale
