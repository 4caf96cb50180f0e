"""Optimisers (SGD, RMSprop, Adam, Adadelta), gradient clipping, learning-rate schedules."""
import math

from . import backend
from .kernels.elementwise import subtract_scaled


class Optimizer:
    """Base optimiser over parameter groups, in PyTorch's shape.

    ``params`` is an iterable of tensors or of dicts ``{'params': [...], 'lr': ...}``.
    Hooks registered with ``register_step_hook(fn)`` run as ``fn(optimizer)``
    after every step (the low-rank method's proximal step uses this).
    """

    defaults = {}

    def __init__(self, params, **hyper):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.param_groups = []
        for group in params:
            merged = dict(self.defaults)
            merged.update(hyper)
            merged.update(group)
            merged["params"] = list(group["params"])
            for key, value in merged.items():
                if key != "params" and key not in self.defaults:
                    raise TypeError(f"{type(self).__name__}: unknown option {key!r}; "
                                    f"valid: {sorted(self.defaults)}")
            if merged["lr"] < 0:
                raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {merged['lr']}")
            merged["initial_lr"] = merged["lr"]
            self.param_groups.append(merged)
        self.state = {}
        self.step_count = 0
        self._step_hooks = []

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def register_step_hook(self, fn):
        """Run ``fn(optimizer)`` after every step; returns a callable that removes it."""
        self._step_hooks.append(fn)
        return lambda: self._step_hooks.remove(fn) if fn in self._step_hooks else None

    def step(self):
        self.step_count += 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group.get("weight_decay"):
                    g = g + group["weight_decay"] * p.data
                self._update(p, g, group, self.state.setdefault(id(p), {}))
        for fn in self._step_hooks:
            fn(self)

    def _update(self, p, g, group, state):
        raise NotImplementedError

    def state_dict(self):
        """Arrays and numbers of the optimiser state, keyed by parameter position."""
        flat = [p for group in self.param_groups for p in group["params"]]
        arrays = {}
        for k, p in enumerate(flat):
            for name, value in self.state.get(id(p), {}).items():
                arrays[f"{k}.{name}"] = value
        return {"arrays": arrays, "step_count": self.step_count,
                "lrs": [group["lr"] for group in self.param_groups]}

    def load_state_dict(self, saved):
        flat = [p for group in self.param_groups for p in group["params"]]
        self.state = {}
        for key, value in saved["arrays"].items():
            k, name = key.split(".", 1)
            p = flat[int(k)]
            self.state.setdefault(id(p), {})[name] = backend.to_device(value, p.device)
        self.step_count = int(saved["step_count"])
        for group, lr in zip(self.param_groups, saved["lrs"]):
            group["lr"] = float(lr)


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and weight decay, PyTorch's formulation."""

    defaults = {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}

    def _update(self, p, g, group, state):
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = g.copy()
            else:
                buf *= mu
                buf += g
            g = g + mu * buf if group["nesterov"] else buf
        subtract_scaled(p.data, g, group["lr"])


class RMSprop(Optimizer):
    defaults = {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}

    def _update(self, p, g, group, state):
        xp = backend.xp_of(g)
        sq = state.get("square_avg")
        if sq is None:
            sq = state["square_avg"] = xp.zeros_like(p.data)
        a = group["alpha"]
        sq *= a
        sq += (1 - a) * g * g
        step = g / (xp.sqrt(sq) + group["eps"])
        if group["momentum"]:
            buf = state.setdefault("momentum", xp.zeros_like(p.data))
            buf *= group["momentum"]
            buf += step
            step = buf
        subtract_scaled(p.data, step, group["lr"])


class Adam(Optimizer):
    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}

    def _update(self, p, g, group, state):
        xp = backend.xp_of(g)
        if "m" not in state:
            state["m"] = xp.zeros_like(p.data)
            state["v"] = xp.zeros_like(p.data)
            state["t"] = xp.zeros((), dtype="int64")
        b1, b2 = group["betas"]
        state["t"] += 1
        t = int(state["t"])
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        step_size = group["lr"] * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p.data -= step_size * m / (xp.sqrt(v) + group["eps"] * math.sqrt(1 - b2 ** t))


class Adadelta(Optimizer):
    defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}

    def _update(self, p, g, group, state):
        xp = backend.xp_of(g)
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p.data)
            state["acc_delta"] = xp.zeros_like(p.data)
        sq, acc = state["square_avg"], state["acc_delta"]
        rho, eps = group["rho"], group["eps"]
        sq *= rho
        sq += (1 - rho) * g * g
        delta = xp.sqrt(acc + eps) / xp.sqrt(sq + eps) * g
        acc *= rho
        acc += (1 - rho) * delta * delta
        subtract_scaled(p.data, delta, group["lr"])


def clip_grad_norm(params, max_norm):
    """Scale all gradients so their joint L2 norm is at most max_norm; returns the norm before."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    total = math.sqrt(sum(float((p.grad.astype("float64") ** 2).sum()) for p in params))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad = p.grad * p.grad.dtype.type(scale)
    return total


class LRScheduler:
    """Sets each group's lr from its initial lr once per ``step()`` (call once per epoch)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.epoch = 0

    def step(self):
        self.epoch += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.factor(self.epoch) * group["initial_lr"]

    def factor(self, epoch):
        raise NotImplementedError


class StepLR(LRScheduler):
    """lr = initial * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size=1, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class CosineLR(LRScheduler):
    """lr = min + (initial - min) * (1 + cos(pi * epoch / total)) / 2, min = initial * min_factor."""

    def __init__(self, optimizer, total_epochs, min_factor=0.0):
        super().__init__(optimizer)
        self.total, self.min_factor = max(1, total_epochs), min_factor

    def factor(self, epoch):
        t = min(epoch, self.total) / self.total
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
