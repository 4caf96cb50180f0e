"""Backend: CPU/GPU selection and its errors, imports without optional packages, GPU equals CPU."""
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import backend
from tests.conftest import ROOT, requires_gpu


def _run_python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.mark.skipif(backend.gpu_available(), reason="checks the error raised when no GPU is usable")
def test_asking_for_gpu_without_cupy_says_what_to_install():
    with pytest.raises(RuntimeError, match=r"cupy-cuda12x|compactnet\[gpu\]"):
        backend.to_device(np.ones(2), "gpu")
    with pytest.raises(RuntimeError, match="CuPy"):
        engine.Tensor(np.ones(2)).to("cuda")
    assert backend.gpu_available() is False


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.to_device(np.ones(2), "tpu")


def test_cpu_moves_and_array_module():
    a = np.ones(3)
    assert backend.to_device(a, "cpu") is a
    assert backend.xp_of(a) is np and backend.device_of(a) == "cpu"
    t = engine.Tensor(a)
    assert t.to("cpu") is t and t.device == "cpu"
    np.testing.assert_array_equal(backend.to_numpy(a), a)


def test_float_default_dtype():
    assert engine.Tensor([1.0, 2.0]).dtype == backend.DEFAULT_DTYPE == np.float32
    assert engine.Tensor(np.ones(2)).dtype == np.float64   # explicit float64 arrays are kept


def test_import_without_numba_and_cupy():
    result = _run_python(
        "import sys; sys.modules['numba'] = None; sys.modules['cupy'] = None\n"
        "import engine, layers, engine.ops as F\n"
        "x = engine.Tensor([[1.0, -2.0]], requires_grad=True)\n"
        "F.relu(x).sum().backward(); assert x.grad.tolist() == [[1.0, 0.0]]\n"
        "assert not engine.backend.gpu_available()\n")
    assert result.returncode == 0, result.stderr


def test_import_engine_does_not_import_optional_packages():
    result = _run_python(
        "import sys, engine, engine.ops, layers\n"
        "loaded = [m for m in ('numba', 'cupy', 'matplotlib', 'torch', 'pywt', 'tensorly', 'scipy')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n")
    assert result.returncode == 0, result.stderr


GPU_OPS = {
    "matmul": lambda a, b: F.matmul(a, b),
    "softmax": lambda a, b: F.softmax(a @ b),
    "cross_entropy": lambda a, b: F.cross_entropy(a @ b, np.array([0, 2, 1, 3])),
    "tanh_sum": lambda a, b: F.tanh(a).sum(axis=1) + F.sigmoid(b).mean(),
}


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(GPU_OPS))
def test_gpu_forward_and_backward_equal_cpu(name, rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 4))
    results = {}
    for device in ("cpu", "gpu"):
        ta = engine.Tensor(backend.to_device(a, device), requires_grad=True)
        tb = engine.Tensor(backend.to_device(b, device), requires_grad=True)
        y = GPU_OPS[name](ta, tb)
        y.backward(backend.xp_of(y.data).ones_like(y.data))
        results[device] = (y.numpy(), backend.to_numpy(ta.grad), backend.to_numpy(tb.grad))
    for cpu, gpu in zip(results["cpu"], results["gpu"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


@requires_gpu
@pytest.mark.gpu
def test_gpu_conv_and_pool_equal_cpu(rng):
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    outs = {}
    for device in ("cpu", "gpu"):
        tx = engine.Tensor(backend.to_device(x, device), requires_grad=True)
        tw = engine.Tensor(backend.to_device(w, device), requires_grad=True)
        y = F.max_pool2d(F.conv2d(tx, tw, padding=1), 2) + F.avg_pool2d(F.conv2d(tx, tw, padding=1), 2)
        y.sum().backward()
        outs[device] = (y.numpy(), backend.to_numpy(tx.grad), backend.to_numpy(tw.grad))
    for cpu, gpu in zip(outs["cpu"], outs["gpu"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-9, atol=1e-10)
