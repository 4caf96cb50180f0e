"""Function hooks: observe every operation's forward and backward (Chainer-style), as a context."""
import time

from .grad_mode import state


class FunctionHook:
    """Subclass and override any of the four callbacks; use ``with hook:`` to activate.

    forward_preprocess(function, inputs) / forward_postprocess(function, inputs, outputs)
    see Tensors; backward_preprocess(function, grad_outputs) /
    backward_postprocess(function, grad_outputs, grad_inputs) see raw arrays.
    """

    def __enter__(self):
        state.function_hooks.append(self)
        return self

    def __exit__(self, *exc):
        state.function_hooks.remove(self)
        return False

    def forward_preprocess(self, function, inputs):
        pass

    def forward_postprocess(self, function, inputs, outputs):
        pass

    def backward_preprocess(self, function, grad_outputs):
        pass

    def backward_postprocess(self, function, grad_outputs, grad_inputs):
        pass


class TimerHook(FunctionHook):
    """Total seconds spent in forward and backward, per op name."""

    def __init__(self):
        self.forward_seconds, self.backward_seconds, self.calls = {}, {}, {}
        self._start = None

    def forward_preprocess(self, function, inputs):
        self._start = time.perf_counter()

    def forward_postprocess(self, function, inputs, outputs):
        name = function.name
        self.forward_seconds[name] = self.forward_seconds.get(name, 0.0) + time.perf_counter() - self._start
        self.calls[name] = self.calls.get(name, 0) + 1

    def backward_preprocess(self, function, grad_outputs):
        self._start = time.perf_counter()

    def backward_postprocess(self, function, grad_outputs, grad_inputs):
        name = function.name
        self.backward_seconds[name] = self.backward_seconds.get(name, 0.0) + time.perf_counter() - self._start

    def summary(self):
        """Lines 'op calls forward_s backward_s', slowest first."""
        names = sorted(self.calls, key=lambda n: -(self.forward_seconds.get(n, 0) + self.backward_seconds.get(n, 0)))
        return "\n".join(f"{n:<16} {self.calls[n]:>7} {self.forward_seconds.get(n, 0):9.4f} "
                         f"{self.backward_seconds.get(n, 0):9.4f}" for n in names)
