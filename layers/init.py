"""Weight initialisers drawing from the engine's seeded generator, and the build budget of untrusted models."""
import contextlib
import math
import weakref

import numpy as np

from engine import backend
from engine import rng as erandom


_budget = None   # [limit, used] parameter values while build_budget is active


class BuildTooLarge(ValueError):
    """A model under build_budget asked for more parameter values than the budget allows."""


@contextlib.contextmanager
def build_budget(values):
    """Within: building parameters beyond `values` values in all raises BuildTooLarge (before each
    initialiser's allocation). Loaders of untrusted files build their recorded architecture under it."""
    global _budget
    previous, _budget = _budget, [int(values), 0]
    try:
        yield
    finally:
        _budget = previous


def check_allocation(shape):
    """BuildTooLarge when an array of `shape` does not fit beside the parameters alive under the budget."""
    if _budget is None:
        return
    size = math.prod(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if _budget[1] + size > _budget[0]:
        raise BuildTooLarge(f"the architecture asks for more than {_budget[0]:,} parameter values")
    return size


def charge(parameter):
    """Count a new Parameter against the active budget while it lives (a dense weight that a
    compression step replaces stops counting once it is freed)."""
    size = check_allocation(parameter.shape)
    if size is not None:
        _budget[1] += size
        weakref.finalize(parameter, _release, _budget, size)


def _release(budget, size):
    budget[1] -= size


def uniform(shape, bound, dtype=None):
    check_allocation(shape)
    dtype = dtype or backend.DEFAULT_DTYPE
    return erandom.get_rng().uniform(-bound, bound, size=shape).astype(dtype)


def normal(shape, std, dtype=None):
    check_allocation(shape)
    dtype = dtype or backend.DEFAULT_DTYPE
    return (erandom.get_rng().standard_normal(shape) * std).astype(dtype)


def fan_in_uniform(shape, fan_in, dtype=None):
    """PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(max(fan_in, 1)), dtype)


def glorot_uniform(shape, fan_in, fan_out, dtype=None):
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def orthogonal(rows, cols, dtype=None):
    """A rows x cols matrix with orthonormal columns (or rows, whichever is fewer)."""
    check_allocation((rows, cols))
    dtype = dtype or backend.DEFAULT_DTYPE
    a = erandom.get_rng().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return (q if rows >= cols else q.T).astype(dtype)
