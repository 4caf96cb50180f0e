"""Tests of train.py: outputs, exact resume, config and name errors, signals, NaN stop, progress lines."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import engine
import train
from training import options
from training.loop import Run
from training.signals import SignalGuard
from compressors import plugin
from engine import io as engine_io
from training.progress import progress
from layers import Module, Parameter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the default task, made tiny: 3 steps of 8 sequences of length 6 through a GRU of 8 units
TINY = ["--task", "adding", "--seq-len", "6", "--hidden", "8", "--batch-size", "8", "--steps", "3",
        "--epochs", "2", "--no-progress", "--log-every", "0", "--eval-batch-size", "1000"]
REQUIRED_KEYS = {"task", "model", "compressor", "seed", "device", "epochs", "steps", "seconds",
                 "params", "flops", "metric", "baseline", "compressor_config"}


class Diagonal(Module):
    """A stand-in compressed hidden transform: h * d (H stored values instead of H*H)."""

    def __init__(self, n):
        super().__init__()
        self.weight = Parameter(np.ones(n, dtype=np.float32))

    def forward(self, x):
        return x * self.weight

    def flops(self, inputs, output):
        return output.size


class DiagonalCompressor(plugin.Compressor):
    """Test compressor: replaces every recurrent cell's hh_state by a Diagonal (or fails on request)."""

    name = "diagonal"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--diagonal-size", type=int, default=None,
                            help="must equal the hidden size (anything else cannot be met)")

    def apply(self, model, task):
        for _, module in model.named_modules():
            if hasattr(module, "hh_state"):
                size = self.args.diagonal_size or module.hidden
                if size != module.hidden:
                    raise ValueError(f"DiagonalCompressor: size {size} cannot replace a "
                                     f"{module.hidden}x{module.hidden} matrix")
                module.hh_state = Diagonal(size)
        return model

    def extra_loss(self, model):
        return None

    def finalize(self, model, task):
        """Weight-dependent and structural, like a truncation: halve each diagonal into a new module."""
        for _, module in model.named_modules():
            if isinstance(getattr(module, "hh_state", None), Diagonal):
                halved = Diagonal(module.hidden)
                halved.weight.data = module.hh_state.weight.data * 0.5
                module.hh_state = halved
        return model


@pytest.fixture
def diagonal_registered(monkeypatch):
    monkeypatch.setitem(plugin.REGISTRY, "diagonal", "tests.test_train:DiagonalCompressor")


def run(tmp_path, *extra, name="run"):
    out = tmp_path / name
    code = train.main([*TINY, "--out", str(out), *extra])
    return code, out


def model_arrays(out):
    arrays, meta = engine_io.load(str(out / "checkpoint.npz"))
    return {k: v for k, v in arrays.items() if k.startswith("model/")}, meta


def test_default_run_writes_every_file(tmp_path, capsys):
    code, out = run(tmp_path)
    assert code == 0
    for name in ("metrics.json", "log.csv", "checkpoint.npz", "config.toml", "summary.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(metrics)
    assert metrics["task"] == "adding" and metrics["compressor"] == "none"
    assert metrics["steps"] == 2 * 3 and metrics["epochs"] == 2
    assert metrics["metric"]["name"] == "mse" and metrics["metric"]["split"] == "test"
    assert np.isfinite(metrics["metric"]["value"])
    assert metrics["params"]["dense"] == metrics["params"]["compressed"] > 0
    assert metrics["flops"]["dense"] == metrics["flops"]["compressed"] > 0
    assert metrics["baseline"]["mse"] == pytest.approx(1 / 6)
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("phase,epoch,step,train_loss,extra_loss,test_loss,metric")
    assert len(log) == 1 + 2
    stdout = capsys.readouterr().out
    assert "train epoch 2/2" in stdout and "**total**" in stdout and "trivial baseline" in stdout


def test_resume_mid_epoch_matches_uninterrupted(tmp_path, monkeypatch):
    extra = ["--epochs", "3", "--optimizer", "adam", "--lr-schedule", "step", "--lr-gamma", "0.5"]
    assert run(tmp_path, *extra, name="whole")[0] == 0

    original = Run.train_step

    def interrupting_step(self, *a, **kw):
        result = original(self, *a, **kw)
        if self.global_step == 4:          # (counted after return) step 2 of epoch 2 is done: mid-epoch
            self.guard.received = signal.SIGINT
        return result

    monkeypatch.setattr(Run, "train_step", interrupting_step)
    before = signal.getsignal(signal.SIGINT)
    code, out = run(tmp_path, *extra, name="split")
    assert code == 130
    assert signal.getsignal(signal.SIGINT) is before, "main() left its SIGINT handler installed"
    _, meta = model_arrays(out)
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (1, 2, 5)
    monkeypatch.setattr(Run, "train_step", original)
    assert train.main(["--resume", str(out), "--no-progress"]) == 0

    whole, _ = model_arrays(tmp_path / "whole")
    split, _ = model_arrays(out)
    assert whole.keys() == split.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], split[key], err_msg=key)
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["metric"]["value"] == b["metric"]["value"]


