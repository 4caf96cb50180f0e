"""The engine's random generator (dropout masks, initialisers), seeded by manual_seed()."""
import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Seed the engine's generator so runs repeat exactly."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng():
    """The current NumPy Generator."""
    return _rng


def get_state():
    """The generator state as a JSON-friendly dict (for checkpoints)."""
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state
