"""Settings the compression methods share: energy and rank checks, per-layer values, number-list flags."""
import argparse

import numpy as np

from engine import backend


def check_energy(energy, where):
    """Return energy as a float in (0, 1]; ValueError naming `where` otherwise."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float, np.floating)):
        raise TypeError(f"{where}: energy threshold must be a number in (0, 1], got {energy!r}")
    energy = float(energy)
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"{where}: energy threshold must be in (0, 1], got {energy}")
    return energy


def check_rank(rank, where):
    """Return rank as an int >= 1; ValueError naming `where` otherwise."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"{where}: rank / number of basis filters must be an int >= 1, got {rank!r}")
    if rank < 1:
        raise ValueError(f"{where}: rank / number of basis filters must be >= 1, got {rank}")
    return int(rank)


def rank_for_energy(singular_values, energy):
    """Smallest r with sum_{i<=r} s_i^2 >= energy * sum s_i^2 (at least 1; the numerical rank for 1.0)."""
    s = np.asarray(backend.to_numpy(singular_values), dtype=np.float64)
    if s.size == 0:
        return 1
    tol = s[0] * max(s.size, 1) * np.finfo(np.float64).eps * 16
    numerical_rank = max(1, int((s > tol).sum()))
    total = float((s ** 2).sum())
    if total == 0.0:
        return 1
    cumulative = np.cumsum(s ** 2) / total
    # a relative slack so t = 1 is not defeated by rounding in the cumulative sum
    r = int(np.searchsorted(cumulative, energy - 1e-12) + 1)
    return max(1, min(r, numerical_rank))


def per_layer(value, names, what, where):
    """Expand a scalar, a list (one per layer, in order) or a dict (name -> value) to {name: value}."""
    if value is None or isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return {n: value for n in names}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{where}: {what} given for unknown layers {unknown}; layers: {list(names)}")
        return {n: value.get(n) for n in names}
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{where}: {what} has {len(value)} values, expected one per layer "
                             f"({len(names)}: {list(names)})")
        return dict(zip(names, value))
    raise TypeError(f"{where}: {what} must be a number, a list or a dict, got {type(value).__name__}")


def number_list(kind, what):
    """argparse type: one number or a comma-separated list (one per layer)."""
    def parse(text):
        try:
            values = [kind(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a {kind.__name__} or a comma-separated "
                                             f"list of them, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{what}: empty value")
        return values[0] if len(values) == 1 else values
    return parse
