"""Helpers for the engine tests: float64 leaves, values kept away from kinks, gradcheck shorthand."""
import numpy as np

import engine


def leaf(array, requires_grad=True):
    """A float64 leaf tensor (a copy, so gradcheck's nudges never touch the caller's array)."""
    return engine.Tensor(np.array(array, dtype=np.float64), requires_grad=requires_grad)


def away_from(rng, shape, kinks=(0.0,), gap=0.1, scale=1.0):
    """Normal values at least `gap` away from every kink (so finite differences never straddle one)."""
    x = rng.standard_normal(shape) * scale
    for k in kinks:
        close = np.abs(x - k) < gap
        x = np.where(close, k + np.where(x >= k, gap, -gap) * 2, x)
    return x


def distinct(rng, shape, gap=0.05):
    """Values whose pairwise gaps are all at least `gap` (no ties for max/min/pooling)."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2) * gap * 2 + rng.uniform(-gap / 2, gap / 2, n)
    return rng.permutation(values).reshape(shape)


def check(fn, *arrays, **kwargs):
    """gradcheck of fn over float64 leaves made from `arrays` (raises on failure)."""
    return engine.gradcheck(fn, *[leaf(a) for a in arrays], **kwargs)
