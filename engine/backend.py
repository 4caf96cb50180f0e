"""Array-module selection (NumPy on the CPU, CuPy on the GPU), device moves and dtype policy.

The GPU array module is CuPy, found on first use. One hook replaces it with any module that
offers CuPy's API (a stand-in that runs the GPU path without a GPU, as the device tests do):

- in process: ``backend.use_gpu_module(module, cupyx_module)``; it returns the previous pair,
  and ``use_gpu_module(None, None)`` turns the GPU off;
- for subprocesses (``train.py --device gpu``): the environment variable
  ``COMPACTNET_GPU_MODULE=dotted.module.name``, read on first use; that module's attribute
  ``cupyx`` stands for cupyx (its ``scatter_add``).
"""
import importlib
import os

import numpy as np

GPU_MODULE_VARIABLE = "COMPACTNET_GPU_MODULE"

_cupy = None
_cupyx = None
_cupy_checked = False

DEFAULT_DTYPE = np.float32


def use_gpu_module(module, cupyx_module):
    """Use `module` (CuPy's API) as the GPU array module and `cupyx_module` for cupyx.

    Returns the previous (module, cupyx_module) pair, so a caller can put it back.
    """
    global _cupy, _cupyx, _cupy_checked
    previous = (_load_cupy(), _cupyx)
    _cupy, _cupyx, _cupy_checked = module, cupyx_module, True
    return previous


def _load_cupy():
    """Import CuPy (or the module named by COMPACTNET_GPU_MODULE) once; None without a device."""
    global _cupy, _cupyx, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        named = os.environ.get(GPU_MODULE_VARIABLE, "")
        if named:   # a bad name must not fall back to the CPU silently
            try:
                module = importlib.import_module(named)
                _cupy, _cupyx = module, module.cupyx
            except (ImportError, AttributeError) as error:
                _cupy_checked = False
                raise ValueError(f"{GPU_MODULE_VARIABLE}={named!r}: not a GPU array module with a "
                                 f"'cupyx' attribute ({error})") from None
            return _cupy
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > 0:
                import cupyx
                _cupy, _cupyx = cupy, cupyx
        except Exception:  # ImportError, or CUDA present but no usable device
            _cupy = None
    return _cupy


def cupyx_module():
    """The cupyx module that goes with the GPU array module (scatter_add); None without a GPU."""
    return _cupyx if _load_cupy() is not None else None


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _load_cupy() is not None


def require_gpu():
    """Return the cupy module or raise a clear error saying what to install."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            "device 'gpu' requested but CuPy with a CUDA device is not available; "
            "install the GPU extra (pip install 'compactnet[gpu]', i.e. cupy-cuda12x) "
            "on a machine with an NVIDIA GPU, or use device='cpu'")
    return cp


_HOST_TYPES = (np.ndarray, np.generic, int, float, complex, bool, list, tuple, type(None))


def is_gpu_array(array):
    """True when `array` is a CuPy array (never imports CuPy just to check a host value)."""
    if not _cupy_checked and not isinstance(array, _HOST_TYPES):
        _load_cupy()   # a foreign array made before any device move: CuPy may own it
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def xp_of(*arrays):
    """The array module (numpy or cupy) that owns the given arrays."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def device_of(array):
    """'gpu' for CuPy arrays, 'cpu' otherwise."""
    return "gpu" if is_gpu_array(array) else "cpu"


def check_device(device):
    """Validate a device name and return it normalised ('cpu' or 'gpu')."""
    name = str(device).lower()
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        return "gpu"
    if name == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def to_device(array, device):
    """Copy `array` to `device` ('cpu' or 'gpu'); no copy when already there."""
    device = check_device(device)
    if device == "gpu":
        cp = require_gpu()
        return cp.asarray(array)
    if is_gpu_array(array):
        return array.get()
    return np.asarray(array)


def xp_for(device):
    """The array module for a device name."""
    return require_gpu() if check_device(device) == "gpu" else np


def to_numpy(array):
    """A NumPy array from a NumPy or CuPy array."""
    return array.get() if is_gpu_array(array) else np.asarray(array)


def as_array(data, dtype=None):
    """Turn data (array, scalar, list) into an array, keeping CuPy arrays on the GPU.

    Python floats and float lists become the default float dtype (float32), as in PyTorch.
    """
    if is_gpu_array(data) or isinstance(data, np.ndarray):
        if data.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: expected numeric data, got an array of dtype {data.dtype}")
        return data if dtype is None or data.dtype == dtype else data.astype(dtype)
    if data is None:
        raise TypeError("Tensor: expected an array, a number or a list of numbers, got None")
    arr = np.asarray(data)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"Tensor: expected numeric data, got {type(data).__name__} of dtype {arr.dtype}")
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype == np.float64 and not isinstance(data, np.generic):
        arr = arr.astype(DEFAULT_DTYPE)
    return arr
