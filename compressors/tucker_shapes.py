"""Tucker shapes and core sizes: dimension adjustment, the aligned/paired/spatial reshapes, parameter counts, rank solvers."""
import math

import numpy as np


# ---------------------------------------------------------------- dimension adjustment
def prime_factors(n):
    """Prime factors of n >= 1 with multiplicity, ascending."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _divisors(n):
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def balanced_shape(count, order):
    """D = `order` mode sizes >= 2 with product exactly `count`, as equal as possible (ascending).

    Minimises the sum of the sizes (the factor-matrix cost), then the largest size.
    784 * 300 with order 5 gives (10, 10, 12, 14, 14). ValueError when `count` has
    fewer than `order` prime factors.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"tucker dimension adjustment: element count must be a positive int, got {count!r}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"tucker dimension adjustment: order must be a positive int, got {order!r}")
    count, order = int(count), int(order)
    primes = prime_factors(count)
    if order == 1:
        return (count,)
    if len(primes) < order:
        raise ValueError(f"tucker dimension adjustment: {count} = {' x '.join(map(str, primes)) or '1'} has "
                         f"{len(primes)} prime factor(s), so it cannot be split into {order} mode sizes "
                         f">= 2; use an order <= {len(primes)} or give an explicit shape")
    divisors = _divisors(count)
    best = [None, None]

    def search(remaining, parts, smallest, chosen, total):
        if parts == 1:
            if remaining >= smallest:
                key = (total + remaining, max(chosen + [remaining]))
                if best[0] is None or key < best[0]:
                    best[0], best[1] = key, tuple(chosen + [remaining])
            return
        # lower bound: the remaining parts are at best all equal to remaining ** (1 / parts)
        if best[0] is not None and total + parts * remaining ** (1.0 / parts) > best[0][0] + 1e-9:
            return
        for d in divisors:
            if d < smallest or remaining % d:
                continue
            if d ** parts > remaining:
                break
            search(remaining // d, parts - 1, d, chosen + [d], total + d)

    search(count, order, 2, [], 0)
    return best[1]


def adjust_dimensions(count, order=None, shape=None, where="tucker"):
    """Mode sizes for `count` elements: the explicit `shape` (checked) or balanced_shape(count, order)."""
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape) or math.prod(shape) != count:
            raise ValueError(f"{where}: explicit shape {shape} has product {math.prod(shape)}, "
                             f"but the weight has {count} elements")
        if order is not None and len(shape) != order:
            raise ValueError(f"{where}: explicit shape {shape} has {len(shape)} modes, order is {order}")
        return shape
    if order is None:
        raise ValueError(f"{where}: give an order (number of modes) or an explicit shape")
    try:
        return balanced_shape(count, order)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def aligned_shape(n_first, n_second, order, where="tucker"):
    """D = `order` mode sizes for a weight whose flat index is (first, second), e.g. Dense (n_in, n_out).

    Unlike balanced_shape, no mode mixes the two indices: the first d modes split n_first
    (balanced), the rest split n_second, so a Dense layer's input modes stay input modes (784 ->
    28 x 28, the image rows and columns). d = round(order * log n_first / log(n_first n_second)),
    at least 1 and at most order - 1, moved to the nearest split both sides can take.
    """
    if order < 2:
        raise ValueError(f"{where}: aligned reshaping needs order >= 2, got {order}")
    capacity = [len(prime_factors(n_first)), len(prime_factors(n_second))]
    want = order * math.log(n_first) / math.log(n_first * n_second) if n_first * n_second > 1 else 1
    splits = sorted(range(1, order), key=lambda d: (abs(d - want), d))
    for d in splits:
        if d <= capacity[0] and order - d <= capacity[1]:
            return balanced_shape(n_first, d) + balanced_shape(n_second, order - d)
    raise ValueError(f"{where}: {n_first} x {n_second} cannot be split into {order} modes >= 2 with no mode "
                     f"mixing the two ({n_first} has {capacity[0]} prime factor(s), {n_second} has "
                     f"{capacity[1]}); use a lower order or balanced reshaping")


def _sizes_with_ones(count, parts):
    """`parts` sizes with product `count`: balanced_shape over as many parts as count allows, 1s first."""
    usable = min(parts, len(prime_factors(count)))
    return (1,) * (parts - usable) + (balanced_shape(count, usable) if usable else ())


def paired_shape(n_first, n_second, order, where="tucker"):
    """Mode sizes for a permuted reshape whose every mode pairs a part of each index (TT-matrix style).

    n_first = p_1...p_D and n_second = q_1...q_D (each balanced, 1s where a count has too few
    prime factors); mode i holds (p_i, q_i), largest p with smallest q so the modes stay
    balanced. Returns (modes, p, q). A Tucker core then bounds the rank of the (first, second)
    matrix far less than with balanced_shape, where whole modes can fall on one side.
    """
    p = _sizes_with_ones(n_first, order)
    q = _sizes_with_ones(n_second, order)[::-1]
    modes = tuple(a * b for a, b in zip(p, q))
    if any(m < 2 for m in modes):
        raise ValueError(f"{where}: {n_first} x {n_second} cannot be paired into {order} modes >= 2; "
                         "use a lower order")
    return modes, p, q


