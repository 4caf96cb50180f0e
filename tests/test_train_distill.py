"""Tests of train.py's knowledge distillation: --distill-from runs and their checks (the loss: tests/engine)."""
import json

import numpy as np
import pytest

import train
from training import options
from tasks import mnist
from tasks.idx import write_idx


def tiny_mnist(folder, seed=0):
    """A fake MNIST folder: 32 training and 16 test images of random pixels."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, size=(32, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(32) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, size=(16, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, size=16, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in mnist.FILES.items():
        write_idx(folder / stem, arrays[key], compress=False)
    return folder


def mnist_run(tmp_path, name, *extra, model="lenet300"):
    out = tmp_path / name
    code = train.main(["--task", "mnist", "--data-dir", str(tmp_path / "mnist"), "--model", model,
                       "--epochs", "1", "--batch-size", "8", "--no-progress", "--log-every", "0",
                       "--out", str(out), *extra])
    return code, out


def test_distill_alpha_outside_0_1_is_a_usage_error():
    with pytest.raises(SystemExit):
        options.parse_args(["--distill-alpha", "2"])


def test_distill_from_a_dense_run_trains_and_is_recorded(tmp_path, capsys):
    tiny_mnist(tmp_path / "mnist")
    code, teacher = mnist_run(tmp_path, "teacher")
    assert code == 0
    code, student = mnist_run(tmp_path, "student", "--compress", "tucker", "--tucker-ranks", "2",
                              "--tucker-order", "3", "--distill-from", str(teacher), "--distill-alpha", "0.8")
    assert code == 0
    command = json.loads((student / "metrics.json").read_text())["command"]
    assert "--distill-from" in command
    code, plain = mnist_run(tmp_path, "plain", "--compress", "tucker", "--tucker-ranks", "2", "--tucker-order", "3")
    assert code == 0
    # same init and batches, different objective: the trained students differ
    student_loss = json.loads((student / "metrics.json").read_text())["test"]["loss"]
    plain_loss = json.loads((plain / "metrics.json").read_text())["test"]["loss"]
    assert student_loss != plain_loss


def test_missing_or_incompatible_teacher_is_a_clear_error(tmp_path, capsys):
    tiny_mnist(tmp_path / "mnist")
    code, _ = mnist_run(tmp_path, "a", "--distill-from", str(tmp_path / "nowhere"))
    assert code == 2
    err = capsys.readouterr().err
    assert "--distill-from" in err and "Traceback" not in err
    code, compressed = mnist_run(tmp_path, "compressed", "--compress", "tucker", "--tucker-ranks", "2",
                                 "--tucker-order", "3")
    assert code == 0
    capsys.readouterr()
    code, _ = mnist_run(tmp_path, "b", "--distill-from", str(compressed))
    assert code == 2
    assert "must be a dense run" in capsys.readouterr().err
    code, dense300 = mnist_run(tmp_path, "dense300")
    assert code == 0
    capsys.readouterr()
    code, _ = mnist_run(tmp_path, "c", "--distill-from", str(dense300), model="lenet5")
    assert code == 2
    assert "--model lenet300 run" in capsys.readouterr().err
