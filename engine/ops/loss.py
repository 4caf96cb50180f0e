"""Losses: cross-entropy on integer labels and mean squared error."""
from .. import backend
from ..function import Function
from ..tensor import Tensor, as_tensor
from .activation import log_softmax_array

_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropy(Function):
    """Softmax cross-entropy; logits (..., C), labels (...) of integers in [0, C)."""

    def __init__(self, labels, reduction, ignore_index):
        self.labels, self.reduction, self.ignore_index = labels, reduction, ignore_index

    def forward(self, logits):
        xp = backend.xp_of(logits)
        c = logits.shape[-1]
        flat = logits.reshape(-1, c)
        labels = self.labels.reshape(-1)
        valid = labels != self.ignore_index if self.ignore_index is not None else None
        safe = labels if valid is None else xp.where(valid, labels, 0)
        logp = log_softmax_array(flat, axis=1)
        self.logp, self.safe, self.valid = logp, safe, valid
        picked = -logp[xp.arange(len(safe)), safe]
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
    if check.size and (int(check.min()) < 0 or int(check.max()) >= c):
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