def spatial_shape(input_axes, n_out, order, where="tucker", coarse="small"):
    """Mode sizes for a Dense weight whose input index is a multi-index, e.g. an image (rows, columns).

    input_axes: the per-example shape of the layer's input before flattening, e.g. (28, 28) pixels
    or (50, 4, 4) feature maps (channels, height, width); size-1 axes are dropped. Each axis is
    split into D digits (balanced, 1s where it has too few prime factors), coarse to fine: row
    r = r_1 (r_2 ... r_D) in mixed radix, r_1 the coarsest. Mode i holds the i-th digit of every
    input axis and one digit of the output, so a core of 1s is a Kronecker product of coarse and
    fine spatial maps (as QTT image compression does). Axes before the last two (channels, no
    spatial order) take their digits largest first, to even out the modes. The output digits go
    largest to the mode with the smallest input part. Returns (modes, groups): groups[j] = the
    digit sizes of input axis j, groups[-1] those of the output; mode i = prod_j groups[j][i].
    """
    axes = tuple(int(a) for a in input_axes if int(a) > 1)
    if len(axes) < 2 or isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 2:
        raise ValueError(f"{where}: spatial reshaping needs an input of >= 2 axes of size > 1 and order >= 2, "
                         f"got input axes {tuple(input_axes)} and order {order!r}")
    if n_out < 1:
        raise ValueError(f"{where}: n_out must be >= 1, got {n_out!r}")
    if coarse not in ("large", "small"):
        raise ValueError(f"{where}: coarse must be 'large' or 'small', got {coarse!r}")
    order = int(order)
    groups = []
    for j, size in enumerate(axes):
        digits = _sizes_with_ones(size, order)
        spatial_small_first = coarse == "small"
        groups.append(digits if (j >= len(axes) - 2) == spatial_small_first else digits[::-1])
    input_parts = [math.prod(g[i] for g in groups) for i in range(order)]
    out_digits = sorted(_sizes_with_ones(int(n_out), order), reverse=True)
    out = [0] * order
    for digit, i in zip(out_digits, sorted(range(order), key=lambda i: (input_parts[i], i))):
        out[i] = digit
    groups.append(tuple(out))
    modes = tuple(part * o for part, o in zip(input_parts, out))
    if any(m < 2 for m in modes):
        raise ValueError(f"{where}: input {axes} x {n_out} outputs gives a mode of size 1 at order {order} "
                         f"(modes {modes}); use a lower order")
    return modes, [tuple(g) for g in groups]


# ---------------------------------------------------------------- parameter counts and rank solving
def check_ratio(ratio, where="tucker"):
    """ratio itself when it is > 0; otherwise a ValueError naming it."""
    if not ratio > 0:
        raise ValueError(f"{where}: ratio must be > 0, got {ratio!r}")
    return ratio


def ratio_budget(dense_params, ratio, *kept, where="tucker"):
    """The values Tucker cores and factors may store so that `dense_params` dense values shrink
    `ratio` times: dense_params / ratio less each count in `kept` (biases, unconverted layers,
    layers whose core sizes are fixed: values stored as they are), subtracted in the order given."""
    budget = dense_params / check_ratio(ratio, where)
    for count in kept:
        budget -= count
    return budget


def tucker_params(modes, ranks, core=True):
    """Stored values of a Tucker weight: prod(k_i) (the core, unless shared) + sum(m_i k_i)."""
    return (math.prod(ranks) if core else 0) + sum(m * k for m, k in zip(modes, ranks))


def _ranks_at(modes, fraction, min_rank):
    return [max(min(min_rank, m), min(m, int(round(fraction * m)))) for m in modes]


def _raise_greedily(layer_modes, layer_ranks, fits):
    """Raise single ranks (lowest k/m first) while fits(all ranks) holds; modifies layer_ranks."""
    improved = True
    while improved:
        improved = False
        candidates = sorted(((k / m, li, i) for li, (modes, ranks) in enumerate(zip(layer_modes, layer_ranks))
                             for i, (m, k) in enumerate(zip(modes, ranks)) if k < m))
        for _, li, i in candidates:
            layer_ranks[li][i] += 1
            if fits(layer_ranks):
                improved = True
                break
            layer_ranks[li][i] -= 1
    return layer_ranks


