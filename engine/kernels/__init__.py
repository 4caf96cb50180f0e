"""Raw array kernels without autograd: NumPy reference, Numba CPU and CuPy paths behind one entry."""
import importlib
import os

DISABLE_NUMBA_VARIABLE = "COMPACTNET_DISABLE_NUMBA"
PARALLEL_VARIABLE = "COMPACTNET_NUMBA_PARALLEL"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

# Elementary operations (a multiply-add, or a copied entry) below which a kernel with a serial and
# a parallel copy runs the serial one. Starting and joining Numba's thread pool costs about as much
# as 10^5 such operations on one core, and under CPU contention a parallel region can stall for a
# scheduler tick (RESULTS.md, speed, second session), so smaller calls lose by threading. The
# value is the one the wavelet kernels were tuned with; every kernel family reads it from here.
PARALLEL_MIN_WORK = 200_000

_numba_modules = {}


_environ_data = getattr(os.environ, "_data", None)      # CPython: the dict behind os.environ
_environ_key = getattr(os.environ, "encodekey", None)
_encoded_keys = {}


def _environment_value(name):
    """os.environ.get(name, ""), as cheaply as CPython allows: the switches are read on every kernel
    call (a dozen times in a batch-1 LeNet-5 forward), and Mapping.get costs about 1 us when the
    variable is unset (it raises and catches a KeyError). Reads os.environ's own dict, so a change made
    through os.environ is seen at once; elsewhere the public path."""
    if not isinstance(_environ_data, dict) or _environ_key is None:
        return os.environ.get(name, "")
    key = _encoded_keys.get(name)
    if key is None:
        key = _encoded_keys[name] = _environ_key(name)
    raw = _environ_data.get(key)
    return "" if raw is None else os.environ.decodevalue(raw)


def env_flag(name):
    """The boolean environment variable `name`: 1/true/yes/on (any case) is True, 0/false/no/off or
    unset/empty is False; any other value is a ValueError naming the variable and the value."""
    raw = _environment_value(name)
    if not raw:         # unset, the usual case: nothing to parse
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off (or unset)")


def numba_disabled():
    """True when COMPACTNET_DISABLE_NUMBA is 1/true/yes/on: every kernel family then runs NumPy."""
    return env_flag(DISABLE_NUMBA_VARIABLE)


def pays_to_thread(work):
    """Whether a call doing `work` elementary operations should run a kernel's parallel copy."""
    return work >= PARALLEL_MIN_WORK


def load_numba_module(name):
    """The Numba kernels module engine.kernels.<name>, or None when Numba is missing, unusable or
    disabled by COMPACTNET_DISABLE_NUMBA (then callers run their NumPy reference). Every kernel
    family loads its Numba module here, so the variable means the same thing for all of them."""
    if numba_disabled():
        return None
    if name not in _numba_modules:
        try:
            _numba_modules[name] = importlib.import_module(f"{__name__}.{name}")
        except Exception:  # ImportError, or numba present but unusable here
            _numba_modules[name] = None
    return _numba_modules[name]
