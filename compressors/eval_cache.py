"""A value rebuilt from a layer's parameters (a Tucker weight, a wavelet layer's dense form), kept in eval mode.

In training mode the value is built afresh with a graph on every call, so the parameters get their
gradients. In eval mode it is built once without a graph (detached: it gives the parameters no
gradient) and served again while every parameter still holds the same array, so replacing an array
(load_state_dict, to(), astype()) rebuilds it; after changing parameter values in place in eval mode,
call clear().
"""
import engine
from engine import Tensor


def cache_of(module, name):
    """The EvalCache kept on `module` under `name`, made on first use (also for modules built before it)."""
    cache = module.__dict__.get(name)
    if cache is None:
        cache = EvalCache()
        object.__setattr__(module, name, cache)     # a plain attribute: no parameter, buffer or submodule
    return cache


class EvalCache:
    def __init__(self):
        self._key, self._value = None, None

    def clear(self):
        self._key, self._value = None, None

    @property
    def empty(self):
        return self._key is None

    def get(self, module, sources, build):
        """build() in training mode; in eval mode, the kept value while `sources` (parameters, or
        buffers' arrays) hold the same arrays."""
        if module.training:
            self.clear()
            return build()
        key = tuple(p.data if isinstance(p, Tensor) else p for p in sources)
        if self._key is None or len(self._key) != len(key) or any(a is not b for a, b in zip(self._key, key)):
            with engine.no_grad():
                value = build()
            self._key, self._value = key, value
        return self._value
