"""Elementwise helpers on raw NumPy/CuPy arrays, shared by the ops and the kernels."""
import numpy as np


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
