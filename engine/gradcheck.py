"""Finite-difference gradient checking (float64 central differences) for users and tests."""
import numpy as np

from . import backend
from .grad_mode import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when analytic and numerical gradients disagree; the message gives the worst error."""


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, n_directions=3,
              elementwise=True, seed=0, raise_exception=True):
    """Compare the gradients of ``fn(*inputs)`` with central finite differences.

    ``inputs`` may be given as separate arguments or as one list/tuple. Every
    input Tensor that requires grad must be float64. The scalar checked is
    ``sum(v * fn(*inputs))`` with a fixed random ``v``. Two checks run:
    per element (every entry of every input, skipped with elementwise=False)
    and along ``n_directions`` random directions through all inputs at once.
    Returns True, or raises GradcheckError naming the worst absolute and
    relative error, the input and the element (or returns False when
    raise_exception=False).
    """
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])
    targets = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input requires grad")
    for i in targets:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; finite differences "
                            "need float64 (cast with Tensor(x.data.astype('float64'), requires_grad=True))")
    rng = np.random.default_rng(seed)

    for i in targets:
        inputs[i].grad = None
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    xp = backend.xp_of(out.data)
    v = xp.asarray(rng.standard_normal(out.shape))
    out.backward(v)
    analytic = {i: (inputs[i].grad if inputs[i].grad is not None else xp.zeros_like(inputs[i].data))
                for i in targets}

    def scalar():
        with no_grad():
            return float((fn(*inputs).data * v).sum())

    worst = {"abs": 0.0, "rel": 0.0, "where": None}

    def compare(numeric, exact, where):
        err = abs(numeric - exact)
        rel = err / max(abs(numeric), abs(exact), 1e-12)
        if err > worst["abs"]:
            worst.update(abs=err, rel=rel, where=where)
        return err <= atol + rtol * abs(numeric)

    ok = True
    if elementwise:
        ok = _check_elements(inputs, targets, analytic, scalar, eps, compare)
    ok = _check_directions(inputs, targets, analytic, scalar, eps, compare, rng, xp, n_directions) and ok
    if ok:
        return True
    if raise_exception:
        raise GradcheckError(
            f"gradcheck failed: worst absolute error {worst['abs']:.3e} "
            f"(relative {worst['rel']:.3e}) at {worst['where']}; atol={atol}, rtol={rtol}")
    return False


def _check_elements(inputs, targets, analytic, scalar, eps, compare):
    """Central differences entry by entry of every input that requires grad; False on any mismatch."""
    ok = True
    for i in targets:
        data = inputs[i].data
        # index the array itself: a reshape(-1) of a non-contiguous array would be a copy
        for idx in np.ndindex(*data.shape):
            orig = float(data[idx])
            data[idx] = orig + eps
            plus = scalar()
            data[idx] = orig - eps
            minus = scalar()
            data[idx] = orig
            numeric = (plus - minus) / (2 * eps)
            if not compare(numeric, float(analytic[i][idx]), f"input {i}, element {idx}"):
                ok = False
    return ok


def _check_directions(inputs, targets, analytic, scalar, eps, compare, rng, xp, n_directions):
    """Central differences along random directions through all inputs at once; False on any mismatch."""
    ok = True
    for d in range(n_directions):
        directions = {i: xp.asarray(rng.standard_normal(inputs[i].shape)) for i in targets}
        originals = {i: inputs[i].data.copy() for i in targets}
        for i in targets:
            inputs[i].data[...] = originals[i] + eps * directions[i]
        plus = scalar()
        for i in targets:
            inputs[i].data[...] = originals[i] - eps * directions[i]
        minus = scalar()
        for i in targets:
            inputs[i].data[...] = originals[i]
        numeric = (plus - minus) / (2 * eps)
        exact = sum(float((analytic[i] * directions[i]).sum()) for i in targets)
        if not compare(numeric, exact, f"random direction {d}"):
            ok = False
    return ok
