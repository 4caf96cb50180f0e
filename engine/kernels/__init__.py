"""Raw array kernels without autograd: NumPy reference, Numba CPU and CuPy paths behind one entry."""
import importlib
import os

_numba_modules = {}


def load_numba_module(name):
    """The Numba kernels module engine.kernels.<name>, or None when Numba is missing, unusable
    or disabled by COMPACTNET_DISABLE_NUMBA=1 (then callers run their NumPy reference)."""
    if os.environ.get("COMPACTNET_DISABLE_NUMBA", "") == "1":
        return None
    if name not in _numba_modules:
        try:
            _numba_modules[name] = importlib.import_module(f"{__name__}.{name}")
        except Exception:  # ImportError, or numba present but unusable here
            _numba_modules[name] = None
    return _numba_modules[name]
