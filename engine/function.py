"""Function: one differentiable operation; forward and backward work on raw arrays."""
import weakref

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
        # written out as plain loops: this runs for every op, and a comprehension or a generator is a
        # call of its own in CPython 3.11 (a LeNet-300-100 train step at batch 2 makes 14 such calls)
        tensors = []
        wants_grad = False
        for x in inputs:
            if not isinstance(x, Tensor):
                x = Tensor(x)
            tensors.append(x)
            if x.requires_grad:
                wants_grad = True
        hooks = state.function_hooks
        for hook in hooks:
            hook.forward_preprocess(self, tensors)
        if hooks:   # a hook may have replaced an input
            wants_grad = any(t.requires_grad for t in tensors)
        record = self.recording = wants_grad and state.grad_enabled
        ys = self.forward(*[t.data for t in tensors])
        single = not isinstance(ys, tuple)
        if single:
            ys = (ys,)
        if state.anomaly:
            check_finite(self, ys, "forward", [t.data for t in tensors])
        outputs = [Tensor.wrap(y, record) for y in ys]
        if record:
            needs, generation = [], 0
            for t in tensors:
                needs.append(t.requires_grad)
                if t.generation > generation:
                    generation = t.generation
            self.needs_input_grad = tuple(needs)
            self.generation = generation
            self.inputs = tensors
            self.output_meta = [(y.shape, y.dtype) for y in ys]
            self.outputs = [weakref.ref(o) for o in outputs]
            generation += 1
            for o in outputs:
                o.creator = self
                o.generation = generation
        for hook in hooks:
            hook.forward_postprocess(self, tensors, outputs)
        return outputs[0] if single else outputs

    @property
    def name(self):
        return type(self).__name__

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError
