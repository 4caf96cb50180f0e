"""A new user's first runs: every compressor with no compressor flags, on the default model of every task,
either compresses (whole-network ratio > 1 against the dense model it came from) or says it does not apply."""
import json
import re

import pytest

import tasks
import train
from compressors import checkpoints, plugin
from layers import Conv2d, Dense
from layers.recurrent import GRUCell, LSTMCell

from .tiny_data import SHORT, STEPS, data_flags

METHODS = [name for name in plugin.REGISTRY if name != "none"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_flags(tmp_path_factory.mktemp("tiny_data"))


def default_model(task, flags):
    """(name, the task's default model at its constructor's default sizes): its layer kinds."""
    options = {"mnist": {"data_dir": flags[1]} if flags else {}, "text": {"data_file": flags[1]} if flags else {},
               "ptb": {"data_dir": flags[1]} if flags else {}, "ptb_char": {"data_dir": flags[1]} if flags else {}}
    built = tasks.get_task(task, **options.get(task, {}))
    name = built.default_model
    constructor = checkpoints.model_constructor(name)
    return name, constructor(**built.model_kwargs())


def applies(method, model):
    """Whether a method has anything to convert in `model` (the layer kinds each method works on)."""
    modules = list(model.modules())
    if method == "basis":
        return any(isinstance(m, Conv2d) for m in modules)
    if method == "wavelet":
        return any(isinstance(m, (GRUCell, LSTMCell)) or (type(m) is Dense and m.n_in == m.n_out)
                   for m in modules)
    return any(isinstance(m, (Dense, Conv2d)) for m in modules)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_every_method_compresses_the_default_model_or_says_it_does_not_apply(task, data, tmp_path, capsys):
    flags = data.get(task, [])
    name, dense = default_model(task, flags)
    for method in METHODS:
        out = tmp_path / method
        code = train.main(["--task", task, *flags, *SHORT[task], *STEPS, "--compress", method, "--out", str(out)])
        captured = capsys.readouterr()
        if not applies(method, dense):
            assert code == 2, (task, method, captured.err)
            assert captured.err.count("\n") == 1, captured.err
            assert f"--compress {method} does not apply to model {name}" in captured.err, captured.err
            continue
        assert code == 0, (task, method, captured.err)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["dense_origin"] == name and metrics["model"] == name
        sized = checkpoints.model_constructor(name)(**metrics["model_kwargs"])    # the recipe's sizes
        assert metrics["params"]["dense"] == sized.num_parameters()
        assert metrics["params"]["ratio"] > 1, (task, method, metrics["params"])
        assert metrics["bytes"]["ratio"] > 1 and metrics["flops"]["ratio"] is not None
        if method == "lowrank":    # its SVDs make training slower: said at the start
            assert "slower" in captured.out.split("train epoch")[0]


def test_wavelet_cnn_is_compared_with_lenet5(data, tmp_path, capsys):
    out = tmp_path / "wcnn"
    code = train.main(["--task", "mnist", *data["mnist"], *SHORT["mnist"], *STEPS, "--model", "wavelet_cnn",
                       "--compress", "wavelet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    lenet5 = checkpoints.model_constructor("lenet5")()
    assert metrics["dense_origin"] == "lenet5" and metrics["params"]["dense"] == lenet5.num_parameters()
    assert metrics["params"]["ratio"] > 10 and metrics["learnable"]["ratio"] > 10
    summary = (out / "summary.md").read_text()
    whole, layers = summary.index("## Dense vs compressed"), summary.index("## Layers")
    assert whole < layers and "dense (lenet5)" in summary
    for row in ("stored values", "learnable values", "FLOPs/example", "bytes"):
        assert f"| {row} |" in summary


def test_tucker_api_and_cli_build_the_same_cores(data, tmp_path, capsys):
    from compressors import tucker
    from layers.models import lenet300
    out = tmp_path / "tucker"
    code = train.main(["--task", "mnist", *data["mnist"], *SHORT["mnist"], *STEPS, "--epochs", "0",
                       "--compress", "tucker", "--out", str(out)])      # no tucker flag: the defaults
    assert code == 0, capsys.readouterr().err
    cli = json.loads((out / "metrics.json").read_text())["compressor_config"]["per_layer"]
    report = tucker.compress(lenet300(), ratio=tucker.DEFAULTS["ratio"])
    api = {row["name"]: {"modes": row["modes"], "ranks": row["ranks"], "params": row["params"]}
           for row in report["layers"]}
    assert api == cli
    config = (out / "config.toml").read_text()
    assert f"tucker_ratio = {tucker.DEFAULTS['ratio']}" in config       # the ratio used is recorded


def test_init_from_reads_a_save_model_file(data, tmp_path, capsys):
    from engine import io as engine_io
    dense = checkpoints.build_model("lenet300", n_classes=10)
    for p in dense.parameters():
        p.data = p.data + 1.0          # not what train.py's own init (seed 0) would give
    checkpoints.save_model(str(tmp_path / "dense.npz"), dense)
    out = tmp_path / "init"
    code = train.main(["--task", "mnist", *data["mnist"], *SHORT["mnist"], *STEPS, "--epochs", "0",
                       "--init-from", str(tmp_path / "dense.npz"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    arrays, _ = engine_io.load(str(out / "checkpoint.npz"))
    for key, value in dense.state_dict().items():
        assert (arrays[f"model/{key}"] == value).all(), key


def test_mnist_input_scale_unit_gives_pixels_over_255(data):
    folder = data["mnist"][1]
    unit = tasks.get_task("mnist", data_dir=folder, input_scale="unit")
    standard = tasks.get_task("mnist", data_dir=folder)
    raw = unit.data["test"][0][:3]
    assert (unit.images(raw) == (raw / 255.0).astype("float32")[:, None]).all()
    assert abs(float(standard.images(raw).mean()) - float(unit.images(raw).mean())) > 0.1
    assert unit.config()["input_scale"] == "unit" and standard.config()["input_scale"] == "standard"
    with pytest.raises(ValueError, match="input_scale"):
        tasks.get_task("mnist", data_dir=folder, input_scale="zero_one")


def test_help_lists_the_registries_and_prints_each_default_once(monkeypatch, capsys):
    from training import options
    assert train.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for names in (sorted(tasks.TASKS), checkpoints.model_names(), sorted(plugin.REGISTRY)):
        assert "one of " + ", ".join(names) in text
    assert "tucker and scada compression:" in text and "scada compression:" not in text.replace("and scada", "")
    assert not re.search(r"\(default[^)]*\) \(default", text)      # e.g. "(default 4) (default: 4)"
    from compressors import lowrank, tucker
    assert f"(default: {tucker.DEFAULTS['order']})" in text and f"(default: {lowrank.DEFAULTS['tau']})" in text
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/compactnet-train"])
    assert options.build_parser().prog == "compactnet-train"
    monkeypatch.setattr("sys.argv", ["train.py"])
    assert options.build_parser().prog == "train.py"


def test_lowrank_says_when_nothing_got_smaller(capsys):
    import argparse
    from compressors.lowrank import LowRankCompressor
    from layers import Sequential
    compressor = LowRankCompressor(argparse.Namespace(lowrank_energy=1.0, lowrank_tau=0.0))
    assert compressor.cost_note() is None                  # no prox: no SVDs while training
    model = compressor.apply(Sequential(Dense(4, 4)), None)
    compressor.finalize(model, None)
    assert "no layer got smaller" in capsys.readouterr().out
    assert LowRankCompressor(argparse.Namespace()).cost_note()     # the defaults train with the prox
