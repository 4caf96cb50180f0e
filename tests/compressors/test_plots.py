"""compressors.plots: each plot writes a PNG into the run folder; without matplotlib they skip with a message."""
import builtins
import csv
import importlib
import importlib.util

import numpy as np
import pytest

import engine
from layers.models import lenet300, lenet5, sequence_model
from compressors.checkpoints import save_model

plots = importlib.import_module("compressors.plots")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed (pip install 'compactnet[plot]')")
PNG = b"\x89PNG\r\n\x1a\n"


def compressor(name):
    try:
        return importlib.import_module(f"compressors.{name}")
    except ImportError as e:
        pytest.skip(f"compressors.{name} is not available ({e})")


def assert_png(path):
    assert path is not None
    with open(path, "rb") as fh:
        head = fh.read(8)
    assert head == PNG, f"{path} is not a PNG"


def write_log(run_dir, rows=4):
    with open(run_dir / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["phase", "epoch", "step", "train_loss", "extra_loss", "test_loss", "metric"])
        writer.writeheader()
        for i in range(rows):
            writer.writerow({"phase": "train" if i < rows - 1 else "finetune", "epoch": i + 1,
                             "step": 10 * (i + 1), "train_loss": 1.0 / (i + 1), "extra_loss": 0.1 * i,
                             "test_loss": 1.2 / (i + 1), "metric": 0.5 + 0.1 * i})


@needs_matplotlib
def test_training_curves(tmp_path):
    write_log(tmp_path)
    assert_png(plots.plot_training_curves(str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="no log"):
        plots.plot_training_curves(str(tmp_path / "nowhere"))


def test_frequency_response_and_energy_curve_values():
    w, h = plots.frequency_response([1 / np.sqrt(2), 1 / np.sqrt(2)], points=5)
    np.testing.assert_allclose(h, np.sqrt(2) * np.abs(np.cos(w / 2)), atol=1e-12)   # Haar low-pass
    np.testing.assert_allclose(plots.energy_curve([3.0, 4.0]), [9 / 25, 1.0])


def test_effective_matrix_of_factored_layers_equals_the_original_at_full_rank():
    lowrank = compressor("lowrank")
    engine.manual_seed(0)
    model = lenet5()
    original = plots.effective_matrix(model[2], "spatial")
    lowrank.truncate(model, rank=min(original.shape), layers=["2"], conv_reshape="spatial",
                     keep_if_larger=False)
    np.testing.assert_allclose(plots.effective_matrix(model[2]), original, atol=1e-5)


@needs_matplotlib
def test_wavelet_filters_plot(tmp_path):
    wavelet = compressor("wavelet")
    engine.manual_seed(0)
    model = sequence_model(kind="gru", n_in=2, hidden=16)
    wavelet.compress_recurrent(model, "state", levels=2, filter_length=4, init="db2")
    assert_png(plots.plot_wavelet_filters(model, str(tmp_path)))
    with pytest.raises(ValueError, match="no WaveletLinear"):
        plots.plot_wavelet_filters(lenet300(), str(tmp_path))


@needs_matplotlib
def test_tucker_and_basis_plots(tmp_path):
    tucker, basis = compressor("tucker"), compressor("basis")
    engine.manual_seed(0)
    model = lenet300()
    tucker.compress(model, ratio=30)
    assert_png(plots.plot_tucker_cores(model, str(tmp_path)))
    cnn = lenet5()
    basis.compress(cnn, energy=0.8)
    assert_png(plots.plot_basis_energy(cnn, str(tmp_path)))


@needs_matplotlib
def test_plot_run_uses_the_checkpoint_and_the_dense_weights(tmp_path):
    lowrank = compressor("lowrank")
    engine.manual_seed(0)
    model = lenet300(n_in=64)
    arch = ("lenet300", {"n_in": 64})
    save_model(str(tmp_path / "trained.npz"), model, arch=arch)    # dense, before truncation
    lowrank.truncate(model, rank=8)
    save_model(str(tmp_path / "checkpoint.npz"), model, arch=arch)
    write_log(tmp_path)
    written = plots.plot_run(str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["lowrank_spectra.png", "training_curves.png"]
    for p in written:
        assert_png(p)


def test_without_matplotlib_every_plot_skips_with_a_message(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    write_log(tmp_path)
    assert plots.plot_training_curves(str(tmp_path)) is None
    assert plots.plot_run(str(tmp_path)) == []
    err = capsys.readouterr().err
    assert "matplotlib is not installed" in err and "skipped the training curves" in err
    assert not (tmp_path / "training_curves.png").exists()
