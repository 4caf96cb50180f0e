"""Losses: cross-entropy on integer labels, mean squared error, knowledge distillation."""
import numpy as np

from .. import backend
from ..function import Function
from ..kernels import load_numba_module
from ..kernels.elementwise import numba_float_arrays
from ..tensor import Tensor, as_tensor
from ..grad_mode import no_grad
from .activation import log_softmax, log_softmax_array
from .math import exp
from .reduce import mean, sum as sum_

_REDUCTIONS = ("mean", "sum", "none")

# Without a graph, log-softmax is formed this many elements at a time: a whole evaluation batch of a
# language model (256 x 35 windows over 10,000 words) would otherwise need two or three float
# temporaries of 358 MB each besides its logits.
NO_GRAD_BLOCK_ELEMENTS = 1 << 20


class CrossEntropy(Function):
    """Softmax cross-entropy; logits (..., C), labels (...) of integers in [0, C)."""

    def __init__(self, labels, reduction, ignore_index):
        self.labels, self.reduction, self.ignore_index = labels, reduction, ignore_index

    def forward(self, logits):
        c = logits.shape[-1]
        flat = logits.reshape(-1, c)
        labels = self.labels.reshape(-1)
        valid = labels != self.ignore_index if self.ignore_index is not None else None
        safe = labels if valid is None else backend.xp_of(logits).where(valid, labels, 0)
        self.kernels = _numba_kernels(flat, safe)
        if self.recording:
            logp, picked = _log_softmax_picked(flat, safe, self.kernels)
            self.logp, self.safe, self.valid = logp, safe, valid
        else:       # backward cannot run: only the picked entries are needed, never the whole logp
            picked = picked_log_probabilities(flat, safe, self.kernels)
        if valid is not None:
            picked = picked * valid
        self.count = int(valid.sum()) if valid is not None else len(safe)
        if self.reduction == "none":
            return picked.reshape(self.labels.shape)
        total = picked.sum()
        if self.reduction == "sum":
            return total
        return total / max(self.count, 1)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        if self.kernels is not None and self.valid is None and self.reduction != "none":
            scale = gy if self.reduction == "sum" else gy / max(self.count, 1)
            g = np.exp(self.logp)
            self.kernels.subtract_onehot_and_scale(g, self.safe, self.logp.dtype.type(scale))
            return g.reshape(self.labels.shape + (g.shape[-1],))
        g = xp.exp(self.logp)
        g[xp.arange(len(self.safe)), self.safe] -= 1
        if self.reduction == "none":
            scale = gy.reshape(-1, 1)
        elif self.reduction == "sum":
            scale = gy
        else:
            scale = gy / max(self.count, 1)
        g = g * scale
        if self.valid is not None:
            g = g * self.valid[:, None]
        return g.reshape(self.labels.shape + (g.shape[-1],)).astype(self.logp.dtype, copy=False)


def _log_softmax_picked(flat, labels, kernels):
    """(log_softmax(flat), -log p of each row's label) for logits (N, C) and labels (N,): two Numba passes
    around NumPy's exp when `kernels` (cross_entropy_numba) is given, else NumPy's (or CuPy's) calls."""
    if kernels is not None:
        logp, picked = np.empty_like(flat), np.empty(len(labels), dtype=flat.dtype)
        kernels.shift_by_row_max(flat, logp)
        exps = np.exp(logp)
        kernels.log_softmax_from_exp(logp, exps, labels, picked)
        return logp, picked
    logp = log_softmax_array(flat, axis=1)
    return logp, -logp[backend.xp_of(flat).arange(len(labels)), labels]


