"""Mode-n products and the Tucker rebuild (core x_1 M_1 ... x_D M_D) with its backward: NumPy, Numba, CuPy."""
import functools
import itertools
import math

import numpy as np

from .. import backend
from . import load_numba_module

IMPLEMENTATIONS = ("numpy", "numba", "cupy")


# ---------------------------------------------------------------------------
# contraction order: which factor to apply first
# ---------------------------------------------------------------------------
def chain_flops(shape, factor_shapes, order):
    """FLOPs (a multiply-add counts 2) of applying the factors (m_i, k_i) to a tensor of `shape` in `order`.

    Applying factor i turns axis i from k_i into m_i and costs 2 * size_before * m_i.
    """
    current = list(shape)
    total = 0
    for i in order:
        m_i = factor_shapes[i][0]
        total += 2 * math.prod(current) * m_i
        current[i] = m_i
    return total


def contraction_order(shape, factor_shapes):
    """The order of modes that costs the fewest FLOPs for ``chain_flops``.

    Exchanging two neighbouring steps i, j shows i should go first exactly when
    1/k_i - 1/m_i < 1/k_j - 1/m_j, so sorting by that key is optimal (the test
    compares it with every permutation). Ties keep the mode order.
    """
    def key(i):
        m_i, k_i = factor_shapes[i]
        return 1.0 / k_i - 1.0 / m_i
    return tuple(sorted(range(len(shape)), key=key))


# What one matrix of a batched product (a mode between the first and the last: NumPy's matmul loops
# over `before` small matrices) costs beyond its FLOPs, in FLOPs: about half a microsecond of dispatch.
# Measured on the 10x12x14x14x10 rebuild from a 4^5 core: the FLOP-minimal order 0.246 ms, the order
# chosen with this cost 0.135 ms (the fastest of all 120: 0.135 ms); two other shapes likewise.
BATCHED_MATRIX_COST = 10_000

# Beyond this many modes the order search (every permutation) would cost more than it saves.
MAX_SEARCHED_MODES = 7


def execution_cost(shape, factor_shapes, order):
    """chain_flops plus BATCHED_MATRIX_COST for every small matrix a batched mode product loops over."""
    current = list(shape)
    total = 0
    for i in order:
        m_i = factor_shapes[i][0]
        before, after = math.prod(current[:i]), math.prod(current[i + 1:])
        total += 2 * math.prod(current) * m_i + (BATCHED_MATRIX_COST * before if before > 1 and after > 1 else 0)
        current[i] = m_i
    return total


@functools.lru_cache(maxsize=256)
def execution_order(shape, factor_shapes):
    """The order of modes the NumPy/CuPy rebuild runs: the cheapest by execution_cost over every
    permutation (up to MAX_SEARCHED_MODES modes; beyond, the FLOP-minimal contraction_order). Shapes
    are tuples (the answer is cached per shape)."""
    if len(shape) > MAX_SEARCHED_MODES:
        return contraction_order(shape, factor_shapes)
    return min(itertools.permutations(range(len(shape))),
               key=lambda order: execution_cost(shape, factor_shapes, order))


def rebuild_flops(core_shape, factor_shapes):
    """FLOPs of the cheapest Tucker rebuild of a core with these factor shapes (m_i, k_i)."""
    return chain_flops(core_shape, factor_shapes, contraction_order(core_shape, factor_shapes))


# ---------------------------------------------------------------------------
# implementation choice
# ---------------------------------------------------------------------------
def numba_available():
    """True when numba imports and COMPACTNET_DISABLE_NUMBA does not disable it."""
    return load_numba_module("tucker_numba") is not None


def _resolve(impl, *arrays):
    """The implementation to run: the caller's choice checked against the arrays, or the fastest one."""
    on_gpu = any(backend.is_gpu_array(a) for a in arrays)
    if impl is None:
        if on_gpu:
            return "cupy"
        # bench/bench_tucker.py measured NumPy's BLAS-backed matmul chain faster than the Numba
        # loops at every size tried (see RESULTS.md); Numba stays selectable for comparison.
        return "numpy"
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"tucker kernel: unknown implementation {impl!r}; expected one of {IMPLEMENTATIONS}")
    if impl == "cupy" and not on_gpu:
        raise ValueError("tucker kernel: implementation 'cupy' needs CuPy (GPU) arrays, got NumPy arrays")
    if impl != "cupy" and on_gpu:
        raise ValueError(f"tucker kernel: implementation {impl!r} needs NumPy arrays, got CuPy arrays")
    if impl == "numba" and not numba_available():
        raise ValueError("tucker kernel: implementation 'numba' requested but numba is not importable "
                         "or COMPACTNET_DISABLE_NUMBA disables it")
    return impl


# ---------------------------------------------------------------------------
# mode-n product: NumPy/CuPy reference and Numba loops
# ---------------------------------------------------------------------------
def _split_shape(shape, mode):
    return math.prod(shape[:mode]), shape[mode], math.prod(shape[mode + 1:])


def _mode_product_xp(tensor, matrix, mode):
    """tensor x_mode matrix with matrix (m, k): one (batched) matrix product, the mode stays in place."""
    xp = backend.xp_of(tensor, matrix)
    before, k, after = _split_shape(tensor.shape, mode)
    m = matrix.shape[0]
    out_shape = tensor.shape[:mode] + (m,) + tensor.shape[mode + 1:]
    if after == 1:
        out = tensor.reshape(before, k) @ matrix.T
    elif before == 1:
        out = matrix @ tensor.reshape(k, after)
    else:
        out = xp.matmul(matrix, tensor.reshape(before, k, after))
    return out.reshape(out_shape)


