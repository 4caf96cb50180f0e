"""Each compressor on a model on the device: compress, train a few steps, finalize, save and load.

The same run on the CPU gives the same parameters and outputs to float tolerance.
"""
import numpy as np
import pytest

import engine
import engine.ops as F
import engine.optim
from training.options import parse_args
from compressors import plugin
from engine import Tensor, backend
from compressors.checkpoints import load_model, save_model
from layers.models import MODELS
from tests.device.conftest import assert_same

IMAGES = (2, 1, 28, 28)
# name -> (model name, its keywords, input shape, targets, flags of train.py for the compressor)
CASES = {
    "tucker": ("lenet300", {"n_in": 16, "n_classes": 3}, (4, 16), "classes",
               ["--tucker-ranks", "2", "--tucker-order", "3"]),
    "scada": ("lenet300", {"n_in": 16, "n_classes": 3}, (4, 16), "classes", ["--scada-k", "4"]),
    "lowrank": ("lenet300", {"n_in": 16, "n_classes": 3}, (4, 16), "classes",
                ["--lowrank-tau", "0.05", "--lowrank-energy", "0.9"]),
    "basis": ("lenet5", {"n_classes": 3}, IMAGES, "classes", ["--basis-energy", "0.8"]),
    "wavelet": ("gru", {"n_in": 2, "hidden": 16}, (3, 5, 2), "values", []),
}
STEPS = 3


def _batch(case, where, seed):
    _, _, shape, targets, _ = CASES[case]
    rng = np.random.default_rng(seed)
    x = backend.to_device(rng.standard_normal(shape), where)
    y = rng.integers(0, 3, shape[0]) if targets == "classes" else rng.standard_normal((shape[0], 1))
    return Tensor(x), backend.to_device(y, where)


def _loss(case, model, x, y):
    out = model(x)
    return F.cross_entropy(out, y) if CASES[case][3] == "classes" else F.mse_loss(out, Tensor(y))


def _compress_and_train(case, where):
    """train.py's order on one device: build, apply, steps with extra_loss/on_step, finalize."""
    model_name, kwargs, _, _, flags = CASES[case]
    engine.manual_seed(0)
    model = MODELS[model_name](**kwargs).astype(np.float64).to(where)
    compressor = plugin.get(case)(parse_args(["--compress", case, *flags]))
    model = compressor.apply(model, None)
    optimizer = engine.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(STEPS):
        x, y = _batch(case, where, seed=step)
        loss = _loss(case, model, x, y)
        extra = compressor.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        compressor.on_step(optimizer, model)
    model = compressor.finalize(model, None).eval()
    return model, compressor


@pytest.mark.parametrize("case", sorted(CASES))
def test_compress_train_finalize_on_device_equals_cpu(case, device, tmp_path):
    cpu_model, _ = _compress_and_train(case, "cpu")
    gpu_model, compressor = _compress_and_train(case, "gpu")
    model_name, kwargs = CASES[case][:2]
    dense = MODELS[model_name](**kwargs).num_parameters()
    assert gpu_model.num_parameters() < dense, f"{case} left the model uncompressed"
    cpu_state, gpu_state = cpu_model.state_dict(), gpu_model.state_dict()
    assert list(gpu_state) == list(cpu_state)
    for name, value in gpu_state.items():
        assert_same(value, cpu_state[name], rtol=1e-7, atol=1e-9, what=f"{case} {name}")
    x, _ = _batch(case, "gpu", seed=99)
    x_cpu, _ = _batch(case, "cpu", seed=99)
    expected = cpu_model(x_cpu).data
    assert_same(gpu_model(x).data, expected, rtol=1e-7, atol=1e-9, what=f"{case} output")

    # saved from the device, loaded back onto it: the same model
    path = save_model(tmp_path / "model.npz", gpu_model, arch=(model_name, kwargs), compression=[compressor])
    loaded = load_model(path, device="gpu")
    assert all(backend.is_gpu_array(p.data) for p in loaded.parameters())
    assert_same(loaded(x).data, expected, rtol=1e-7, atol=1e-9, what=f"{case} output after load")
