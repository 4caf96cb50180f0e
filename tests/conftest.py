"""Shared test fixtures: float64 helpers, seeded generators, where the real data sets live."""
import os
import pathlib

import numpy as np
import pytest

import engine

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("COMPACTNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def rng():
    engine.manual_seed(0)
    return np.random.default_rng(0)


def leaf(array, requires_grad=True):
    """A float64 leaf tensor for gradient checks."""
    return engine.Tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def have_module(name):
    try:
        __import__(name)
        return True
    except Exception:
        return False


requires_gpu = pytest.mark.skipif(not engine.backend.gpu_available(),
                                  reason="needs CuPy and a CUDA device")
