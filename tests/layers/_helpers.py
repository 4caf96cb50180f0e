"""Helpers for the layer tests: float64 module gradient checks and FLOP totals through hooks."""
import numpy as np

import engine


def gradcheck_module(module, *inputs, call=None, **kw):
    """Gradient-check module(*inputs) w.r.t. the float inputs that require grad and every parameter."""
    module.astype(np.float64)
    params = [p for p in module.parameters() if p.requires_grad]
    n = len(inputs)
    call = call or (lambda *xs: module(*xs))

    def fn(*args):
        return call(*args[:n])

    return engine.gradcheck(fn, *inputs, *params, **kw)


def hooked_flops(model, x, only=None):
    """Sum of flops(inputs, output) over every call of the modules (or `only`) during model(x)."""
    total = [0]

    def hook(module, args, output):
        if hasattr(module, "flops"):
            total[0] += module.flops(args, output)

    targets = only if only is not None else list(model.modules())
    removers = [m.register_forward_hook(hook) for m in targets]
    with engine.no_grad():
        model(x)
    for remove in removers:
        remove()
    return total[0]
