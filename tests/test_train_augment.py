"""Tests of train.py's --augment-shift: the random image shift and its use in a run."""
import json

import numpy as np
import pytest

import train
from tasks.augment import random_shift
from tests.test_train_distill import mnist_run, tiny_mnist


def test_random_shift_moves_each_image_and_fills_with_its_background():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 2, 7, 9)).astype(np.float32)
    moved = random_shift(images, 2, np.random.default_rng(1))
    shifts = np.random.default_rng(1).integers(-2, 3, size=(6, 2))
    assert moved.shape == images.shape and moved.dtype == images.dtype
    for b, (dy, dx) in enumerate(shifts):
        expected = np.full(images.shape[1:], images[b].min(), dtype=images.dtype)
        for y in range(7):
            for x in range(9):
                if 0 <= y + dy < 7 and 0 <= x + dx < 9:
                    expected[:, y + dy, x + dx] = images[b, :, y, x]
        np.testing.assert_array_equal(moved[b], expected)
    assert not np.array_equal(moved, images)
    np.testing.assert_array_equal(random_shift(images, 0, rng), images)


def test_random_shift_rejects_bad_input():
    with pytest.raises(ValueError, match=r"random_shift: expected image batches \(B, C, H, W\)"):
        random_shift(np.zeros((3, 28 * 28)), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        random_shift(np.zeros((1, 1, 4, 4)), -1, np.random.default_rng(0))


def test_augmented_run_differs_and_repeats(tmp_path):
    tiny_mnist(tmp_path / "mnist")
    losses = []
    for name, extra in [("plain", []), ("shift_a", ["--augment-shift", "2"]), ("shift_b", ["--augment-shift", "2"])]:
        code, out = mnist_run(tmp_path, name, *extra)
        assert code == 0
        losses.append(json.loads((out / "metrics.json").read_text())["history"][-1]["train_loss"])
    assert losses[1] != losses[0]          # the shifts change what is trained on
    assert losses[1] == losses[2]          # and are drawn from the seed: the run repeats exactly


def test_augment_shift_needs_images(tmp_path, capsys):
    code = train.main(["--task", "adding", "--seq-len", "6", "--hidden", "8", "--batch-size", "8", "--steps", "2",
                       "--epochs", "1", "--no-progress", "--augment-shift", "2", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--augment-shift needs image batches" in err and "Traceback" not in err
