"""Stopping a run whose loss stays finite but far above where it started (divergence without NaN).

The rule (flags --diverge-factor F and --diverge-patience P): the run stops with exit status 3 when the
training loss exceeds F x max(starting loss, 1) at P consecutive steps. The starting loss is the run's
first training step (kept in the checkpoint, so a resumed run keeps the same reference); the floor 1
keeps a run that starts near zero loss (say, from --init-from) from stopping on ordinary noise. With the
defaults (F = 1e4, P = 100) a run stops only when its loss is ten thousand times its start for a hundred
steps in a row: a learning rate far too large, never an ordinary run. F = 0 turns the check off.
"""
import math

from training.errors import Diverged, NonFiniteLoss

DEFAULT_FACTOR, DEFAULT_PATIENCE = 1e4, 100


class DivergenceWatch:
    """Counts consecutive steps whose loss is far above the starting loss; raises Diverged at `patience`."""

    def __init__(self, factor=DEFAULT_FACTOR, patience=DEFAULT_PATIENCE):
        self.factor, self.patience = float(factor), int(patience)
        self.start = None
        self.high_steps = 0

    def limit(self):
        return self.factor * max(abs(self.start), 1.0)

    def observe(self, loss, where):
        if self.start is None:
            self.start = float(loss)
        if not self.factor:
            return
        self.high_steps = self.high_steps + 1 if abs(loss) > self.limit() else 0
        if self.high_steps >= self.patience:
            raise Diverged(f"the training loss diverged: above {self.limit():.4g} (--diverge-factor {self.factor:g} "
                           f"x max(starting loss {self.start:.4g}, 1)) for {self.high_steps} steps in a row "
                           f"(--diverge-patience), {loss:.4g} at {where}")

    def state(self):
        return {"start": self.start, "high_steps": self.high_steps}

    def load(self, state):
        if isinstance(state, dict):
            start = state.get("start")
            self.start = float(start) if isinstance(start, (int, float)) and math.isfinite(start) else None
            high = state.get("high_steps")
            self.high_steps = high if isinstance(high, int) and high >= 0 else 0


def check_finite_epoch(phase, epoch, metric_name, valid, evaluation):
    """NonFiniteLoss when an epoch's test or validation loss or metric is NaN or Inf: such an epoch never
    replaces the last good checkpoint."""
    for split, values in (("validation", valid), ("test", evaluation)):
        for key in ("loss", metric_name):
            value = (values or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteLoss(f"the {split} {key} became {value} after {phase} epoch {epoch}")
