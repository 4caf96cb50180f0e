"""Array-module selection (NumPy on the CPU, CuPy on the GPU), device moves and dtype policy."""
import numpy as np

_cupy = None
_cupy_checked = False

DEFAULT_DTYPE = np.float32


def _load_cupy():
    """Import CuPy once; return the module or None when it or a device is missing."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # ImportError, or CUDA present but no usable device
            _cupy = None
    return _cupy


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


def is_gpu_array(array):
    """True when `array` is a CuPy array (never imports CuPy just to check)."""
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
