"""A strict CuPy stand-in for tests: NumPy computes underneath, CuPy's refusals hold on top.

Its arrays (`ndarray`) wrap a NumPy array and are their own type. As with CuPy, a device array
never turns into a NumPy array by itself: `np.asarray(x)`, `np.array(x)`, `x.__array__()`, a
NumPy function or ufunc given `x`, a Numba kernel given `x`, and arithmetic mixing `x` with a
NumPy array all raise TypeError; `float(x)` works for one element only. `.get()` and `asnumpy`
are the explicit ways back to the host, `asarray`/`array` the ways in.

Deliberately stricter than CuPy in two places, both hidden host<->device traffic our code must
not rely on: NumPy ufuncs and functions (`np.exp(x)`, `np.concatenate([x])`) refuse device
arrays instead of dispatching to CuPy through __array_ufunc__/__array_function__, and writing a
NumPy array into a device array (`x[i] = host_array`) refuses instead of copying it over.

Load it into the engine with `engine.backend.use_gpu_module(strict_cupy, strict_cupy.cupyx)`,
or in a subprocess with COMPACTNET_GPU_MODULE=tests.device.strict_cupy.
"""
import builtins
import numbers
import types

import numpy as _np

__all__ = ["ndarray", "asarray", "array", "asnumpy", "get_array_module", "cupyx", "cuda", "random",
           "linalg"]

_HOST_MESSAGE = ("Implicit conversion to a NumPy array is not allowed. "
                 "Please use `.get()` to construct a NumPy array explicitly.")


def _refuse_host(what):
    raise TypeError(f"strict_cupy: {what}: a NumPy array cannot be mixed with a device array "
                    "(move it with asarray() first)")


def _to_inner(value, where):
    """A device array's NumPy payload; Python and NumPy scalars pass; NumPy arrays are refused."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, _np.ndarray):
        _refuse_host(where)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_inner(v, where) for v in value)
    return value


def _index_inner(key):
    """An index may hold device arrays, NumPy index arrays and lists (CuPy converts them)."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index_inner(k) for k in key)
    return key


def _wrap(result):
    """NumPy results become device arrays; NumPy scalars become 0-d device arrays (as in CuPy)."""
    if isinstance(result, _np.ndarray):
        return ndarray(result)
    if isinstance(result, _np.generic):
        return ndarray(_np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    if isinstance(result, (_np.random.Generator, _np.random.RandomState)):
        return _Proxy(result, type(result).__name__)    # its draws land on the device
    return result


def _device_call(fn, name, args, kwargs):
    args = _to_inner(tuple(args), name)
    kwargs = {k: _to_inner(v, name) for k, v in kwargs.items()}
    return _wrap(fn(*args, **kwargs))


def _operand(other, method):
    """The payload of an operator's other operand; None when the operator does not apply to it."""
    if isinstance(other, _np.ndarray):
        _refuse_host(f"operator {method}")
    if isinstance(other, (ndarray, numbers.Number, _np.generic)):
        return _to_inner(other, method)
    return None


def _binary(method):
    def op(self, other):
        inner = _operand(other, method)
        return NotImplemented if inner is None else _wrap(getattr(self._a, method)(inner))
    op.__name__ = method
    return op


def _inplace(method):
    def op(self, other):
        inner = _operand(other, method)
        if inner is None:
            return NotImplemented
        getattr(self._a, method)(inner)
        return self
    op.__name__ = method
    return op


def _unary(method):
    def op(self):
        return _wrap(getattr(self._a, method)())
    op.__name__ = method
    return op


class ndarray:
    """A device array: a NumPy array that refuses to leave the device implicitly."""
    __slots__ = ("_a",)
    __array_ufunc__ = None        # np.<ufunc>(x) and host_array <op> x raise TypeError
    __hash__ = None

    def __init__(self, array):
        if not isinstance(array, _np.ndarray):
            raise TypeError("strict_cupy.ndarray wraps a NumPy array; use strict_cupy.asarray()")
        self._a = array

    def __array__(self, *args, **kwargs):
        raise TypeError(_HOST_MESSAGE)

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(f"strict_cupy: numpy.{func.__name__} was given a device array; "
                        "use the array module of the data (backend.xp_of)")

    @property
    def _numba_type_(self):       # Numba asks this of unknown objects: refuse as CuPy's arrays do
        raise TypeError("strict_cupy: a device array cannot be passed to a Numba CPU kernel")

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "flat", "data", "base"):
            raise AttributeError(f"strict_cupy.ndarray has no attribute {name!r}")
        value = getattr(self._a, name)
        if callable(value):
            return lambda *args, **kwargs: _device_call(value, f"ndarray.{name}", args, kwargs)
        return _wrap(value)

    # explicit ways back to the host
    def get(self, stream=None, order="C", out=None):
        return _np.array(self._a, order=order, copy=True)

    def __float__(self):
        return float(self._single("float"))

    def __int__(self):
        return int(self._single("int"))

    def __complex__(self):
        return complex(self._single("complex"))

    def __bool__(self):
        return bool(self._single("bool"))

    def __index__(self):
        if self._a.ndim != 0 or self._a.dtype.kind not in "iub":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return int(self._a)

    def _single(self, what):
        if self._a.size != 1:
            raise TypeError(f"{what}(): only size-1 device arrays can be converted to Python scalars")
        return self._a.reshape(()).item()

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (ndarray(self._a[i]) if self._a.ndim > 1 else _wrap(self._a[i]) for i in range(len(self._a)))

    def __getitem__(self, key):
        return _wrap(self._a[_index_inner(key)])

    def __setitem__(self, key, value):
        self._a[_index_inner(key)] = _to_inner(value, "__setitem__")

    def __repr__(self):
        return f"strict_cupy.{self._a!r}"

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    def __reduce__(self):
        return (ndarray, (self._a,))

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    @property
    def T(self):
        return ndarray(self._a.T)

    @property
    def device(self):
        return cuda.Device(0)

    for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
                  "xor", "lshift", "rshift", "divmod"):
        locals()[f"__{_name}__"] = _binary(f"__{_name}__")
        locals()[f"__r{_name}__"] = _binary(f"__r{_name}__")
        if _name != "divmod":
            locals()[f"__i{_name}__"] = _inplace(f"__i{_name}__")
    for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
        locals()[f"__{_name}__"] = _binary(f"__{_name}__")
    for _name in ("neg", "pos", "abs", "invert"):
        locals()[f"__{_name}__"] = _unary(f"__{_name}__")
    del _name


