"""Tensor: an array with an optional gradient, the graph it came from, hooks and backward()."""
import heapq

import numpy as np

from . import backend
from .anomaly import check_finite
from .grad_mode import state


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``data`` is a NumPy (CPU) or CuPy (GPU) array; ``grad`` is an array of the
    same shape once backward has reached this tensor (leaves, and intermediates
    that called ``retain_grad()``).
    """

    __slots__ = ("data", "grad", "requires_grad", "creator", "generation",
                 "name", "_hooks", "_retain", "__weakref__")
    __array_priority__ = 200

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = backend.as_array(data, dtype)
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"Tensor: only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self.generation = 0
        self.name = name
        self._hooks = None
        self._retain = False

    @classmethod
    def wrap(cls, data, requires_grad=False):
        """Tensor(data, requires_grad) for an op's output: a NumPy array of a floating dtype (the usual
        case) is taken as it is, without __init__'s conversions and checks (every op makes one)."""
        if type(data) is not np.ndarray or data.dtype.kind != "f":
            return cls(data, requires_grad=requires_grad)
        t = cls.__new__(cls)
        t.data, t.grad, t.requires_grad, t.creator = data, None, bool(requires_grad), None
        t.generation, t.name, t._hooks, t._retain = 0, None, None, False
        return t

    # ---- array facts -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = repr(backend.to_numpy(self.data)).replace("array(", "tensor(", 1)
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.creator is not None:
            extra += f", grad_fn={self.creator.name}"
        return body[:-1] + extra + ")" if body.endswith(")") else body

    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected 1")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """A new leaf tensor sharing this data, cut from the graph."""
        return Tensor(self.data)

    def to(self, device):
        """A copy on `device` ('cpu' or 'gpu'); the same tensor when already there."""
        data = backend.to_device(self.data, device)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad, name=self.name)

    def zero_grad(self):
        self.grad = None

    # ---- gradient inspection -----------------------------------------
    def register_hook(self, fn):
        """Call ``fn(grad)`` when this tensor's gradient is computed.

        ``fn`` gets the gradient array; if it returns an array that replaces the
        gradient passed on. Returns a handle whose ``remove()`` unregisters it.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: tensor does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        return _HookHandle(self._hooks, fn)

    def retain_grad(self):
        """Keep the gradient of this intermediate tensor in ``.grad`` after backward."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: tensor does not require grad")
        self._retain = True
        return self

    def _apply_hooks(self, grad):
        for fn in self._hooks:
            out = fn(grad)
            if out is not None:
                grad = out.data if isinstance(out, Tensor) else out
        return grad

    # ---- backward ----------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Functions run in decreasing generation order (a heap), so a tensor used
        by several operations has all its gradient contributions summed before
        its own creator runs. Without ``retain_graph`` the graph is freed.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad (no graph was recorded)")
        xp = backend.xp_of(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad must be given for a non-scalar output of shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad shape {grad.shape} != tensor shape {self.shape}")

        leaves = {}
        if self.creator is None:
            leaves[id(self)] = [self, grad]
            _finish_leaves(leaves)
            return

        grads = {id(self): grad}
        heap = [(-self.creator.generation, 0, self.creator)]
        queued = {id(self.creator)}
        counter = 1
        done = []
        anomaly = state.anomaly
        plain = not anomaly and not state.function_hooks
        while heap:
            f = heapq.heappop(heap)[2]
            if f.inputs is None:
                raise RuntimeError(
                    f"backward through {f.name} a second time: the graph was freed; "
                    "pass retain_graph=True to the first backward")
            gys = _output_grads(f, grads)
            if gys is None:
                continue
            if plain:       # no hook or check to run around it: call backward directly
                gxs = f.backward(*gys)
                if not isinstance(gxs, tuple):
                    gxs = (gxs,)
            else:
                gxs = _run_backward(f, gys, anomaly)
            for x, gx in zip(f.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if x.creator is None:
                    entry = leaves.get(id(x))
                    if entry is None:
                        leaves[id(x)] = [x, gx]
                    else:
                        entry[1] = entry[1] + gx
                    continue
                key = id(x)
                previous = grads.get(key)
                grads[key] = gx if previous is None else previous + gx
                c = x.creator
                if id(c) not in queued:
                    queued.add(id(c))
                    heapq.heappush(heap, (-c.generation, counter, c))
                    counter += 1
            done.append(f)
        if not retain_graph:
            # freed only now: an intermediate must stay alive until its creator has run
            for f in done:
                f.inputs = None
        _finish_leaves(leaves)

    # ---- Python operators (bodies installed by engine.ops) ------------


def _output_grads(function, grads):
    """The gradients of `function`'s outputs, popped from `grads` (zeros for an output without one);
    None when no output received a gradient. Hooks and retain_grad see each gradient here."""
    if len(function.outputs) == 1:     # most ops: no list to build, no zeros to fill in
        out = function.outputs[0]()
        g = None if out is None else grads.pop(id(out), None)
        if g is None:
            return None
        if out._hooks:
            g = out._apply_hooks(g)
        if out._retain:
            out.grad = g if out.grad is None else out.grad + g
        return (g,)
    gys = []
    any_grad = False
    for ref, (shape, dtype) in zip(function.outputs, function.output_meta):
        out = ref()
        g = None if out is None else grads.pop(id(out), None)
        if g is not None:
            any_grad = True
            if out._hooks:
                g = out._apply_hooks(g)
            if out._retain:
                out.grad = g if out.grad is None else out.grad + g
        gys.append(g)
    if not any_grad:
        return None
    if len(gys) > 1 and any(g is None for g in gys):
        xp = backend.xp_of(next(g for g in gys if g is not None))
        gys = [xp.zeros(s, d) if g is None else g for g, (s, d) in zip(gys, function.output_meta)]
    return gys


def _run_backward(function, gys, anomaly):
    """function.backward(*gys) as a tuple, between the function hooks (and the anomaly check)."""
    for hook in state.function_hooks:
        hook.backward_preprocess(function, gys)
    gxs = function.backward(*gys)
    if not isinstance(gxs, tuple):
        gxs = (gxs,)
    if anomaly:
        check_finite(function, gxs, "backward")
    for hook in state.function_hooks:
        hook.backward_postprocess(function, gys, gxs)
    return gxs


def _finish_leaves(leaves):
    """Run leaf hooks on the total gradient of this pass, then accumulate into .grad."""
    for x, g in leaves.values():
        if x._hooks:
            g = x._apply_hooks(g)
        if g.shape != x.data.shape:
            raise RuntimeError(f"internal: gradient shape {g.shape} != leaf shape {x.data.shape}")
        if g.dtype != x.data.dtype:
            g = g.astype(x.data.dtype)
        x.grad = g if x.grad is None else x.grad + g


class _HookHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def as_tensor(x, like=None):
    """Return `x` as a Tensor. Next to a tensor `like`, Python numbers (and lists of them) are weak,
    as in NumPy 2's promotion (NEP 50): they take `like`'s dtype when it holds their kind (float32
    * 0.5 stays float32), and promote it otherwise exactly as NumPy does (int64 + 0.5 is float64)."""
    if isinstance(x, Tensor):
        return x
    if x is None:
        raise TypeError("expected a Tensor, an array or a number, got None")
    if like is not None and not hasattr(x, "dtype"):
        xp = backend.xp_of(like.data)
        return Tensor(xp.asarray(x, dtype=weak_result_type(like.data.dtype, x)))
    return Tensor(x)


def weak_result_type(dtype, x):
    """NumPy's result dtype of an array of `dtype` with the Python number (or number list) `x`.

    np.result_type's answer for every operator; NumPy's own power differs only for bool ** int (int8)."""
    if isinstance(x, (bool, int, float, complex)):
        return np.result_type(dtype, x)
    kind = np.asarray(x).dtype.kind   # a list: promote as its strongest kind of number would
    example = {"b": False, "i": 0, "u": 0, "f": 0.0, "c": 0j}.get(kind)
    if example is None:
        raise TypeError(f"expected numbers, got {type(x).__name__} of dtype {np.asarray(x).dtype}")
    return np.result_type(dtype, example)