def picked_log_probabilities(flat, labels, kernels=None):
    """-log softmax(flat)[i, labels[i]] for logits (N, C), formed NO_GRAD_BLOCK_ELEMENTS at a time."""
    xp = backend.xp_of(flat)
    rows = max(1, NO_GRAD_BLOCK_ELEMENTS // max(flat.shape[1], 1))
    picked = None
    for start in range(0, len(labels), rows):
        stop = min(start + rows, len(labels))
        _, block = _log_softmax_picked(flat[start:stop], labels[start:stop], kernels)
        if picked is None:      # log-softmax's dtype: integer logits give floating log-probabilities
            picked = xp.empty(len(labels), dtype=block.dtype)
        picked[start:stop] = block
    return picked


def _numba_kernels(flat, labels):
    """The cross_entropy_numba module when the logits are a C-contiguous float32/float64 NumPy array
    and the labels a NumPy integer array, else None (NumPy or CuPy runs)."""
    if not numba_float_arrays(flat) or type(labels) is not np.ndarray or labels.dtype.kind not in "iu":
        return None
    return load_numba_module("cross_entropy_numba")


def _labels_in_range(labels, classes):
    """Whether every label lies in [0, classes): one Numba pass on NumPy integers, else min and max."""
    if type(labels) is np.ndarray and labels.dtype.kind in "iu":
        kernels = load_numba_module("cross_entropy_numba")
        if kernels is not None:
            return kernels.labels_in_range(labels.reshape(-1), classes)
    return int(labels.min()) >= 0 and int(labels.max()) < classes


def cross_entropy(logits, labels, reduction="mean", ignore_index=None):
    """Mean (or sum / per-element) negative log-likelihood of integer `labels` under softmax(logits).

    Classes are on the last axis: logits (N, C) with labels (N,), or (B, T, C) with (B, T).
    """
    logits = as_tensor(logits)
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = backend.xp_of(logits.data)
    labels = xp.asarray(labels)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: labels shape {labels.shape} must equal logits shape without its "
            f"class axis {logits.shape[:-1]} (logits {logits.shape})")
    if labels.size == 0:
        raise ValueError("cross_entropy: empty batch (no labels)")
    c = logits.shape[-1]
    check = labels if ignore_index is None else labels[labels != ignore_index]
    if check.size and not _labels_in_range(check, c):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {c}) for {c} classes, "
            f"got values in [{int(check.min())}, {int(check.max())}]")
    return CrossEntropy(labels, reduction, ignore_index)(logits)


class MSE(Function):
    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, pred, target):
        self.diff = pred - target
        sq = self.diff * self.diff
        if self.reduction == "none":
            return sq
        if self.reduction == "sum":
            return sq.sum()
        return sq.mean()

    def backward(self, gy):
        g = 2 * self.diff * gy
        if self.reduction == "mean":
            g = g / self.diff.dtype.type(self.diff.size)
        return g, -g


def mse_loss(pred, target, reduction="mean"):
    """Mean (or sum / per-element) squared difference; shapes must match."""
    pred = as_tensor(pred)
    target = as_tensor(target, like=pred)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: pred shape {pred.shape} != target shape {target.shape}")
    if pred.size == 0:
        raise ValueError("mse_loss: empty batch")
    return MSE(reduction)(pred, target)


def distillation_loss(student_logits, teacher_logits, hard_loss, temperature, alpha):
    """(1 - alpha) hard_loss + alpha T^2 mean KL(softmax(teacher / T) || softmax(student / T)) (Hinton et al.).

    Classes on the last axis; the KL is summed over classes and averaged over the other axes.
    The teacher's logits are constants (no gradient); T^2 keeps the soft term's gradient scale
    independent of T. alpha = 0 gives hard_loss exactly.
    """
    if tuple(student_logits.shape) != tuple(teacher_logits.shape):
        raise ValueError(f"distillation_loss: teacher logits have shape {tuple(teacher_logits.shape)}, "
                         f"the student's {tuple(student_logits.shape)}; the teacher must be the same task's model")
    if not temperature > 0:
        raise ValueError(f"distillation_loss: temperature must be > 0, got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation_loss: alpha must be in [0, 1], got {alpha!r}")
    if alpha == 0:
        return hard_loss
    with no_grad():
        teacher = Tensor(teacher_logits.data if isinstance(teacher_logits, Tensor) else teacher_logits)
        teacher_log_p = log_softmax(teacher / temperature, axis=-1)
        teacher_p = exp(teacher_log_p)
    student_log_q = log_softmax(student_logits / temperature, axis=-1)
    kl = mean(sum_(teacher_p * (teacher_log_p - student_log_q), axis=-1))
    soft = kl * (temperature * temperature)
    return soft if alpha == 1 else hard_loss * (1.0 - alpha) + soft * alpha
