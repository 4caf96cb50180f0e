"""Embedding layer: integer tokens -> rows of a (vocab, dim) matrix (no FLOPs: a lookup)."""
import engine.ops as F
from engine import backend
from engine.tensor import Tensor

from . import init
from .module import Module, Parameter


class Embedding(Module):
    """weight (vocab, dim), PyTorch's default N(0, 1) init; input: integer array of any shape."""

    def __init__(self, vocab, dim, dtype=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("dim", dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Embedding: {name} must be a positive int, got {v!r}")
        self.vocab, self.dim = vocab, dim
        self.weight = Parameter(init.normal((vocab, dim), 1.0, dtype))

    def forward(self, indices):
        idx = indices.data if isinstance(indices, Tensor) else indices
        idx = backend.xp_of(self.weight.data).asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected integer token indices, got dtype {idx.dtype}")
        if idx.size == 0:
            raise ValueError(f"Embedding: empty input of shape {idx.shape}")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.vocab:
            raise ValueError(f"Embedding: expected indices in [0, {self.vocab}), "
                             f"got values in [{lo}, {hi}]")
        return F.embedding(idx, self.weight)

    def flops(self, inputs, output):
        return 0

    def extra_repr(self):
        return f"{self.vocab}, {self.dim}"
