"""Every layer moved with Module.to('gpu'): forward, backward and updated buffers equal the CPU path."""
import copy

import numpy as np
import pytest

import engine
import layers
from compressors.basis import BasisConv2d
from compressors.tucker import TuckerConv2d, TuckerDense
from compressors.wavelet import WaveletLinear
from engine import Tensor, backend
from layers import models
from tests.device.conftest import assert_same


def _floats(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


IMAGE, ROWS, SEQUENCE = (2, 2, 5, 5), (4, 3), (2, 4, 2)
# name -> (constructor, inputs from a NumPy generator); floats become float64 leaves needing grad
LAYERS = {
    "Dense": (lambda: layers.Dense(3, 2), _floats(ROWS)),
    "Conv2d": (lambda: layers.Conv2d(2, 3, 2, padding=1), _floats(IMAGE)),
    "MaxPool2d": (lambda: layers.MaxPool2d(2), _floats(IMAGE)),
    "AvgPool2d": (lambda: layers.AvgPool2d(2, stride=1), _floats(IMAGE)),
    "ReLU": (layers.ReLU, _floats(ROWS)),
    "Tanh": (layers.Tanh, _floats(ROWS)),
    "Sigmoid": (layers.Sigmoid, _floats(ROWS)),
    "LeakyReLU": (lambda: layers.LeakyReLU(0.1), _floats(ROWS)),
    "Flatten": (layers.Flatten, _floats(IMAGE)),
    "Dropout": (lambda: layers.Dropout(0.3), _floats(ROWS)),
    "BatchNorm1d": (lambda: layers.BatchNorm1d(3), _floats(ROWS)),
    "BatchNorm2d": (lambda: layers.BatchNorm2d(2), _floats(IMAGE)),
    "Embedding": (lambda: layers.Embedding(5, 3), lambda rng: [rng.integers(0, 5, (2, 3))]),
    "GRUCell": (lambda: layers.GRUCell(2, 3), _floats((4, 2), (4, 3))),
    "LSTMCell": (lambda: layers.LSTMCell(2, 3), _floats((4, 2))),
    "GRU": (lambda: layers.GRU(2, 3, num_layers=2), _floats(SEQUENCE)),
    "LSTM": (lambda: layers.LSTM(2, 3, num_layers=2), _floats(SEQUENCE)),
    "WaveletLinear": (lambda: WaveletLinear(8, 2, 4, init="db2"), _floats((3, 8))),
    "TuckerDense": (lambda: TuckerDense(6, 4, ranks=2, order=2), _floats((3, 6))),
    "TuckerConv2d": (lambda: TuckerConv2d(2, 3, 2, ranks=2, order=2, padding=1), _floats(IMAGE)),
    "BasisConv2d": (lambda: BasisConv2d(2, 3, 2, num_basis=2, padding=1), _floats(IMAGE)),
    # the models' own modules: one-hot symbols, tied decoder, dropout between stacked LSTMs
    "SequenceModel": (lambda: models.sequence_model("lstm", n_in=3, hidden=4, n_out=2, output="all"),
                      lambda rng: [rng.integers(0, 3, (2, 5))]),
    "LanguageModel": (lambda: models.language_model(vocab=7, emb=4, hidden=4, num_layers=2, dropout=0.2,
                                                    tie_weights=True), lambda rng: [rng.integers(0, 7, (2, 5))]),
}


def test_every_layer_class_has_a_device_case():
    containers = {"Module", "Sequential", "ModuleList"}
    classes = {name for name in layers.__all__ if isinstance(getattr(layers, name), type)
               and issubclass(getattr(layers, name), layers.Module) and name not in containers}
    missing = sorted(n for n in classes if getattr(layers, n).__name__ not in LAYERS)
    assert not missing, f"layers without a device case: {missing}"


def _tensors(out):
    """The Tensors in a layer's output (a tensor, or nested tuples of them)."""
    if isinstance(out, Tensor):
        return [out]
    return [t for part in out for t in _tensors(part)]


def _run(module, arrays, where, training):
    """Forward and backward on 'cpu' or 'gpu': outputs, input grads, parameter grads, state."""
    module.to(where).train(training)
    inputs = [Tensor(backend.to_device(a, where), requires_grad=a.dtype.kind == "f") for a in arrays]
    engine.manual_seed(7)                       # the same dropout mask on both devices
    outs = _tensors(module(*inputs))
    cotangents = np.random.default_rng(1)
    loss = sum((o * Tensor(backend.to_device(cotangents.standard_normal(o.shape), where))).sum() for o in outs)
    loss.backward()
    return {"outputs": [o.data for o in outs],
            "input grads": [x.grad for x in inputs if x.requires_grad],
            "parameter grads": [p.grad for p in module.parameters() if p.requires_grad],
            "state": list(module.state_dict().values())}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_on_device_equals_cpu(name, training, device):
    build, make = LAYERS[name]
    engine.manual_seed(0)
    cpu_module = build().astype(np.float64)
    gpu_module = copy.deepcopy(cpu_module)
    arrays = make(np.random.default_rng(0))
    arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    cpu = _run(cpu_module, arrays, "cpu", training)
    gpu = _run(gpu_module, arrays, "gpu", training)
    assert all(backend.is_gpu_array(p.data) for p in gpu_module.parameters())
    for what in cpu:
        assert len(gpu[what]) == len(cpu[what]), what
        for i, (g, c) in enumerate(zip(gpu[what], cpu[what])):
            if c is None:
                assert g is None, f"{name} {what} {i}: a gradient on the device only"
            else:
                assert_same(g, c, what=f"{name} {what} {i}")
