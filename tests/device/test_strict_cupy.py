"""The stand-in refuses what CuPy refuses, and the backend hook installs and removes it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine import backend
from tests.conftest import ROOT
from tests.device import strict_cupy as cp

HOST = np.arange(6.0).reshape(2, 3)
IMPLICIT_CONVERSIONS = {
    "np.asarray": lambda x: np.asarray(x),
    "np.array": lambda x: np.array(x),
    "__array__": lambda x: x.__array__(),
    "numpy ufunc": lambda x: np.exp(x),
    "numpy function": lambda x: np.concatenate([x, x]),
    "float of many": lambda x: float(x),
    "device + host": lambda x: x + HOST,
    "host + device": lambda x: HOST + x,
    "device *= host": lambda x: x.__imul__(HOST),
    "module function mixing": lambda x: cp.maximum(x, HOST),
    "host written into device": lambda x: x.__setitem__(0, HOST[0]),
    "ufunc.at": lambda x: cp.add.at(x, [0], 1.0),
}


@pytest.mark.parametrize("name", sorted(IMPLICIT_CONVERSIONS))
def test_implicit_host_conversion_or_mixing_raises_type_error(name):
    with pytest.raises((TypeError, AttributeError), match=r"\S"):
        IMPLICIT_CONVERSIONS[name](cp.asarray(HOST))


def test_numba_kernel_refuses_device_arrays():
    numba = pytest.importorskip("numba", reason="the Numba refusal needs numba (the fast extra)")
    total = numba.njit(lambda a: a.sum())
    with pytest.raises(Exception, match="Numba"):
        total(cp.asarray(HOST))


def test_explicit_moves_scalars_and_results_stay_on_the_device():
    x = cp.asarray(HOST)
    assert isinstance(x * 2.0 + np.float64(1.0), cp.ndarray)
    assert isinstance(x.sum(), cp.ndarray) and x.sum().shape == ()     # CuPy reduces to 0-d arrays
    assert float(x.sum()) == 15.0 and float(x[1, 2]) == 5.0
    np.testing.assert_array_equal(cp.asnumpy(cp.exp(x)), np.exp(HOST))
    np.testing.assert_array_equal(x.T.get(), HOST.T)
    assert cp.get_array_module(x) is cp and cp.get_array_module(HOST) is np
    target = cp.zeros(3)
    cp.cupyx.scatter_add(target, cp.asarray([0, 0, 2]), cp.ones(3))
    np.testing.assert_array_equal(target.get(), [2.0, 0.0, 1.0])
    u, s, vt = cp.linalg.svd(x, full_matrices=False)
    assert all(isinstance(a, cp.ndarray) for a in (u, s, vt))
    assert isinstance(cp.random.default_rng(0).standard_normal(3), cp.ndarray)


def test_hook_installs_the_module_and_gives_back_the_previous_one():
    previous = backend.use_gpu_module(cp, cp.cupyx)
    try:
        assert backend.gpu_available() and backend.cupyx_module() is cp.cupyx
        t = engine.Tensor(np.ones(2)).to("gpu")
        assert t.device == "gpu" and isinstance(t.data, cp.ndarray)
        assert backend.xp_of(t.data) is cp and t.to("cpu").device == "cpu"
    finally:
        assert backend.use_gpu_module(*previous) == (cp, cp.cupyx)
    assert backend.gpu_available() == (previous[0] is not None)


def _train_with_hook(value):
    env = {**os.environ, "PYTHONPATH": str(ROOT), backend.GPU_MODULE_VARIABLE: value}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--device", "gpu", "--epochs", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_bad_hook_name_is_a_one_line_error():
    result = _train_with_hook("no_such_module_anywhere")
    assert result.returncode == 2, result.stderr
    assert "COMPACTNET_GPU_MODULE='no_such_module_anywhere'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_device_array_made_before_any_device_move_becomes_a_gpu_tensor():
    """The GPU module loads on first sight of a foreign array, not only on .to('gpu')."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), backend.GPU_MODULE_VARIABLE: "tests.device.strict_cupy"}
    code = ("import engine, engine.ops as F\nfrom tests.device import strict_cupy as cp\n"
            "t = engine.Tensor(cp.ones(3), requires_grad=True)\nF.exp(t).sum().backward()\n"
            "assert t.device == 'gpu' and isinstance(t.grad, cp.ndarray), t.device\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
