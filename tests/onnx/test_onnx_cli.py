"""The export command, the exporter registry, and importing compressors.onnx without the onnx extra."""
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from compressors.onnx import register_exporter
from compressors.onnx.__main__ import main
from compressors.onnx.graph import import_onnx
from layers import Dense
from layers.module import Module, Parameter
from layers.models import lenet300
from compressors.checkpoints import build_model, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_package_imports_without_onnx_and_export_names_the_extra(monkeypatch):
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import compressors.onnx as c\n"
            "from layers.models import lenet300\n"
            "import numpy as np\n"
            "try:\n"
            "    c.to_onnx(lenet300(), 'x.onnx', np.zeros((1, 784), np.float32))\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "the extra 'onnx'" in out.stdout and out.stdout.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install 'compactnet\\[onnx\\]'"):
        import_onnx()


class _Doubler(Module):
    """A layer no built-in exporter knows: y = x * scale * 2."""

    def __init__(self, n):
        super().__init__()
        self.scale = Parameter(np.full(n, 0.5, np.float32))

    def forward(self, x):
        return x * self.scale * 2.0


def test_a_new_layer_registers_its_exporter_without_editing_a_list(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
    from compressors.onnx import to_onnx
    from layers.models import FeedForward

    class Unknown(_Doubler):
        pass

    model = FeedForward(Dense(4, 4), Unknown(4))
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="no ONNX exporter for layer type Unknown"):
        to_onnx(model, tmp_path / "a.onnx", x)

    @register_exporter(_Doubler)
    def export_doubler(g, layer, value):
        return g.op("Mul", [g.op("Mul", [value, g.param(layer.scale)]), g.floats(2.0)])

    result = to_onnx(model, tmp_path / "b.onnx", x)       # a subclass finds its base's exporter
    onnx.checker.check_model(onnx.load(str(tmp_path / "b.onnx")))
    theirs = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    model.eval()
    with engine.no_grad():
        np.testing.assert_allclose(theirs, model(x).data, atol=1e-6)
    assert [r["type"] for r in result.rows] == ["Dense", "Unknown"]


def test_export_command_writes_a_run_file_and_prints_the_report(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
    engine.manual_seed(0)
    model = build_model("lenet300")
    save_model(str(tmp_path / "run.npz"), model)
    assert main([str(tmp_path / "run.npz")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "model.onnx").exists()
    assert f"{os.path.getsize(tmp_path / 'model.onnx'):,} bytes" in printed
    assert main([str(tmp_path / "run.npz"), "--out", str(tmp_path / "q.onnx"), "--quantize-bits", "8"]) == 0
    assert os.path.getsize(tmp_path / "q.onnx") < os.path.getsize(tmp_path / "model.onnx") / 3


def test_export_command_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder" in err and "missing" in err
    save_model(str(tmp_path / "run.npz"), lenet300(), arch="lenet300")
    assert main([str(tmp_path / "run.npz"), "--input-shape", "1,3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.npz" in err


def test_train_export_onnx_writes_the_model_and_its_sizes(tmp_path):
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    import json
    import train
    out = tmp_path / "run"
    status = train.main(["--task", "adding", "--epochs", "1", "--steps", "2", "--hidden", "8", "--seq-len", "5",
                         "--compress", "lowrank", "--no-progress", "--export-onnx", "--out", str(out)])
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx"]["file_bytes"] == (out / "model.onnx").stat().st_size
    session = ort.InferenceSession(str(out / "model.onnx"))
    x = np.zeros((3, 5, 2), dtype=np.float32)
    assert session.run(None, {"input": x})[0].shape[0] == 3
