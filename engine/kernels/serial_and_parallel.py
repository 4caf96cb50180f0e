"""Compile one kernel body twice, single-threaded and parallel (imported only by the *_numba modules)."""
import types

import numba


def serial_and_parallel(fn, name):
    """(name_serial, name_parallel): njit copies of fn; its numba.prange loops run as plain loops
    in the serial copy. Each copy gets its own name so Numba's on-disk cache keeps them apart."""
    def compiled(suffix, parallel):
        copy = types.FunctionType(fn.__code__, fn.__globals__, f"{name}_{suffix}", fn.__defaults__,
                                  fn.__closure__)
        copy.__qualname__ = f"{name}_{suffix}"
        copy.__doc__ = fn.__doc__
        return numba.njit(parallel=parallel, cache=True)(copy)
    return compiled("serial", False), compiled("parallel", True)
