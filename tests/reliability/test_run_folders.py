"""Run folders (issue 18): never overwritten without --overwrite, locked while a run writes them, resume locks."""
import os
import socket

import pytest

from engine import io as engine_io
from tests.reliability._cli import TINY, assert_user_error, train
from training.run_folder import LOCK_NAME, create_unique


def _run(out, *extra):
    proc = train(*TINY, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_existing_run_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    _run(out)
    before = (out / "checkpoint.npz").read_bytes()
    proc = train(*TINY, "--out", out, "--seed", "5")
    assert proc.returncode == 2
    assert_user_error(proc, str(out), "not empty", "--overwrite", "--resume")
    assert (out / "checkpoint.npz").read_bytes() == before


def test_non_empty_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = train(*TINY, "--out", tmp_path)
    assert proc.returncode == 2
    assert_user_error(proc, "notes.txt", "not empty")


def test_overwrite_clears_only_our_files(tmp_path):
    out = tmp_path / "run"
    _run(out, "--quantize-bits", "8")
    assert (out / "quantized.npz").exists()
    (out / "notes.txt").write_text("mine")
    _run(out, "--overwrite")
    assert not (out / "quantized.npz").exists(), "the old run's quantized.npz stayed beside the new run"
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / LOCK_NAME).exists(), "the lock outlived the run"


def test_live_lock_stops_a_second_run_and_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    _run(out)
    (out / LOCK_NAME).write_text(f"{os.getpid()} {socket.gethostname()}\n")    # this test process: alive
    proc = train(*TINY, "--out", out, "--resume", out, "--epochs", "2")
    assert proc.returncode == 2
    assert_user_error(proc, "another run", str(os.getpid()), LOCK_NAME)
    dead = _dead_pid()
    (out / LOCK_NAME).write_text(f"{dead} {socket.gethostname()}\n")
    proc = train(*TINY, "--resume", out, "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(engine_io.load(str(out / "checkpoint.npz"))[1]["history"]) == 2
    assert not (out / LOCK_NAME).exists()


def _dead_pid():
    """A pid that no live process has (a child that has exited and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_overwrite_refuses_to_clear_the_run_being_resumed(tmp_path):
    out = tmp_path / "run"
    _run(out)
    proc = train(*TINY, "--resume", out, "--overwrite", "--epochs", "2")
    assert proc.returncode == 2
    assert_user_error(proc, "--overwrite", "--resume")
    assert (out / "checkpoint.npz").exists()


def test_default_names_never_collide(tmp_path):
    base = str(tmp_path / "runs" / "adding-gru-none-20260101-000000")
    made = [create_unique(base) for _ in range(3)]
    assert made == [base, base + "-2", base + "-3"]
    assert all(os.path.isdir(p) and not os.listdir(p) for p in made)


def test_out_that_is_a_file(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    proc = train(*TINY, "--out", target)
    assert proc.returncode == 2
    assert_user_error(proc, str(target), "not a folder")
    proc = train(*TINY, "--out", target / "run")          # a folder that cannot be made
    assert proc.returncode == 2
    assert_user_error(proc, str(target / "run"), "cannot create")


def test_out_that_is_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write any folder (root): no unwritable folder to test")
        proc = train(*TINY, "--out", locked / "run")
        assert proc.returncode == 2
        assert_user_error(proc, str(locked / "run"))
    finally:
        locked.chmod(0o700)


def test_locked_settings_from_config_are_checked_on_resume(tmp_path):
    out = tmp_path / "run"
    _run(out)
    config = tmp_path / "change.toml"
    config.write_text("lr = 0.5\n")       # the saved run used the adding recipe's 0.01
    proc = train(*TINY, "--resume", out, "--config", config, "--epochs", "2")
    assert proc.returncode == 2
    assert_user_error(proc, "--lr", "--config", "cannot change on resume")
    same = tmp_path / "same.toml"
    same.write_text("lr = 0.01\n")
    proc = train(*TINY, "--resume", out, "--config", same, "--epochs", "2")
    assert proc.returncode == 0, proc.stderr


def test_thread_count_recorded_and_restored(tmp_path):
    out = tmp_path / "run"
    _run(out, "--threads", "2")
    assert engine_io.load(str(out / "checkpoint.npz"))[1]["threads"] == 2
    proc = train(*TINY, "--resume", out, "--epochs", "2")       # the child's environment says 1 thread
    assert proc.returncode == 0, proc.stderr
    assert "resuming with 2 threads" in proc.stderr
    assert engine_io.load(str(out / "checkpoint.npz"))[1]["threads"] == 2
    proc = train(*TINY, "--resume", out, "--epochs", "3", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "not be bit-exact" in proc.stderr
    assert engine_io.load(str(out / "checkpoint.npz"))[1]["threads"] == 1
