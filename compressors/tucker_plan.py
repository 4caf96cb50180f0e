"""The steps of tucker.compress: options checked, mode sizes per layer, core sizes by allocation mode."""
import math
from dataclasses import dataclass

import numpy as np

from layers import init
from layers.module import Parameter

from .layer_swap import find_layers
from .tucker_layers import _check_ranks, _TuckerWeight
from .tucker_shapes import (ALLOCATIONS, RESHAPES, adjust_dimensions, aligned_shape, check_ratio,
                            paired_shape, ratio_budget, solve_shared_k, spatial_shape, tucker_params)


def _layer_types():
    from layers.conv import Conv2d
    from layers.dense import Dense
    return Dense, Conv2d


def check_options(model, layers, ratio, allocation, reshape, input_shapes, where):
    """The (name, layer) pairs compress() converts, after checking its options; ValueError naming a bad one."""
    targets = find_layers(model, _layer_types(), layers, "tucker.compress", exclude=_TuckerWeight)
    if not targets:
        raise ValueError(f"{where}: the model has no Dense or Conv2d layer to convert")
    if ratio is not None:
        check_ratio(ratio, where)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"{where}: allocation must be one of {sorted(ALLOCATIONS)}, got {allocation!r}")
    if reshape not in RESHAPES:
        raise ValueError(f"{where}: reshape must be one of {RESHAPES}, got {reshape!r}")
    if reshape == "spatial" and not isinstance(input_shapes, dict):
        raise ValueError(f"{where}: reshape='spatial' needs input_shapes, a dict layer name -> input shape "
                         f"before flattening (dense_input_shapes(model, example) finds them), got {input_shapes!r}")
    return targets


def layer_orders(order, names, where):
    """name -> number of modes: one int for every layer, or a list with one per layer."""
    if isinstance(order, (list, tuple)):
        if len(order) != len(names):
            raise ValueError(f"{where}: {len(order)} orders for {len(names)} layers {names}")
        return dict(zip(names, order))
    return {n: order for n in names}


def check_layouts(layouts, names, shared_core, where):
    """Validate compress()'s layouts (name -> {"digits": groups, "ranks": ...}); returns them with int tuples."""
    if not layouts:
        return {}
    if not isinstance(layouts, dict):
        raise ValueError(f"{where}: layouts must be a dict layer name -> {{'digits': ..., 'ranks': ...}}, "
                         f"got {type(layouts).__name__}")
    unknown = [n for n in layouts if n not in names]
    if unknown:
        raise ValueError(f"{where}: layouts name layers {unknown} that are not converted; converted: {names}")
    checked = {}
    for n, layout in layouts.items():
        digits = layout.get("digits") if isinstance(layout, dict) else None
        if not digits or len(digits) < 2 or len({len(g) for g in digits}) != 1:
            raise ValueError(f"{where} ({n}): a layout needs 'digits', >= 2 groups of equal length (one "
                             f"size per mode), got {layout!r}")
        if shared_core and layout.get("ranks") is not None:
            raise ValueError(f"{where} ({n}): a shared core fixes every layer's core sizes; give k, not "
                             f"layout ranks")
        groups = tuple(tuple(int(v) for v in g) for g in digits)
        if any(v < 1 for g in groups for v in g):
            raise ValueError(f"{where} ({n}): layout digits must be positive ints, got {digits!r}")
        checked[n] = {"digits": groups, "ranks": layout.get("ranks")}
    return checked


def apply_layouts(layouts, names, shared_core, shapes, orders, where):
    """Write each layout's mode sizes and order into shapes and orders; returns (pairings, fixed ranks)."""
    pairings, fixed_ranks = {}, {}
    for n, layout in check_layouts(layouts, names, shared_core, where).items():
        shapes[n] = tuple(math.prod(g[i] for g in layout["digits"]) for i in range(len(layout["digits"][0])))
        pairings[n] = layout["digits"]
        orders[n] = len(shapes[n])
        if layout.get("ranks") is not None:
            fixed_ranks[n] = _check_ranks(layout["ranks"], shapes[n], f"{where} ({n})")
    return pairings, fixed_ranks


