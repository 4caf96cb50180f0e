"""Elementwise helpers on raw NumPy/CuPy arrays, shared by the ops and the kernels."""
import numpy as np

from . import load_numba_module

_NUMBA_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def numba_float_arrays(*arrays):
    """Whether every array is a C-contiguous float32/float64 NumPy array, what the flat Numba kernels
    take. (type(a) is np.ndarray also turns away CuPy arrays, and ndarray subclasses, which run NumPy.)"""
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype not in _NUMBA_FLOATS or not a.flags.c_contiguous:
            return False
    return True


def elementwise_kernels(*arrays):
    """The Numba module elementwise_numba when numba_float_arrays(*arrays) (its kernels walk them flat),
    else None: the caller runs NumPy (or CuPy)."""
    return load_numba_module("elementwise_numba") if numba_float_arrays(*arrays) else None


def sigmoid_into(xp, x, out):
    """out <- 1 / (1 + exp(-x)) (out may be x). exp(-x) overflows to inf below -88 (float32) and the
    result is then exactly 0, so the overflow warning is silenced. (The recurrent Numba steps take
    0.5 tanh(0.5 x) + 0.5 instead, with every gate in one tanh call.)"""
    with np.errstate(over="ignore"):
        xp.negative(x, out=out)
        xp.exp(out, out=out)
    out += 1
    xp.reciprocal(out, out=out)
    return out


def subtract_scaled(target, step, alpha):
    """target -= alpha * step, in place (the optimisers' update): one Numba pass on contiguous float
    CPU arrays of one dtype and shape, NumPy's two passes otherwise. For a Python number alpha (as the
    optimisers' learning rates are) both round alpha * step to the arrays' dtype first, so the result
    is the same."""
    if target.shape == step.shape and target.dtype == step.dtype:
        kernels = elementwise_kernels(target, step)
        if kernels is not None:
            kernels.subtract_scaled(target, step, target.dtype.type(alpha))
            return target
    target -= alpha * step
    return target
