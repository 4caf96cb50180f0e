"""Run metrics by split (from metrics.json dicts) and the one rule for choosing settings: validation only.

A run's metrics.json names its headline metric in metrics["metric"]["name"] and holds one dict of
evaluation results per split: metrics["test"] (always) and metrics["valid"] (once the training loop
evaluates the validation split). Choosing reads metrics["metric"]["name"] / ["higher_is_better"] and
metrics["valid"] only; `chosen_test_value` is for the settings already chosen.
"""
import json
import os


def metric_name(metrics):
    return metrics["metric"]["name"]


def higher_is_better(metrics):
    return bool(metrics["metric"].get("higher_is_better", False))


def split_value(metrics, split):
    """The headline metric of a run on `split` ('valid', 'test'), or None when the run has none."""
    values = metrics.get(split)
    if not isinstance(values, dict):
        return None
    value = values.get(metric_name(metrics))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def valid_value(metrics):
    return split_value(metrics, "valid")


def chosen_test_value(metrics):
    """The headline test metric; call it only for a setting already chosen (or the only one)."""
    return split_value(metrics, "test")


def read_metrics(run_dir):
    """The metrics.json dict of a run folder, or None when the run left none."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def choose(candidates):
    """Index of the chosen setting among `candidates` (metrics dicts of one choice), and why.

    One candidate is chosen as it is: there is nothing to compare. Among several, the best
    validation metric wins (the first in order on a tie); candidates without a validation metric
    cannot win, and when none has one nothing is chosen (index None). Test values are never read.
    """
    if not candidates:
        return None, "no finished run"
    if len(candidates) == 1:
        return 0, "the only setting"
    scored = [(i, valid_value(m)) for i, m in enumerate(candidates)]
    scored = [(i, v) for i, v in scored if v is not None]
    if not scored:
        return None, "no validation metric to choose on"
    sign = 1.0 if higher_is_better(candidates[scored[0][0]]) else -1.0
    best = max(scored, key=lambda item: (sign * item[1], -item[0]))[0]
    return best, f"best validation {metric_name(candidates[best])} of {len(candidates)}"


def choose_per_group(runs):
    """{group: (index into `runs` or None, reason)} for runs given as (group, metrics) pairs in order;
    each group is one choice among its settings (see `choose`)."""
    groups = {}
    for index, (group, metrics) in enumerate(runs):
        groups.setdefault(group, []).append((index, metrics))
    chosen = {}
    for group, members in groups.items():
        pick, reason = choose([m for _, m in members])
        chosen[group] = (None if pick is None else members[pick][0], reason)
    return chosen
