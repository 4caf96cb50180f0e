"""The `device` fixture: each available GPU array module (the strict stand-in always, CuPy on a GPU)."""
import numpy as np
import pytest

import engine
from engine import backend
from tests.device import strict_cupy


def _real_cupy():
    """(cupy, cupyx) when CuPy imports and sees a device, else None; the backend is left as found."""
    try:
        import cupy
        import cupyx
        return (cupy, cupyx) if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # ImportError, or CUDA present without a usable device
        return None


REAL_CUPY = _real_cupy()
MODULES = {"stand-in": (strict_cupy, strict_cupy.cupyx)}
if REAL_CUPY is not None:
    MODULES["cupy"] = REAL_CUPY
# only the devices present: the stand-in runs on every CI machine, CuPy (marker gpu) where a GPU is
DEVICE_PARAMS = [pytest.param(name, id=name, marks=[pytest.mark.gpu] if name == "cupy" else [])
                 for name in MODULES]


@pytest.fixture(params=DEVICE_PARAMS)
def device(request):
    """The name of the GPU array module in use ('stand-in' or 'cupy'); restored after the test."""
    previous = backend.use_gpu_module(*MODULES[request.param])
    engine.manual_seed(0)
    yield request.param
    backend.use_gpu_module(*previous)


def assert_same(device_result, cpu_result, rtol=1e-9, atol=1e-11, what="result"):
    """A device result (moved to the host here) equals the CPU path's within float tolerance."""
    assert backend.is_gpu_array(device_result), f"{what}: expected a device array, got {type(device_result)}"
    np.testing.assert_allclose(backend.to_numpy(device_result), cpu_result, rtol=rtol, atol=atol,
                               err_msg=what)
