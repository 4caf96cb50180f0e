"""train.py --device gpu in a subprocess (the GPU module named by the environment hook) equals --device cpu."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train
from engine import backend
from engine import io as engine_io
from tests.conftest import ROOT
from tests.test_train import TINY
from tests.test_train_distill import tiny_mnist

# how a subprocess finds each device's array module: the stand-in through the hook, CuPy by itself
GPU_ENVIRONMENT = {"stand-in": {backend.GPU_MODULE_VARIABLE: "tests.device.strict_cupy"}, "cupy": {}}
MNIST = ["--task", "mnist", "--epochs", "1", "--steps", "2", "--batch-size", "8", "--dtype", "float64", "--no-progress",
         "--log-every", "0"]
# compressor -> the model and flags of a quick 1-epoch MNIST run
COMPRESSORS = {
    "wavelet": ["--model", "wavelet_cnn"],
    "basis": ["--model", "lenet5"],
    "tucker": ["--model", "lenet300", "--tucker-ranks", "2"],
    "scada": ["--model", "lenet300"],
    "lowrank": ["--model", "lenet300", "--lowrank-rank", "4", "--lowrank-layers", "3,5"],  # not the 784-wide SVD
}


def _train_on_device(device, args, out):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **GPU_ENVIRONMENT[device]}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "--device", "gpu", "--out", str(out)],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _assert_runs_agree(gpu_out, cpu_out, rtol):
    gpu_metrics = json.loads((gpu_out / "metrics.json").read_text())
    cpu_metrics = json.loads((cpu_out / "metrics.json").read_text())
    assert gpu_metrics["device"] == "gpu" and cpu_metrics["device"] == "cpu"
    assert gpu_metrics["params"] == cpu_metrics["params"]
    assert gpu_metrics["metric"]["value"] == pytest.approx(cpu_metrics["metric"]["value"], rel=rtol, abs=rtol)
    gpu_arrays, _ = engine_io.load(str(gpu_out / "checkpoint.npz"))
    cpu_arrays, _ = engine_io.load(str(cpu_out / "checkpoint.npz"))
    model_keys = sorted(k for k in cpu_arrays if k.startswith("model/"))
    assert model_keys and model_keys == sorted(k for k in gpu_arrays if k.startswith("model/"))
    for key in model_keys:
        np.testing.assert_allclose(gpu_arrays[key], cpu_arrays[key], rtol=rtol, atol=rtol, err_msg=key)


def test_default_task_on_device_equals_cpu(device, tmp_path):
    assert train.main([*TINY, "--out", str(tmp_path / "cpu")]) == 0
    gpu_out = _train_on_device(device, TINY, tmp_path / "gpu")
    _assert_runs_agree(gpu_out, tmp_path / "cpu", rtol=1e-4)     # float32 (the default): BLAS orders differ


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
def test_mnist_epoch_with_each_compressor_on_device_equals_cpu(compressor, device, tmp_path):
    data = tiny_mnist(tmp_path / "mnist")
    args = [*MNIST, "--data-dir", str(data), "--compress", compressor, *COMPRESSORS[compressor]]
    assert train.main([*args, "--out", str(tmp_path / "cpu")]) == 0
    gpu_out = _train_on_device(device, args, tmp_path / "gpu")
    _assert_runs_agree(gpu_out, tmp_path / "cpu", rtol=1e-8)
