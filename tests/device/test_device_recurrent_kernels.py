"""The one-launch-a-step GPU kernels of the LSTM/GRU sequence ops against the reference path on the same device."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import backend
from engine.kernels import recurrent_cupy
from tests.device import strict_cupy
from tests.device.conftest import REAL_CUPY


def test_a_module_without_elementwise_kernels_gets_none_and_the_reference_path():
    assert recurrent_cupy.kernels_for(strict_cupy) is None


def _sequence(op, dtype, impl, rng, gates, bias):
    """Outputs and every gradient of op over one random sequence on the device, as host arrays."""
    batch, steps, hidden = 3, 5, 4
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in
              ((batch, steps, gates * hidden), (hidden, gates * hidden), (gates * hidden,), (batch, hidden),
               (batch, hidden), (batch, steps, hidden))]
    tensors = [engine.Tensor(backend.to_device(a, "gpu"), requires_grad=True) for a in arrays[:5]]
    gi, w, b, h0, c0 = tensors
    if op == "lstm":
        out, h_last, c_last = F.lstm_sequence(gi, w, b if bias else None, h0, c0, impl=impl)
        loss = (out * engine.Tensor(backend.to_device(arrays[5], "gpu"))).sum() + (h_last * c_last).sum()
        used = [gi, w, b, h0, c0] if bias else [gi, w, h0, c0]
    else:
        out, h_last = F.gru_sequence(gi, w, b if bias else None, h0, impl=impl)
        loss = (out * engine.Tensor(backend.to_device(arrays[5], "gpu"))).sum() + (h_last * h_last).sum()
        used = [gi, w, b, h0] if bias else [gi, w, h0]
    loss.backward()
    return [out.numpy()] + [backend.to_numpy(t.grad) for t in used]


@pytest.mark.gpu
@pytest.mark.skipif(REAL_CUPY is None, reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("op, gates", [("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_steps_equal_the_reference_on_the_device(op, gates, dtype, tolerance, bias):
    previous = backend.use_gpu_module(*REAL_CUPY)
    try:
        assert recurrent_cupy.kernels_for(REAL_CUPY[0]) is not None
        fused = _sequence(op, dtype, None, np.random.default_rng(1), gates, bias)
        reference = _sequence(op, dtype, "numpy", np.random.default_rng(1), gates, bias)
    finally:
        backend.use_gpu_module(*previous)
    for got, want in zip(fused, reference):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
