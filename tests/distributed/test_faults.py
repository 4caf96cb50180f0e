"""Faults under mpiexec: an exception on one rank ends the job promptly with its message; a SIGKILLed rank
makes the job exit non-zero within seconds with the last checkpoint intact; set-up errors are reported once."""
import os
import signal
import subprocess
import sys
import time

import pytest

from engine import io as engine_io
from tests.distributed._mpi import GRU_FLAGS, ROOT, environment, mpiexec, rank_process, requires_mpi, \
    train_command
from training import distributed
from training.errors import UserError

FAST = {"COMPACTNET_DISABLE_NUMBA": "1"}


@requires_mpi
def test_an_exception_on_one_rank_ends_the_job_promptly_with_its_message(tmp_path):
    started = time.monotonic()
    result = mpiexec(2, "tests/distributed/_failing_rank.py", *GRU_FLAGS, "--epochs", "1", "--steps", "200",
                     "--out", tmp_path / "run", env=FAST, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in result.stderr
    assert "rank 1 of 2 failed" in result.stderr
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end"   # 200 steps would not finish in that time


@requires_mpi
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process id in /proc")
def test_a_killed_rank_ends_the_job_within_seconds_and_the_checkpoint_stays(tmp_path):
    out = tmp_path / "run"
    job = subprocess.Popen(train_command(2, *GRU_FLAGS, "--epochs", "1000", "--steps", "3", "--out", out),
                           cwd=ROOT, env=environment(FAST), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        assert (out / "checkpoint.npz").exists(), "no checkpoint was written"
        os.kill(rank_process(job.pid, 1), signal.SIGKILL)
        killed = time.monotonic()
        job.wait(timeout=30)
        elapsed = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert elapsed < 10, f"the job took {elapsed:.1f} s to end after the kill"
    arrays, meta = engine_io.load(out / "checkpoint.npz")   # intact: written atomically by rank 0
    assert meta["epoch"] >= 1 and any(key.startswith("model/") for key in arrays)


@requires_mpi
def test_a_batch_that_the_ranks_cannot_share_is_one_clear_error(tmp_path):
    result = subprocess.run(train_command(2, *GRU_FLAGS, "--batch-size", "7", "--out", tmp_path / "run"),
                            cwd=ROOT, env=environment(FAST), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("--batch-size 7 is the global batch") == 1, result.stderr


def test_asking_for_mpi_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)     # import mpi4py now fails
    with pytest.raises(UserError, match="extra 'mpi'") as caught:
        distributed.start("mpi")
    assert "\n" not in str(caught.value)


def test_auto_outside_an_mpi_launcher_is_one_process(monkeypatch):
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                 "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.start("auto").size == 1
    assert not distributed.start("none").active