def solve_ranks(layer_modes, budget, min_rank=1, where="tucker"):
    """Core sizes for several layers sharing one budget of Tucker values (cores + factors).

    One fraction f gives k_i = clip(round(f m_i), min_rank, m_i) for every layer
    (the largest f that fits, by bisection), then single ranks are raised while
    the total stays within `budget`. ValueError when even min_rank everywhere does not fit.
    """
    def total(ranks_list):
        return sum(tucker_params(m, k) for m, k in zip(layer_modes, ranks_list))

    def at(f):
        return [_ranks_at(m, f, min_rank) for m in layer_modes]

    if total(at(0.0)) > budget:
        raise ValueError(f"{where}: the budget of {budget:.0f} Tucker values is too small: core sizes "
                         f"{min_rank} already need {total(at(0.0))} for mode sizes {layer_modes}; "
                         "ask for a lower ratio, a lower order or a lower min_rank")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if total(at(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    ranks = at(lo)
    return _raise_greedily(layer_modes, ranks, lambda r: total(r) <= budget)


def _log_gain(mode_size, rank):
    return math.log((rank + 1) / rank)


def solve_ranks_greedy(layer_modes, budget, min_rank=1, where="tucker", gain=_log_gain):
    """Core sizes for several layers sharing one budget, grown one mode rank at a time by value for cost.

    Starts every k_i at min_rank (at most m_i); then, while some increment fits, raises the
    k_i with the largest log((k_i + 1) / k_i) / (added stored values) (ties: first layer, first
    mode): a greedy ascent on the sum over layers of log(core size) per stored value, so a small
    layer, whose increments cost little, gets a large core instead of the uniform rule's min_rank cores.
    A k_i never exceeds m_i nor the product of the other mode sizes (beyond that the core is
    redundant). Deterministic; ValueError when min_rank everywhere does not fit. `gain(m, k)`:
    the value of raising a rank k of a mode of size m (default log((k + 1) / k)).
    """
    ranks = [[max(1, min(min_rank, m)) for m in modes] for modes in layer_modes]
    total = sum(tucker_params(m, k) for m, k in zip(layer_modes, ranks))
    if total > budget:
        raise ValueError(f"{where}: the budget of {budget:.0f} Tucker values is too small: core sizes "
                         f"{min_rank} already need {total} for mode sizes {layer_modes}; "
                         "ask for a lower ratio, a lower order or a lower min_rank")
    while True:
        best = None
        for li, (modes, layer) in enumerate(zip(layer_modes, ranks)):
            core = math.prod(layer)
            for i, (m, k) in enumerate(zip(modes, layer)):
                if k >= m or k >= math.prod(modes) // m:
                    continue
                cost = m + core // k
                if total + cost > budget:
                    continue
                value = gain(m, k) / cost
                if best is None or value > best[0] * (1 + 1e-12):
                    best = (value, li, i, cost)
        if best is None:
            return ranks
        _, li, i, cost = best
        ranks[li][i] += 1
        total += cost


ALLOCATIONS = {"uniform": solve_ranks, "greedy": solve_ranks_greedy}
RESHAPES = ("balanced", "aligned", "paired", "spatial")


def solve_shared_k(layer_modes, budget, where="scada"):
    """The largest core side k with k^D + sum over layers of sum(m_i k) <= budget (SCADA)."""
    order = len(layer_modes[0])

    def total(k):
        return k ** order + sum(k * sum(modes) for modes in layer_modes)

    if total(1) > budget:
        raise ValueError(f"{where}: the budget of {budget:.0f} values is too small: a shared core of "
                         f"side 1 already needs {total(1)}; ask for a lower ratio or a lower order")
    k = 1
    while total(k + 1) <= budget:
        k += 1
    return k


def _sizes(text, what):
    values = [v for v in text.strip().lower().split("x")]
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(f"{what}: expected sizes like 7x8x14, got {text!r}") from None


def parse_layouts(text):
    """--tucker-layout text -> compress()'s layouts.

    Comma-separated entries NAME=DIGITS/DIGITS[@RANKS], e.g. '1=7x8x14/10x6x5@2x4x2,3=5x6x10/5x5x4'
    (layer 1's 784 inputs read as digits 7 x 8 x 14 and its 300 outputs as 10 x 6 x 5, modes
    70 x 48 x 70, core 2 x 4 x 2; layer 3's core sizes solved from the ratio).
    """
    layouts = {}
    for entry in filter(None, (e.strip() for e in str(text).split(","))):
        name, sep, rest = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--tucker-layout: expected NAME=DIGITS/DIGITS[@RANKS], got {entry!r}")
        digits_text, _, ranks_text = rest.partition("@")
        groups = tuple(_sizes(g, f"--tucker-layout ({name.strip()})") for g in digits_text.split("/"))
        if len(groups) < 2 or len({len(g) for g in groups}) != 1:
            raise ValueError(f"--tucker-layout ({name.strip()}): expected >= 2 digit groups of one length "
                             f"(one digit per mode), e.g. 7x8x14/10x6x5, got {digits_text!r}")
        ranks = _sizes(ranks_text, f"--tucker-layout ({name.strip()})") if ranks_text.strip() else None
        if name.strip() in layouts:
            raise ValueError(f"--tucker-layout: layer {name.strip()!r} is given twice")
        layouts[name.strip()] = {"digits": groups, "ranks": ranks}
    if not layouts:
        raise ValueError(f"--tucker-layout: no entries in {text!r}")
    return layouts
