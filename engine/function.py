"""Function: one differentiable operation; forward and backward work on raw arrays."""
import weakref

from . import backend
from .anomaly import check_finite
from .grad_mode import state
from .tensor import Tensor


class Function:
    """Base class of every differentiable operation.

    Subclasses implement ``forward(*arrays) -> array | tuple`` and
    ``backward(*grads) -> grad | tuple`` (one entry per input; ``None`` for an
    input that gets no gradient). ``self.needs_input_grad`` tells backward which
    inputs want a gradient so it can skip work, and ``self.recording`` (set before
    forward) whether backward can run at all, so that forward can skip saving for it under
    ``no_grad`` or when no input requires a gradient. A Function keeps only what its backward
    needs; its outputs are held weakly.
    """

    recording = True

    generation = 0
    inputs = None
    outputs = ()

    def __call__(self, *inputs):
        tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        for hook in state.function_hooks:
            hook.forward_preprocess(self, tensors)
        record = self.recording = state.grad_enabled and any(t.requires_grad for t in tensors)
        ys = self.forward(*[t.data for t in tensors])
        single = not isinstance(ys, tuple)
        if single:
            ys = (ys,)
        if state.anomaly:
            check_finite(self, ys, "forward", [t.data for t in tensors])
        outputs = [Tensor(y, requires_grad=record) for y in ys]
        if record:
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            self.generation = max(t.generation for t in tensors)
            self.inputs = tensors
            self.output_meta = [(y.shape, y.dtype) for y in ys]
            self.outputs = [weakref.ref(o) for o in outputs]
            generation = self.generation + 1
            for o in outputs:
                o.creator = self
                o.generation = generation
        for hook in state.function_hooks:
            hook.forward_postprocess(self, tensors, outputs)
        return outputs[0] if single else outputs

    @property
    def name(self):
        return type(self).__name__

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

