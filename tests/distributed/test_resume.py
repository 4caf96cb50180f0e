"""Ctrl-C on mpiexec saves one checkpoint and exits 130; a run resumes under MPI and with another number of
processes, and ends with the parameters of an uninterrupted single-process run."""
import json
import signal
import subprocess
import time

import numpy as np
import pytest

import train
from engine import io as engine_io
from tests.distributed._mpi import GRU_FLAGS, ROOT, environment, requires_mpi, train_command

pytestmark = requires_mpi
FAST = {"COMPACTNET_DISABLE_NUMBA": "1"}
RUN = [*GRU_FLAGS, "--epochs", "3", "--steps", "30", "--dtype", "float64", "--lr-schedule", "none"]


def model_arrays(folder):
    arrays, _ = engine_io.load(folder / "checkpoint.npz")
    return {k: v for k, v in arrays.items() if k.startswith("model/")}


def max_relative_difference(folder, reference):
    got, want = model_arrays(folder), model_arrays(reference)
    assert set(got) == set(want)
    worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    return worst / max(float(np.max(np.abs(v))) for v in want.values())


def interrupted(processes, out):
    """Start `train.py RUN` (under mpiexec when processes > 1), Ctrl-C it once its first epoch is saved."""
    job = subprocess.Popen(train_command(processes if processes > 1 else 0, *RUN, "--out", out), cwd=ROOT,
                           env=environment(FAST), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.02)
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    return job.returncode, err


def resumed(processes, out):
    return subprocess.run(train_command(processes if processes > 1 else 0, "--resume", out, "--distributed",
                                        "mpi" if processes > 1 else "none"),
                          cwd=ROOT, env=environment(FAST), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
        assert train.main([*RUN, "--distributed", "none", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_interrupt_saves_once_and_resume_with_another_process_count_matches(tmp_path, uninterrupted, first,
                                                                             then):
    out = tmp_path / "run"
    status, err = interrupted(first, out)
    assert status == 130, err
    assert err.count("resumable checkpoint saved") == 1, err
    _, meta = engine_io.load(out / "checkpoint.npz")
    assert meta["global_step"] < 90, "the interrupt came after training ended"
    result = resumed(then, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["world_size"] == then
    assert max_relative_difference(out, uninterrupted) <= 1e-10