def test_resume_in_finetune_phase(tmp_path, monkeypatch, diagonal_registered):
    extra = ["--compress", "diagonal", "--epochs", "1", "--finetune-epochs", "2", "--optimizer", "rmsprop"]
    assert run(tmp_path, *extra, name="whole")[0] == 0
    original = Run.train_step

    def interrupting_step(self, *a, **kw):
        result = original(self, *a, **kw)
        if self.global_step == 4:          # step 5 = finetune epoch 1, step 2
            self.guard.received = signal.SIGTERM
        return result

    monkeypatch.setattr(Run, "train_step", interrupting_step)
    code, out = run(tmp_path, *extra, name="split")
    assert code == 143
    _, meta = model_arrays(out)
    assert (meta["phase"], meta["epoch"], meta["step_in_epoch"]) == ("finetune", 0, 2)
    monkeypatch.setattr(Run, "train_step", original)
    assert train.main(["--resume", str(out / "checkpoint.npz"), "--no-progress"]) == 0
    whole, _ = model_arrays(tmp_path / "whole")
    split, _ = model_arrays(out)
    for key in whole:
        np.testing.assert_array_equal(whole[key], split[key], err_msg=key)


def test_resume_extends_a_finished_run(tmp_path):
    extra = ["--lr-schedule", "step", "--lr-gamma", "0.5"]
    assert run(tmp_path, *extra, "--epochs", "3", name="whole")[0] == 0
    code, out = run(tmp_path, *extra, "--epochs", "1", name="short")
    assert code == 0
    assert train.main(["--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    whole, _ = model_arrays(tmp_path / "whole")
    longer, meta = model_arrays(out)
    assert meta["global_step"] == 9
    for key in whole:
        np.testing.assert_array_equal(whole[key], longer[key], err_msg=key)


def test_resume_refuses_changed_settings(tmp_path, capsys):
    code, out = run(tmp_path, "--epochs", "1")
    assert code == 0
    assert train.main(["--resume", str(out), "--lr", "0.5"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_config_file_applies_and_round_trips(tmp_path):
    config = tmp_path / "c.toml"
    # a table groups keys: [model] arg = [...] is the key model_arg (--model-arg)
    config.write_text('epochs = 5\nlr = 0.002\nlr-schedule = "step"\n[model]\narg = ["hh_bias=true"]\n')
    at = TINY.index("--batch-size")
    argv = TINY[:at] + TINY[at + 2:] + ["--epochs", "1", "--config", str(config)]
    assert train.main([*argv, "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["lr"] == 0.002 and metrics["batch_size"] == options.RECIPES["adding"]["batch_size"]
    assert metrics["epochs"] == 1                      # the command line wins over the file
    written = (tmp_path / "run" / "config.toml").read_text()
    assert 'lr_schedule = "step"' in written and 'model_arg = ["hh_bias=true"]' in written
    assert metrics["model_kwargs"]["hh_bias"] is True
    # the written config.toml reproduces the run
    assert train.main(["--config", str(tmp_path / "run" / "config.toml"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["metric"]["value"] == metrics["metric"]["value"]


@pytest.mark.parametrize("text, expected", [
    ("epochz = 3\n", "unknown key 'epochz'"),
    ('epochs = "three"\n', "'epochs' must be an integer"),
    ("lr = true\n", "'lr' must be a single number"),
    ('optimizer = "adamw"\n', "must be one of"),
    ("epochs = [\n", "not valid TOML"),
])
def test_config_errors(tmp_path, capsys, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert train.main(["--config", str(config), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("flag, name, listed", [
    ("--task", "nope", "adding"),
    ("--model", "nope", "lenet300"),
    ("--compress", "nope", "wavelet"),
])
def test_unknown_names_list_valid_ones(tmp_path, capsys, flag, name, listed):
    code, _ = run(tmp_path, flag, name)
    assert code == 2
    err = capsys.readouterr().err
    assert name in err and listed in err and "Traceback" not in err


def test_missing_data_dir_names_files(tmp_path, capsys):
    code = train.main(["--task", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "train-images" in capsys.readouterr().err


def test_model_that_does_not_fit_the_task(tmp_path, capsys):
    code, _ = run(tmp_path, "--model", "lenet300")          # TINY passes --hidden explicitly
    assert code == 2
    assert "takes no option --hidden" in capsys.readouterr().err
    code = train.main(["--model", "lenet300", "--epochs", "1", "--out", str(tmp_path / "y")])
    assert code == 2                                       # the recipe's hidden size is just not used
    err = capsys.readouterr().err
    assert "does not fit" in err and "Traceback" not in err


def test_compressed_run_ratio(tmp_path, diagonal_registered):
    code, out = run(tmp_path, "--compress", "diagonal")
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    hidden = 8
    assert m["params"]["dense"] - m["params"]["compressed"] == hidden * hidden - hidden
    assert m["params"]["ratio"] == m["params"]["dense"] / m["params"]["compressed"]
    assert m["flops"]["compressed"] < m["flops"]["dense"]
    # dense params equal those of the same model trained without compression
    code, plain = run(tmp_path, name="plain")
    assert json.loads((plain / "metrics.json").read_text())["params"]["compressed"] == m["params"]["dense"]


def test_init_from_loads_dense_weights_before_compressing(tmp_path, capsys, diagonal_registered):
    code, dense = run(tmp_path, "--seed", "1", name="dense")
    assert code == 0
    code, out = run(tmp_path, "--compress", "diagonal", "--epochs", "0",
                    "--init-from", str(dense / "checkpoint.npz"), name="init")
    assert code == 0
    trained, _ = model_arrays(dense)
    started, _ = model_arrays(out)
    kept = [k for k in trained if "hh_state" not in k]          # everything the compressor did not replace
    assert kept and all(np.array_equal(trained[k], started[k]) for k in kept)
    assert "model/rnn.cells.0.hh_state.weight" in started
    code, _ = run(tmp_path, "--hidden", "4", "--init-from", str(dense), name="wrong")
    assert code == 2
    assert "--init-from" in capsys.readouterr().err


def test_impossible_compression_option(tmp_path, capsys, diagonal_registered):
    code, _ = run(tmp_path, "--compress", "diagonal", "--diagonal-size", "5")
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot replace" in err and "Traceback" not in err


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, capsys, monkeypatch):
    import tasks.adding
    original = tasks.adding.AddingTask.loss
    calls = {"n": 0}

    def poisoned(self, output, targets):
        calls["n"] += engine.is_grad_enabled()        # training steps only, not train.py's fit check
        loss = original(self, output, targets)
        return loss * float("nan") if calls["n"] == 5 else loss   # step 2 of epoch 2

    monkeypatch.setattr(tasks.adding.AddingTask, "loss", poisoned)
    code, out = run(tmp_path)
    assert code == 3
    err = capsys.readouterr().err
    assert "epoch 2, step 2" in err
    _, meta = model_arrays(out)           # the epoch-1 checkpoint is intact and loadable
    assert meta["epoch"] == 1 and meta["phase"] == "train"


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_huge_lr_stops(tmp_path, capsys):
    code, _ = run(tmp_path, "--optimizer", "sgd", "--lr", "1e30", "--clip-grad", "1e30")
    assert code == 3
    assert "became" in capsys.readouterr().err


def test_sigint_saves_resumable_checkpoint(tmp_path):
    out = tmp_path / "sig"
    args = [*TINY, "--epochs", "400", "--log-every", "1", "--lr-schedule", "step", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            if "train epoch" in line or not line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    _, meta = model_arrays(out)
    assert meta["global_step"] >= 1
    done = meta["epoch"] + 1
    # resuming to a nearby end gives exactly the weights of an uninterrupted run of that length
    assert train.main(["--resume", str(out), "--epochs", str(done), "--no-progress"]) == 0
    code, whole = run(tmp_path, "--epochs", str(done), "--lr-schedule", "step", name="whole")
    assert code == 0
    a, _ = model_arrays(out)
    b, _ = model_arrays(whole)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_detect_anomaly_names_op(tmp_path, capsys):
    code, _ = run(tmp_path, "--optimizer", "sgd", "--lr", "1e30", "--clip-grad", "1e30", "--detect-anomaly")
    assert code == 3
    assert "detect_anomaly" in capsys.readouterr().err


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_and_bar():
    stream = io.StringIO()
    bar = progress(4, "ep", enabled=True, every=2, stream=stream)   # not a TTY: plain lines
    for _ in range(4):
        bar.update(1, "loss 1")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("ep 4/4") and "it/s" in lines[-1] and "eta" in lines[-1]
    tty = FakeTTY()
    bar = progress(3, "ep", enabled=True, stream=tty, use_tqdm=False)   # the built-in bar
    for _ in range(3):
        bar.update(1, "loss 2")
    bar.close()
    drawn = tty.getvalue().split("\r")[-1]
    assert "3/3" in drawn and "it/s" in drawn and "loss 2" in drawn and "#" * 24 in drawn
    quiet = io.StringIO()
    bar = progress(3, "ep", enabled=False, every=0, stream=quiet)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


@pytest.mark.skipif(engine.backend.gpu_available(), reason="a GPU is present: --device gpu would work")
def test_gpu_without_cupy_is_a_user_error(tmp_path, capsys):
    code, _ = run(tmp_path, "--device", "gpu")
    assert code == 2
    assert "CuPy" in capsys.readouterr().err


def test_help_and_usage_errors(capsys):
    assert train.main(["--help"]) == 0
    assert "--wavelet" in capsys.readouterr().out or plugin.available() == ["none"]
    assert train.main(["--epochs", "-1"]) == 2          # argparse's own check, exit 2
    assert "--epochs" in capsys.readouterr().err


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _have_matplotlib(), reason="matplotlib (extra 'plot') not installed")
def test_plot_writes_curves(tmp_path):
    code, out = run(tmp_path, "--plot")
    assert code == 0
    assert (out / "training_curves.png").stat().st_size > 1000


def test_signal_guard_ignores_signals_once_exiting_and_restores_handlers():
    """A late repeat signal (after the interrupt checkpoint is saved) must not raise: exit stays clean."""
    before = signal.getsignal(signal.SIGINT)
    guard = SignalGuard()
    with guard:
        assert signal.getsignal(signal.SIGINT) == guard._handle
        guard._handle(signal.SIGINT, None)                  # first: remembered
        assert guard.received == signal.SIGINT
    assert guard.exiting and signal.getsignal(signal.SIGINT) == guard._handle
    guard._handle(signal.SIGINT, None)                      # late repeat: ignored, no KeyboardInterrupt
    guard.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_signal_guard_ignores_signals_while_the_process_ends():
    """train.py as a process: after an interrupt exit, repeats are ignored through interpreter shutdown."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    guard = SignalGuard()
    try:
        with guard:
            guard._handle(signal.SIGTERM, None)
        guard.restore(process_ending=True)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_signal_guard_second_signal_aborts_while_running():
    guard = SignalGuard()
    with pytest.raises(KeyboardInterrupt):
        with guard:
            guard._handle(signal.SIGINT, None)
            guard._handle(signal.SIGINT, None)
    guard.restore()
    assert guard.exiting


def test_signal_guard_restores_handlers_when_no_signal_came():
    before = signal.getsignal(signal.SIGTERM)
    with SignalGuard():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_abort_that_a_library_cleanup_turns_into_its_own_error_still_exits_130(tmp_path, monkeypatch, capsys):
    """A second Ctrl-C landing inside a library's cleanup code can surface as that library's error with
    the KeyboardInterrupt as its context (np.savez closing a zip entry did, in CI): still an abort."""
    from training import loop

    def execute(self):
        try:
            raise KeyboardInterrupt
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it")

    monkeypatch.setattr(loop.Run, "execute", execute)
    assert train.main([*TINY, "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "aborted" in err, err
