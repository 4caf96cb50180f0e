"""Interrupted runs: SIGINT/SIGTERM checkpoint and exact resume, SIGKILL during a checkpoint write, corrupt files."""
import random
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from engine import io as engine_io
from tests.reliability._cli import (ROOT, assert_same_weights, assert_user_error, child_env, model_weights,
                                    start_train, train)

# 3 epochs of 150 steps (~0.25 s each): a signal sent when epoch 1 ends lands inside epoch 2
RUN = ["--task", "adding", "--seq-len", "6", "--hidden", "8", "--batch-size", "8", "--steps", "150",
       "--epochs", "3", "--no-progress", "--log-every", "0", "--eval-batch-size", "1000", "--seed", "3"]
TOTAL_STEPS = 3 * 150


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = train(*RUN, "--out", out)
    assert proc.returncode == 0, proc.stderr
    arrays, meta = engine_io.load(str(out / "checkpoint.npz"))
    return arrays, meta


def _interrupt(out, signum):
    """Start the run, send `signum` once the first epoch is logged; the finished process."""
    proc = start_train(*RUN, "--out", out)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("train epoch 1/"):
                break
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_checkpoint_and_resume_is_exact(tmp_path, uninterrupted, signum, status):
    out = tmp_path / "run"
    code, err = _interrupt(out, signum)
    assert code == status, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err and "--resume" in err, err
    _, meta = model_weights(out)                    # loads and passes its checksum
    assert 0 < meta["global_step"] < TOTAL_STEPS, "the signal did not land mid-run"
    resumed = train("--resume", out, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    arrays, meta = engine_io.load(str(out / "checkpoint.npz"))
    whole, whole_meta = uninterrupted
    assert meta["global_step"] == whole_meta["global_step"] == TOTAL_STEPS
    assert_same_weights(arrays, whole)              # model and optimizer state, bit for bit


@pytest.mark.parametrize("gap", [0.002, 0.05, 0.3])
def test_second_sigint_aborts_cleanly(tmp_path, gap):
    """Ctrl-C twice: exit 130 without a traceback, whether the second one lands before the interrupt
    checkpoint is written (abort), after it (ignored while the process exits), or during shutdown."""
    out = tmp_path / "run"
    proc = start_train(*RUN, "--out", out)
    try:
        while True:
            line = proc.stdout.readline()
            if not line or line.startswith("train epoch 1/"):
                break
        time.sleep(0.1)                             # the epoch-1 checkpoint is written by now
        proc.send_signal(signal.SIGINT)
        time.sleep(gap)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and ("aborted" in err or "--resume" in err), err
    _, meta = model_weights(out)                    # the epoch-1 (or the interrupt) checkpoint is intact
    assert 150 <= meta["global_step"] < TOTAL_STEPS
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")], "an aborted save left its temp file"


def test_sigkill_during_checkpoint_writes_never_corrupts(tmp_path):
    """SIGKILL a child that rewrites a 12 MB checkpoint in a loop, at random moments, at least six
    times and until one kill has landed mid-write (at most 30: kill timing is luck, and six tries
    alone missed every write now and then on a loaded machine)."""
    path = tmp_path / "ckpt.npz"
    rng = random.Random()
    mid_write = 0
    last = -1
    attempts = 0
    while attempts < 30 and (attempts < 6 or not mid_write):
        attempts += 1
        child = subprocess.Popen([sys.executable, "-m", "tests.reliability._checkpoint_writer", str(path), "12"],
                                 cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().startswith("saved"), "the writer did not start"
            time.sleep(rng.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        mid_write += bool(leftovers)
        arrays, meta = engine_io.load(str(path))    # raises on a torn or corrupted file
        i = meta["iteration"]
        assert i >= 0 and (arrays["weight"] == float(i)).all()
        np.testing.assert_array_equal(arrays["index"], np.arange(1000) + i)
        for p in leftovers:                         # a killed writer leaves its temporary file behind
            p.unlink()
        last = i
    assert last >= 0
    assert mid_write >= 1, "no kill landed during a write; the test did not exercise what it claims"


def _saved(tmp_path):
    path = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    engine_io.save(str(path), {"w": rng.standard_normal((64, 64)), "b": np.arange(10)}, {"epoch": 2})
    return path


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint_is_detected(tmp_path, fraction):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match="truncated or corrupted|not a compactnet") as info:
        engine_io.load(str(path))
    assert str(path) in str(info.value)


def test_flipped_byte_is_detected(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    for offset in (200, len(data) // 3, len(data) // 2):
        bad = bytearray(data)
        bad[offset] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="corrupted|not a compactnet|format"):
            engine_io.load(str(path))


def test_checksum_catches_a_well_formed_but_altered_file(tmp_path):
    """A valid zip whose array was changed after saving: only the SHA-256 in the metadata can tell."""
    path = _saved(tmp_path)
    altered = tmp_path / "altered.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(altered, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "w.npy":
                body = body[:-8] + np.float64(1.0).tobytes()       # change the last value only
            dst.writestr(item, body)
    with pytest.raises(ValueError, match="checksum"):
        engine_io.load(str(altered))


def test_resume_from_truncated_checkpoint_is_a_user_error(tmp_path):
    out = tmp_path / "run"
    proc = train(*RUN, "--steps", "2", "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    ckpt = out / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:len(data) // 2])
    assert_user_error(train("--resume", out), "checkpoint.npz", "truncated or corrupted")
