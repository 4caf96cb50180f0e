"""Module: parameter and sub-module registration, state_dict, train/eval, hooks; Sequential."""
from collections import OrderedDict

from engine import backend
from engine.tensor import Tensor

from . import init


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable (requires_grad=True by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, name=name)
        init.charge(self)   # counted only under init.build_budget


class Module:
    """Base class of layers and models, in the spirit of torch.nn.Module.

    Assigning a Parameter or a Module to an attribute registers it; buffers
    (non-learned arrays saved in the state_dict, such as running statistics or
    a fixed permutation) are registered with ``register_buffer``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_pre_hooks", [])
        object.__setattr__(self, "_post_hooks", [])
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        target = (self._parameters if isinstance(value, Parameter)
                  else self._modules if isinstance(value, Module) else None)
        # assigning a plain array to a buffer's name updates the buffer (as in PyTorch)
        keep = self._buffers if target is None else target
        for registry in (self._parameters, self._modules, self._buffers):
            if registry is not keep:
                registry.pop(name, None)
        if target is not None:
            target[name] = value  # an existing key keeps its place (Sequential order)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep `array` (a raw array, not learned) in the state_dict under `name`."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def register_module(self, name, module):
        setattr(self, name, module)

    # ---- traversal ---------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        return iter(self._modules.items())

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs; a parameter shared by several modules appears once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, m in modules:
            for name, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self):
        for mod_name, m in self.named_modules():
            for name in m._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(m, name)

    def num_parameters(self, trainable_only=False):
        """Stored float values (each shared tensor counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- modes, devices ----------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to 'cpu' or 'gpu' in place; returns self."""
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = backend.to_device(p.grad, device)
        for m in self.modules():
            for name in m._buffers:
                value = getattr(m, name)
                if value is not None:
                    object.__setattr__(m, name, backend.to_device(value, device))
        return self

    def astype(self, dtype):
        """Cast every floating parameter (and float buffer) to dtype in place; returns self."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        for m in self.modules():
            for name in m._buffers:
                value = getattr(m, name)
                if value is not None and value.dtype.kind == "f":
                    object.__setattr__(m, name, value.astype(dtype))
        return self

    # ---- state -------------------------------------------------------
    def state_dict(self):
        """Ordered dict of dotted name -> raw array (parameters and buffers)."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data
        for name, b in self.named_buffers():
            if b is not None:
                out[name] = b
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into parameters and buffers; clear errors on missing, unexpected, mis-shaped keys."""
        own = {}
        for name, p in self.named_parameters():
            own[name] = ("param", p)
        for mod_name, m in self.named_modules():
            for name in m._buffers:
                own[f"{mod_name}.{name}" if mod_name else name] = ("buffer", (m, name))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for key, (kind, target) in own.items():
            if key not in state:
                continue
            value = state[key]
            if kind == "param":
                if tuple(value.shape) != target.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {key} has shape "
                                     f"{tuple(value.shape)}, the model expects {target.shape}")
                target.data = backend.to_device(value, target.device).astype(target.dtype, copy=True)
            else:
                m, name = target
                current = getattr(m, name)
                if current is not None and tuple(value.shape) != current.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: buffer {key} has shape "
                                     f"{tuple(value.shape)}, the model expects {current.shape}")
                device = backend.device_of(current) if current is not None else "cpu"
                object.__setattr__(m, name, backend.to_device(value, device).copy())
        return {"missing": missing, "unexpected": unexpected}

    # ---- calling -----------------------------------------------------
    def register_forward_pre_hook(self, fn):
        """fn(module, args) before forward; may return replacement args (a tuple)."""
        self._pre_hooks.append(fn)
        return lambda: self._pre_hooks.remove(fn)

    def register_forward_hook(self, fn):
        """fn(module, args, output) after forward; may return a replacement output."""
        self._post_hooks.append(fn)
        return lambda: self._post_hooks.remove(fn)

    def __call__(self, *args, **kwargs):
        for fn in self._pre_hooks:
            out = fn(self, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
        y = self.forward(*args, **kwargs)
        for fn in self._post_hooks:
            out = fn(self, args, y)
            if out is not None:
                y = out
        return y

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # ---- display -----------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        own = sum(p.size for p in self._parameters.values())
        head = f"{type(self).__name__}({self.extra_repr()})"
        if not self._modules:
            return head + (f"  # {own:,} params" if own else "")
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(f")  # {self.num_parameters():,} params")
        return "\n".join(lines)


class ModuleList(Module):
    """A list of sub-modules registered under '0', '1', ...; indexable, iterable, no forward of its own."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def _check(self, i, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: item {i} is a {type(module).__name__}, not a Module")

    def append(self, module):
        self._check(len(self), module)
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __setitem__(self, i, module):
        self._check(i, module)
        setattr(self, list(self._modules)[i], module)


class Sequential(ModuleList):
    """Modules applied in order; indexable and iterable like a ModuleList."""

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        super().__init__(modules)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
