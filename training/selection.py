"""--select: which epoch a run reports (the last, or the best on validation) and the weights kept for it.

best-valid chooses within each phase, on the validation split only: at the end of the train phase the
best train epoch's weights (and the compressor's state at that epoch) are restored before finalize;
with --finetune-epochs the finetune epochs (of the finalized model) are then compared among themselves
and the best one is restored before the final evaluation. The kept weights live in memory and travel in
every checkpoint under BEST_PREFIX, so an interrupt and --resume keep the best-so-far state.
"""
import copy
import math

from engine import backend

SELECT_RULES = ("last", "best-valid")
BEST_PREFIX = "best/"


class Selection:
    """The best validation epoch of the current phase (for --select best-valid) and earlier phases' choices."""

    def __init__(self, rule, higher_is_better):
        if rule not in SELECT_RULES:
            raise ValueError(f"--select {rule!r}: expected one of {', '.join(SELECT_RULES)}")
        self.rule = rule
        self.higher_is_better = bool(higher_is_better)
        self.phase = self.epoch = self.value = None
        self.weights = None
        self.compressor_state = None
        self.earlier = {}        # phase -> {"epoch", "value"} of phases already finished

    @property
    def active(self):
        return self.rule == "best-valid"

    def better(self, value):
        """Whether a validation value beats the kept one (a non-finite value never does; ties keep the earlier)."""
        if value is None or not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value if self.higher_is_better else value < self.value

    def offer(self, phase, epoch, value, model, compressor):
        """Keep a copy of `model`'s weights when epoch `epoch` of `phase` has the best validation value of
        its phase so far; returns whether it was kept. Only validation values may be offered."""
        if not self.active:
            return False
        if phase != self.phase:
            self._start_phase(phase)
        if not self.better(value):
            return False
        self.epoch, self.value = epoch, float(value)
        self.weights = {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()}
        state = compressor.state_dict() if hasattr(compressor, "state_dict") else None
        self.compressor_state = copy.deepcopy(state)
        return True

    def _start_phase(self, phase):
        if self.phase is not None:
            self.earlier[self.phase] = {"epoch": self.epoch, "value": self.value}
        self.phase, self.epoch, self.value = phase, None, None
        self.weights = self.compressor_state = None

    def restore_best(self, phase, model, compressor):
        """At the end of `phase`: load its kept weights (and compressor state) into `model`; returns the
        epoch restored, or None (rule 'last', or no epoch of this phase had a finite validation value)."""
        if not self.active or self.phase != phase or self.weights is None:
            return None
        model.load_state_dict(self.weights)
        if self.compressor_state is not None and hasattr(compressor, "load_state_dict"):
            compressor.load_state_dict(copy.deepcopy(self.compressor_state))
        return self.epoch

    # ---- checkpoint ----------------------------------------------------
    def meta(self):
        """The JSON part of the state, for a checkpoint's meta (None for --select last)."""
        if not self.active:
            return None
        return {"phase": self.phase, "epoch": self.epoch, "value": self.value,
                "compressor_state": self.compressor_state, "earlier": self.earlier}

    def arrays(self):
        """The kept weights as checkpoint arrays (under BEST_PREFIX)."""
        if not self.active or self.weights is None:
            return {}
        return {BEST_PREFIX + k: v for k, v in self.weights.items()}

    def load(self, meta, arrays):
        """Take the state saved by `meta()` and `arrays()` (a checkpoint's 'best' entry and its arrays)."""
        if not self.active or not meta:
            return
        self.phase, self.epoch, self.value = meta["phase"], meta["epoch"], meta["value"]
        self.compressor_state = meta.get("compressor_state")
        self.earlier = dict(meta.get("earlier") or {})
        weights = {k[len(BEST_PREFIX):]: v for k, v in arrays.items() if k.startswith(BEST_PREFIX)}
        self.weights = weights or None

    # ---- report --------------------------------------------------------
    def report(self, history, metric_name):
        """metrics.json's 'selection': the rule, the phase and epoch reported, the split chosen on and, for
        best-valid, each phase's chosen epoch with its validation value ('valid_value', never a test value)."""
        last = history[-1] if history else {}
        if not self.active:
            return {"rule": self.rule, "split": None, "phase": last.get("phase"), "epoch": last.get("epoch")}
        phases = {phase: {"epoch": c["epoch"], "valid_value": c["value"]} for phase, c in self.earlier.items()}
        if self.phase is not None:
            phases[self.phase] = {"epoch": self.epoch, "valid_value": self.value}
        return {"rule": self.rule, "split": "valid", "metric": metric_name, "phase": self.phase,
                "epoch": self.epoch, "valid_value": self.value, "phases": phases}
