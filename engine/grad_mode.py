"""Global switches of the engine: gradient recording, anomaly detection, function hooks."""
import contextlib
import threading


class _State(threading.local):
    def __init__(self):
        self.grad_enabled = True
        self.anomaly = False
        self.function_hooks = []


state = _State()


@contextlib.contextmanager
def no_grad():
    """Run the block without recording a graph (inference, parameter updates)."""
    previous = state.grad_enabled
    state.grad_enabled = False
    try:
        yield
    finally:
        state.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record a graph inside the block even within no_grad()."""
    previous = state.grad_enabled
    state.grad_enabled = True
    try:
        yield
    finally:
        state.grad_enabled = previous


def is_grad_enabled():
    """True while operations are being recorded for backward."""
    return state.grad_enabled


@contextlib.contextmanager
def detect_anomaly():
    """Raise FloatingPointError at the first NaN/Inf produced in forward or backward, naming the op."""
    previous = state.anomaly
    state.anomaly = True
    try:
        yield
    finally:
        state.anomaly = previous
