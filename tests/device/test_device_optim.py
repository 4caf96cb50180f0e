"""The optimizers, gradient clipping and optimizer state on device parameters equal the CPU path."""
import numpy as np
import pytest

import engine.ops as F
from engine import Tensor, backend, optim
from layers import Parameter
from tests.device.conftest import assert_same

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.01),
    "momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5),
    "adam": lambda ps: optim.Adam(ps, lr=0.01),
    "adadelta": lambda ps: optim.Adadelta(ps),
}


def _params(where):
    rng = np.random.default_rng(0)
    return [Parameter(backend.to_device(rng.standard_normal(s), where)) for s in ((3, 4), (4,))]


def _steps(optimizer, params, where, count, clip=None):
    for step in range(count):
        rng = np.random.default_rng(step)
        x = Tensor(backend.to_device(rng.standard_normal((5, 3)), where))
        loss = F.sum(F.tanh(x @ params[0] + params[1]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            optim.clip_grad_norm(params, clip)
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_and_state_on_device_equal_cpu(name, device):
    results = {}
    for where in ("cpu", "gpu"):
        params = _params(where)
        optimizer = OPTIMIZERS[name](params)
        _steps(optimizer, params, where, 2, clip=0.5)
        saved = optimizer.state_dict()
        resumed = OPTIMIZERS[name](params)           # a resume: state restored onto the parameters' device
        resumed.load_state_dict({**saved, "arrays": {k: backend.to_numpy(v) for k, v in saved["arrays"].items()}})
        _steps(resumed, params, where, 2)
        results[where] = (params, resumed.state_dict()["arrays"])
    (cpu_params, cpu_state), (gpu_params, gpu_state) = results["cpu"], results["gpu"]
    for i, (g, c) in enumerate(zip(gpu_params, cpu_params)):
        assert_same(g.data, c.data, what=f"{name} parameter {i}")
    assert sorted(gpu_state) == sorted(cpu_state)
    assert gpu_state or name == "sgd", f"{name} kept no state"   # plain SGD has none
    for key, value in gpu_state.items():
        assert_same(value, cpu_state[key], what=f"{name} state {key}")


def test_learning_rate_schedules_drive_device_parameters(device):
    params = _params("gpu")
    optimizer = optim.SGD(params, lr=0.1)
    schedule = optim.StepLR(optimizer, step_size=1, gamma=0.5)
    before = backend.to_numpy(params[0].data)
    _steps(optimizer, params, "gpu", 1)
    schedule.step()
    assert optimizer.lr == pytest.approx(0.05)
    assert backend.is_gpu_array(params[0].data)
    assert not np.allclose(backend.to_numpy(params[0].data), before)