# ---------------------------------------------------------------- the ways in and out
def asarray(a, dtype=None, order=None, **kwargs):
    """A device array from a device array, NumPy array, list or scalar (the host-to-device copy)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a._a.dtype == _np.dtype(dtype) else ndarray(a._a.astype(dtype))
    return ndarray(_np.array(_to_inner(a, "asarray") if isinstance(a, (list, tuple)) else a,
                             dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", **kwargs):
    if isinstance(obj, ndarray):
        return ndarray(_np.array(obj._a, dtype=dtype, copy=copy, order=order))
    return asarray(obj, dtype=dtype, order=order)


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """The host copy of a device array; other input goes through numpy.asarray."""
    if isinstance(a, ndarray):
        return a.get(order=order)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return builtins.any(isinstance(a, ndarray) for a in args) and _this_module() or _np


def _this_module():
    import sys
    return sys.modules[__name__]


# ---------------------------------------------------------------- the rest of the API: NumPy's, wrapped
_HOST_ONLY = {"fromfile", "load", "save", "savez", "loadtxt", "genfromtxt", "frombuffer", "ctypeslib"}


def _wrapped_function(fn, name):
    def call(*args, **kwargs):
        return _device_call(fn, name, args, kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"strict_cupy stand-in for numpy {name}"
    return call


class _Ufunc:
    """A NumPy ufunc on device arrays, with its reduce/accumulate/outer methods."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self.nin, self.nout = ufunc.nin, ufunc.nout

    def __call__(self, *args, **kwargs):
        return _device_call(self._ufunc, self.__name__, args, kwargs)

    def __getattr__(self, name):
        if name == "at":
            raise AttributeError("strict_cupy: ufunc.at is NumPy-only here; use cupyx.scatter_add")
        value = getattr(self._ufunc, name)
        return _wrapped_function(value, f"{self.__name__}.{name}") if callable(value) else value


class _Proxy:
    """A NumPy object (a random Generator, say) whose methods take and give device arrays."""

    def __init__(self, target, name):
        self._target, self._name = target, name

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return _wrapped_function(value, f"{self._name}.{name}")
        return value

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._target, name, value)


def _wrap_member(value, name):
    if isinstance(value, _np.ufunc):
        return _Ufunc(value)
    if isinstance(value, types.ModuleType):
        return _Namespace(value, name)
    if isinstance(value, type) and not issubclass(value, (_np.generic, _np.dtype)) \
            and value.__module__.startswith("numpy.random"):
        return lambda *args, **kwargs: _Proxy(value(*_to_inner(args, name), **kwargs), name)
    if callable(value) and not isinstance(value, type):
        return _wrapped_function(value, name)
    return value   # dtypes, scalar types, constants (pi, inf, newaxis)


class _Namespace(types.ModuleType):
    """A NumPy submodule (random, linalg, fft) seen through the stand-in."""

    def __init__(self, module, name):
        super().__init__(f"strict_cupy.{name}")
        self._module = module

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _wrap_member(getattr(self._module, name), name)


def __getattr__(name):
    if name in _HOST_ONLY or name.startswith("__") or not hasattr(_np, name):
        raise AttributeError(f"module 'strict_cupy' has no attribute {name!r}")
    value = _wrap_member(getattr(_np, name), name)
    globals()[name] = value        # resolved once
    return value


random = _Namespace(_np.random, "random")
linalg = _Namespace(_np.linalg, "linalg")
fft = _Namespace(_np.fft, "fft")


# ---------------------------------------------------------------- cupyx and cuda
def _scatter_add(target, index, values):
    """cupyx.scatter_add: target[index] += values with repeated indices accumulated."""
    if not isinstance(target, ndarray):
        raise TypeError("cupyx.scatter_add: the target must be a device array")
    _np.add.at(target._a, _index_inner(index), _to_inner(values, "cupyx.scatter_add"))


cupyx = types.SimpleNamespace(scatter_add=_scatter_add, __name__="strict_cupy.cupyx")


class _Device:
    def __init__(self, index=0):
        self.id = index

    def synchronize(self):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _device_properties(index=0):
    return {"name": b"strict_cupy stand-in (NumPy on the CPU)", "totalGlobalMem": 0}


cuda = types.SimpleNamespace(
    Device=_Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=_device_properties,
                                  runtimeGetVersion=lambda: 0),
    get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
)