def reshape_layers(targets, counts, shapes, pairings, orders, reshape, input_shapes, spatial_coarse, where):
    """Fill shapes and pairings for the layers without an explicit shape, by the `reshape` rule;
    returns name -> mode sizes for every target."""
    dense_type, _ = _layer_types()
    for n, m in targets:
        if reshape == "balanced" or n in shapes:
            continue
        # Dense weight (n_in, n_out); Conv2d weight (out, in/groups, kh, kw): first index, the rest
        first = m.weight.shape[0]
        geometry = tuple(input_shapes.get(n) or ()) if reshape == "spatial" else ()
        if reshape == "aligned":
            shapes[n] = aligned_shape(first, counts[n] // first, orders[n], f"{where} ({n})")
        elif isinstance(m, dense_type) and sum(int(a) > 1 for a in geometry) >= 2:
            if math.prod(geometry) != first:
                raise ValueError(f"{where} ({n}): input shape {geometry} has {math.prod(geometry)} values, "
                                 f"the layer takes {first}")
            shapes[n], pairings[n] = spatial_shape(geometry, counts[n] // first, orders[n],
                                                   f"{where} ({n})", coarse=spatial_coarse)
        else:
            shapes[n], *pairings[n] = paired_shape(first, counts[n] // first, orders[n], f"{where} ({n})")
    return {n: adjust_dimensions(counts[n], orders[n], shapes.get(n), f"{where} ({n})") for n, _ in targets}


# ---------------------------------------------------------------- core sizes, one function per allocation mode
@dataclass
class Conversion:
    """What the allocation modes need to know about the layers being converted."""
    targets: list        # (name, layer) pairs
    modes: dict          # name -> mode sizes
    counts: dict         # name -> weight element count
    fixed_ranks: dict    # name -> core sizes given by a layout
    dense_total: int     # the model's parameters before conversion
    biases: int          # the converted layers' biases that stay stored
    others: int          # parameters of the layers left as they are
    bias: bool
    min_rank: int
    solve: object        # the rank solver of the allocation ("uniform" or "greedy")
    where: str

    @property
    def names(self):
        return [n for n, _ in self.targets]


def shared_core_ranks(plan, ratio, ranks, k, dtype):
    """SCADA: one k^D core for every layer, k given (as k or an int `ranks`) or the largest meeting `ratio`.
    Returns (the core Parameter, name -> None)."""
    where = plan.where
    orders = {len(m) for m in plan.modes.values()}
    if len(orders) != 1:
        raise ValueError(f"{where}: a shared core needs one order for every layer, got modes {plan.modes}")
    if k is None and ranks is not None:
        if not isinstance(ranks, (int, np.integer)):
            raise ValueError(f"{where}: a shared core takes one int k (core k^D), got ranks={ranks!r}")
        k = int(ranks)
    if k is None:
        budget = ratio_budget(plan.dense_total, ratio, plan.biases, plan.others, where=where)
        k = solve_shared_k([plan.modes[n] for n in plan.names], budget, where)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{where}: k must be a positive int, got {k!r}")
    core = Parameter(init.normal((int(k),) * orders.pop(), 1.0, dtype))
    return core, {n: None for n in plan.names}


def per_layer_ranks(ranks, names, where):
    """ranks as given: an int, one list for every layer, a list of lists, or a dict name -> ranks."""
    if ranks is None:
        return {n: None for n in names}
    if isinstance(ranks, dict):
        missing = [n for n in names if n not in ranks]
        if missing:
            raise ValueError(f"{where}: ranks has no entry for layers {missing}")
        return {n: ranks[n] for n in names}
    if isinstance(ranks, (list, tuple)) and ranks and isinstance(ranks[0], (list, tuple)):
        if len(ranks) != len(names):
            raise ValueError(f"{where}: {len(ranks)} rank lists for {len(names)} layers {names}")
        return dict(zip(names, ranks))
    return {n: ranks for n in names}


def explicit_ranks(plan, ranks):
    """Core sizes given by the caller for the layers without layout ranks, the layout ones kept."""
    layer_ranks = per_layer_ranks(ranks, [n for n in plan.names if n not in plan.fixed_ranks], plan.where)
    layer_ranks.update(plan.fixed_ranks)
    return layer_ranks


def ratio_per_layer_ranks(plan, ratio):
    """Each layer without layout ranks shrunk `ratio` times on its own (its bias counted in)."""
    layer_ranks = dict(plan.fixed_ranks)
    for n, m in plan.targets:
        if n in plan.fixed_ranks:
            continue
        dense_bias = m.bias.size if m.bias is not None else 0
        kept = dense_bias if plan.bias else 0
        budget = ratio_budget(plan.counts[n] + dense_bias, ratio, kept, where=plan.where)
        layer_ranks[n] = plan.solve([plan.modes[n]], budget, plan.min_rank, f"{plan.where} ({n})")[0]
    return layer_ranks


def ratio_network_ranks(plan, ratio):
    """The whole network shrunk `ratio` times: the layers without layout ranks share what is left."""
    free = [n for n in plan.names if n not in plan.fixed_ranks]
    fixed = sum(tucker_params(plan.modes[n], plan.fixed_ranks[n]) for n in plan.fixed_ranks)
    budget = ratio_budget(plan.dense_total, ratio, plan.biases, plan.others, fixed, where=plan.where)
    solved = plan.solve([plan.modes[n] for n in free], budget, plan.min_rank, plan.where)
    layer_ranks = dict(zip(free, solved))
    layer_ranks.update(plan.fixed_ranks)
    return layer_ranks


def allocate(plan, ratio, ranks, k, shared_core, per_layer, dtype):
    """(shared core Parameter or None, name -> core sizes), by the allocation mode the options pick."""
    if shared_core:
        return shared_core_ranks(plan, ratio, ranks, k, dtype)
    if ranks is not None:
        return None, explicit_ranks(plan, ranks)
    if len(plan.fixed_ranks) == len(plan.targets):
        return None, dict(plan.fixed_ranks)
    if per_layer:
        return None, ratio_per_layer_ranks(plan, ratio)
    return None, ratio_network_ranks(plan, ratio)