def _mode_product_numba(tensor, matrix, mode):
    before, k, after = _split_shape(tensor.shape, mode)
    t3 = np.ascontiguousarray(tensor).reshape(before, k, after)
    kernel = load_numba_module("tucker_numba").mode_product_3d
    out = kernel(t3, np.ascontiguousarray(matrix, dtype=tensor.dtype))
    return out.reshape(tensor.shape[:mode] + (matrix.shape[0],) + tensor.shape[mode + 1:])


def check_mode_product(tensor, matrix, mode):
    if matrix.ndim != 2:
        raise ValueError(f"mode_product: matrix must be 2-D (m, k), got shape {tuple(matrix.shape)}")
    if not isinstance(mode, int) or not 0 <= mode < tensor.ndim:
        raise ValueError(f"mode_product: mode {mode!r} out of range for a {tensor.ndim}-D tensor")
    if matrix.shape[1] != tensor.shape[mode]:
        raise ValueError(f"mode_product: matrix shape {tuple(matrix.shape)} needs {matrix.shape[1]} == "
                         f"tensor.shape[{mode}], but the tensor has shape {tuple(tensor.shape)}")


def mode_product(tensor, matrix, mode, impl=None):
    """tensor x_mode matrix for matrix (m, k): axis `mode` (size k) becomes size m, like tensorly's mode_dot."""
    check_mode_product(tensor, matrix, mode)
    impl = _resolve(impl, tensor, matrix)
    if impl == "numba":
        return _mode_product_numba(tensor, matrix, mode)
    return _mode_product_xp(tensor, matrix, mode)


# ---------------------------------------------------------------------------
# Tucker rebuild and its backward
# ---------------------------------------------------------------------------
def _product_fn(impl):
    return _mode_product_numba if impl == "numba" else _mode_product_xp


def check_tucker(core, factors):
    if len(factors) != core.ndim:
        raise ValueError(f"tucker_to_tensor: a {core.ndim}-D core needs {core.ndim} factors, got {len(factors)}")
    for i, f in enumerate(factors):
        if f.ndim != 2 or f.shape[1] != core.shape[i]:
            raise ValueError(f"tucker_to_tensor: factor {i} must have shape (m, {core.shape[i]}) to match "
                             f"core shape {tuple(core.shape)}, got {tuple(f.shape)}")


def tucker_rebuild(core, factors, impl=None):
    """core x_1 factors[0] x_2 ... x_D factors[D-1], in the cheapest order (execution_order; for Numba, the fewest FLOPs)."""
    check_tucker(core, factors)
    impl = _resolve(impl, core, *factors)
    product = _product_fn(impl)
    shapes = tuple(tuple(f.shape) for f in factors)
    order = (contraction_order(core.shape, shapes) if impl == "numba"
             else execution_order(tuple(core.shape), shapes))
    out = core
    for i in order:
        out = product(out, factors[i], i)
    return out


def _project(tensor, factors, modes, product):
    """tensor x_i factors[i]^T for each i in `modes`, the most shrinking mode first."""
    modes = sorted(modes, key=lambda i: factors[i].shape[1] / factors[i].shape[0])
    for i in modes:
        tensor = product(tensor, factors[i].T, i)
    return tensor


def unfold(tensor, mode):
    xp = backend.xp_of(tensor)
    return xp.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def tucker_rebuild_backward(grad, core, factors, needs=None, impl=None):
    """Gradients of sum(grad * tucker_rebuild(core, factors)) for the core and each factor.

    g_core = grad x_1 M_1^T ... x_D M_D^T, and g_M_i = unfold_i(grad x_{j != i} M_j^T) unfold_i(core)^T.
    The partial projections are shared by splitting the modes in halves (each half's
    gradients need the other half projected first), so the full-size `grad` is
    projected about 2 log2(D) times rather than D times.
    `needs` (a sequence of D + 1 bools: core, then each factor) skips unwanted work.
    Returns (g_core or None, [g_factor_i or None, ...]).
    """
    check_tucker(core, factors)
    d = core.ndim
    if needs is None:
        needs = (True,) * (d + 1)
    impl = _resolve(impl, grad, core, *factors)
    product = _product_fn(impl)
    g_factors = [None] * d
    g_core = None
    wanted_factors = [i for i in range(d) if needs[i + 1]]

    def recurse(partial, modes):
        # `partial` is grad projected on every mode outside `modes`; those in `modes` are still full size
        nonlocal g_core
        if len(modes) == 1:
            i = modes[0]
            if needs[i + 1]:
                g_factors[i] = unfold(partial, i) @ unfold(core, i).T
            if needs[0] and g_core is None:
                g_core = product(partial, factors[i].T, i)
            return
        half = len(modes) // 2
        left, right = modes[:half], modes[half:]
        for keep, drop in ((left, right), (right, left)):
            if any(needs[i + 1] for i in keep) or (needs[0] and g_core is None):
                recurse(_project(partial, factors, drop, product), keep)

    if wanted_factors:
        recurse(grad, list(range(d)))
    if needs[0] and g_core is None:
        g_core = _project(grad, factors, range(d), product)
    return g_core, g_factors
