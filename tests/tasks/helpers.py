"""Small test models for tasks/ tests: fixed-output modules with one parameter (for device/dtype)."""
import numpy as np

import engine
from layers import Module, Parameter


class FixedOutput(Module):
    """Returns fn(inputs) as a Tensor; holds one float64 parameter so evaluate finds a dtype."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.scale = Parameter(np.ones(1))
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        data = x.data if isinstance(x, engine.Tensor) else x
        return engine.Tensor(np.asarray(self.fn(data), dtype=np.float64))
