"""Running train.py as a child process, the way a user does, for the reliability tests."""
import os
import subprocess
import sys

import numpy as np

from engine import io as engine_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the default task made tiny: steps of 8 sequences of length 6 through a GRU of 8 units
TINY = ["--task", "adding", "--seq-len", "6", "--hidden", "8", "--batch-size", "8", "--steps", "3",
        "--epochs", "1", "--no-progress", "--log-every", "0", "--eval-batch-size", "1000"]


def child_env():
    """The environment for a child: unbuffered output, no traceback override, one BLAS thread."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("COMPACTNET_TRACEBACK", None)
    return env


def train(*args, timeout=120):
    """Run `python train.py args` in the repository root; the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_train(*args):
    """Start train.py without waiting; stdout is line-buffered text."""
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)


def assert_user_error(proc, *words):
    """A user error: non-zero exit, one paragraph on stderr, no traceback, and `words` in it."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, f"exit status 0 for a user error; stderr: {err!r}"
    assert "Traceback" not in err, err
    assert err and "\n\n" not in err and len(err.splitlines()) <= 3, f"not one paragraph:\n{err}"
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    return err


def model_weights(path):
    """The model arrays of a checkpoint (a run folder or a .npz file); load() checks the checksum."""
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.npz")
    arrays, meta = engine_io.load(str(path))
    return {k: v for k, v in arrays.items() if k.startswith("model/")}, meta


def assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
