"""Weight initialisers drawing from the engine's seeded generator."""
import math

import numpy as np

from engine import backend
from engine import rng as erandom


def uniform(shape, bound, dtype=None):
    dtype = dtype or backend.DEFAULT_DTYPE
    return erandom.get_rng().uniform(-bound, bound, size=shape).astype(dtype)


def normal(shape, std, dtype=None):
    dtype = dtype or backend.DEFAULT_DTYPE
    return (erandom.get_rng().standard_normal(shape) * std).astype(dtype)


def fan_in_uniform(shape, fan_in, dtype=None):
    """PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(max(fan_in, 1)), dtype)


def glorot_uniform(shape, fan_in, fan_out, dtype=None):
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def orthogonal(rows, cols, dtype=None):
    """A rows x cols matrix with orthonormal columns (or rows, whichever is fewer)."""
    dtype = dtype or backend.DEFAULT_DTYPE
    a = erandom.get_rng().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return (q if rows >= cols else q.T).astype(dtype)
