"""Fuzz helpers: arrays of any dtype with NaN/Inf/extremes, and the "NumPy's result or ValueError/TypeError" check."""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.extra import numpy as hnp

from engine import Tensor

# random on every run (that is the point of fuzzing), nothing written to .hypothesis/;
# too_slow is suppressed because the build machines are shared. COMPACTNET_FUZZ_EXAMPLES=1000
# fuzzes harder (the default keeps the suite fast).
EXAMPLES = int(os.environ.get("COMPACTNET_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])
DTYPES = (np.float32, np.float64, np.int64, np.bool_)
FLOATS = (np.float32, np.float64)
ALLOWED = (ValueError, TypeError)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


def elements(dtype, special=True, bound=None):
    """Values of `dtype`: floats with NaN/Inf/extremes when `special`, or within +-bound."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        small = st.integers(-50, 50)
        return small if bound else small | st.sampled_from([np.iinfo(dtype).min, np.iinfo(dtype).max])
    width = dtype.itemsize * 8
    if bound is not None:
        finite = st.floats(-bound, bound, allow_nan=False, width=width)
        return finite | st.sampled_from([np.nan, np.inf, -np.inf]) if special else finite
    return st.floats(allow_nan=special, allow_infinity=special, width=width)


def arrays(dtype, shape=SHAPES, special=True, bound=None):
    return hnp.arrays(dtype, shape, elements=elements(dtype, special, bound))


def any_array(draw, shape=SHAPES, special=True, bound=None, dtypes=DTYPES):
    """Draw a dtype from `dtypes`, then an array of that dtype."""
    dtype = draw(st.sampled_from(dtypes))
    return draw(arrays(dtype, shape, special, bound))


def engine_call(fn):
    """Run an engine call: its result, or None when it raised ValueError/TypeError with a message.

    Any other exception type fails the test, naming the type.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except ALLOWED as e:
            assert str(e).strip(), f"{type(e).__name__} without a message"
            return None
        except Exception as e:  # the property under test: nothing but ValueError/TypeError
            pytest.fail(f"raised {type(e).__module__}.{type(e).__name__} (not ValueError/TypeError): {e}")


def numpy_call(fn):
    """The NumPy reference result, or None when NumPy rejects the input."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception:
            return None


def _as_float(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind in "biuf" else a


def tolerance(*dtypes):
    """(rtol, atol) for results computed in the lowest float precision among `dtypes`."""
    if any(np.dtype(d) == np.float32 for d in dtypes) or any(np.dtype(d).kind == "b" for d in dtypes):
        return 2e-5, 1e-6
    return 1e-10, 1e-12


def assert_matches(out, ref, nan_ok=None, rtol=1e-10, atol=1e-12, exact=False):
    """`out` (a Tensor) has the reference's shape and values.

    nan_ok: a boolean array broadcastable to the shape (or a bool) marking where the engine
    may give NaN because a NaN/Inf entered there (NaN propagation); elsewhere non-finite
    values must agree with the reference.
    """
    assert isinstance(out, Tensor), f"expected a Tensor, got {type(out).__name__}"
    ref = np.asarray(ref)
    assert out.shape == ref.shape, f"shape {out.shape} != NumPy's {ref.shape}"
    got, want = _as_float(out.data), _as_float(ref)
    if exact:
        np.testing.assert_array_equal(got, want)
        return
    allowed = np.zeros(got.shape, bool) if nan_ok is None else np.broadcast_to(nan_ok, got.shape)
    skip = allowed & np.isnan(got)
    both_finite = np.isfinite(got) & np.isfinite(want) & ~skip
    np.testing.assert_allclose(got[both_finite], want[both_finite], rtol=rtol, atol=atol)
    bad = ~skip & ~both_finite & ~((got == want) | (np.isnan(got) & np.isnan(want)))
    assert not bad.any(), (f"non-finite mismatch at {np.argwhere(bad)[:3].tolist()}: "
                           f"engine {got[bad][:3]} vs NumPy {want[bad][:3]}")


def check(engine_fn, numpy_fn, nan_ok=None, rtol=1e-10, atol=1e-12, exact=False, must_work=False):
    """The contract: the engine returns NumPy's result or raises ValueError/TypeError.

    When the engine returns a result, NumPy must accept the input too (no silently
    accepted bad input). `must_work`: the input is valid, so the engine must not raise.
    Returns the engine's result (None when it raised).
    """
    out = engine_call(engine_fn)
    if out is None:
        assert not must_work, "the engine rejected a valid input"
        return None
    ref = numpy_call(numpy_fn)
    assert ref is not None, "the engine returned a result for an input NumPy rejects"
    if isinstance(ref, (list, tuple)):
        assert isinstance(out, (list, tuple)) and len(out) == len(ref), \
            f"expected {len(ref)} results, got {out!r}"
        for o, r in zip(out, ref):
            assert_matches(o, r, nan_ok, rtol, atol, exact)
    else:
        assert_matches(out, ref, nan_ok, rtol, atol, exact)
    return out


def nonfinite(*arrays_):
    """True when any float input holds NaN or Inf."""
    return any(np.asarray(a).dtype.kind == "f" and not np.isfinite(a).all() for a in arrays_)
