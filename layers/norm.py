"""Batch normalisation (BatchNorm1d, BatchNorm2d) composed from engine ops, with running statistics."""
import numpy as np

import engine.ops as F
from engine import backend
from engine.tensor import Tensor

from .validation import check_input
from .module import Module, Parameter


class _BatchNorm(Module):
    """Normalise each channel (axis 1) by batch statistics while training, running ones in eval.

    Running mean/var follow PyTorch: new = (1 - momentum) * old + momentum * batch value,
    with the unbiased batch variance; the normalisation itself uses the biased one.
    FLOPs: 2 per element in eval (scale and shift folded), 7 per element while training.
    """

    ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        dtype = dtype or backend.DEFAULT_DTYPE
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))

    def forward(self, x):
        x = check_input(self, x, self.ranks, axis=1, size=self.num_features)
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training:
            mean, centred, var, count = self.batch_statistics(x, axes)
            if count < 2:
                raise ValueError(f"{type(self).__name__}: training needs more than one value per "
                                 f"channel, got input shape {x.shape}")
            y = centred / F.sqrt(var + self.eps)
            self._update_running(mean.data, var.data, count)
            if self.affine:
                y = y * F.reshape(self.weight, bshape) + F.reshape(self.bias, bshape)
            return y
        xp = backend.xp_of(x.data)
        inv_std = 1.0 / xp.sqrt(self.running_var.astype(x.dtype) + self.eps)
        mean = self.running_mean.astype(x.dtype)
        if not self.affine:
            return (x - Tensor(mean.reshape(bshape))) * Tensor(inv_std.reshape(bshape))
        scale = self.weight * Tensor(inv_std)
        shift = self.bias - scale * Tensor(mean)
        return x * F.reshape(scale, bshape) + F.reshape(shift, bshape)

    def batch_statistics(self, x, axes):
        """(mean, x - mean, biased variance, values per channel) of the batch over `axes`. A data-parallel
        run replaces this on the instance with statistics over every process's batch
        (training.distributed.sync_batch_norm)."""
        mean = F.mean(x, axis=axes, keepdims=True)
        centred = x - mean
        return mean, centred, F.mean(centred * centred, axis=axes, keepdims=True), x.size // self.num_features

    def _update_running(self, batch_mean, batch_var, count):
        m = self.momentum
        unbiased = batch_var.reshape(-1) * (count / (count - 1))
        dtype = self.running_mean.dtype
        self.running_mean = ((1 - m) * self.running_mean + m * batch_mean.reshape(-1)).astype(dtype)
        self.running_var = ((1 - m) * self.running_var + m * unbiased).astype(dtype)

    def flops(self, inputs, output):
        return output.size * (7 if self.training else 2)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}" + \
            ("" if self.affine else ", affine=False")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (B, C) or (B, C, L) inputs."""
    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm of (B, C, H, W) inputs."""
    ranks = (4,)
