"""Issue 18: one error path (exit 2, one line naming the file), config.toml round trips, finite epochs, divergence."""
import os
import resource
import subprocess
import sys

import numpy as np

from engine import io as engine_io
from layers.models import lenet300
from layers.serialization import save_model
from tests.reliability._cli import ROOT, TINY, assert_user_error, child_env, model_weights, train
from training.argconfig import write_toml
from training.options import parse_args


def test_config_that_is_a_folder_or_binary(tmp_path):
    proc = train(*TINY, "--config", tmp_path, "--out", tmp_path / "a")
    assert proc.returncode == 2
    assert_user_error(proc, str(tmp_path), "cannot read")
    binary = tmp_path / "config.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    proc = train(*TINY, "--config", binary, "--out", tmp_path / "b")
    assert proc.returncode == 2
    assert_user_error(proc, str(binary))


def _limited_run(limit, *args):
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)


def test_file_size_limit_while_writing_keeps_the_previous_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert train(*TINY, "--out", out).returncode == 0
    before = (out / "checkpoint.npz").read_bytes()
    proc = _limited_run(len(before) // 2, *TINY, "--resume", out, "--epochs", "2")
    assert proc.returncode == 2
    assert_user_error(proc, "cannot read or write", str(out))
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]


def test_memory_error_from_huge_sizes(tmp_path):
    proc = train(*TINY, "--hidden", str(10 ** 6), "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert_user_error(proc, "out of memory", "--hidden")


def test_resume_from_a_model_file_that_is_not_a_run_checkpoint(tmp_path):
    path = save_model(str(tmp_path / "model.npz"), lenet300(), arch="lenet300")
    proc = train(*TINY, "--resume", path)
    assert proc.returncode == 2
    assert_user_error(proc, "--resume", path, "not a train.py run checkpoint")


def test_config_with_undecodable_path_loads_back(tmp_path):
    folder = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"data-\xff\xfe"))
    config = tmp_path / "config.toml"
    write_toml(str(config), {"data_dir": folder, "task": "adding"})
    args = parse_args(["--config", str(config)])
    assert args.data_dir == folder


# epoch 1 at lr 0.01, then lr 1e28 for epoch 2's one step: the loss of that step is finite (the weights of
# epoch 1), the evaluation after it is not
NONFINITE_EVAL = [*TINY, "--steps", "1", "--epochs", "3", "--optimizer", "sgd", "--lr", "0.01",
                  "--clip-grad", "1e30", "--lr-schedule", "step", "--lr-step", "1", "--lr-gamma", "1e30"]


def test_nonfinite_evaluation_never_becomes_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = train(*NONFINITE_EVAL, "--out", out)
    assert proc.returncode == 3, proc.stderr
    assert "loss became" in proc.stderr and "after train epoch 2" in proc.stderr, proc.stderr
    weights, meta = model_weights(out)
    assert meta["epoch"] == 1
    assert all(np.isfinite(row["test_loss"]) for row in meta["history"])
    assert all(np.isfinite(v).all() for v in weights.values())


def test_divergence_without_nan_stops_with_exit_3(tmp_path):
    for extra in ([], ["--compress", "lowrank"]):
        proc = train(*TINY, "--steps", "20", "--optimizer", "adam", "--lr", "1e6", "--diverge-patience", "10",
                     "--out", tmp_path / f"run{len(extra)}", *extra)
        assert proc.returncode == 3, proc.stderr
        assert "diverged" in proc.stderr and "--diverge-factor" in proc.stderr and "Traceback" not in proc.stderr


def test_divergence_check_can_be_turned_off(tmp_path):
    proc = train(*TINY, "--steps", "20", "--optimizer", "adam", "--lr", "1e6", "--diverge-patience", "10",
                 "--diverge-factor", "0", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert engine_io.load(str(tmp_path / "run" / "checkpoint.npz"))[1]["divergence"]["start"] > 0
