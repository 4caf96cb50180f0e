"""docs/walkthrough.md, run as written: every command of its `sh` blocks, in order, with short settings
added (one epoch of two steps on tiny data found through $COMPACTNET_DATA)."""
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

import train

from .tiny_data import SHORT, STEPS, data_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"


def commands():
    """The lines of the walk-through's ```sh blocks, in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```", WALKTHROUGH.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def option(words, name, default=None):
    return words[words.index(name) + 1] if name in words else default


def run_train(words, capsys):
    """train.main on the command's own flags, after short settings (so the command's flags win)."""
    if words == ["--help"]:
        assert train.main(words) == 0
        return capsys.readouterr().out
    task = option(words, "--task", "adding")
    code = train.main([*STEPS, *SHORT[task], *words])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = pathlib.Path(option(words, "--out"))
    metrics = json.loads((out / "metrics.json").read_text())
    if option(words, "--compress", "none") != "none":
        assert metrics["params"]["ratio"] > 1, metrics["params"]
    return captured.out


@pytest.mark.slow
def test_walkthrough_commands_run_as_written(tmp_path, monkeypatch, capsys):
    listed = commands()
    compressed = {option(shlex.split(c), "--compress") for c in listed if c.startswith("python train.py")}
    assert {"lowrank", "basis", "tucker", "scada", "wavelet"} <= compressed     # one run per method
    data_flags(tmp_path / "data")                 # writes tmp/data/mnist, tmp/data/ptb
    monkeypatch.setenv("COMPACTNET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    monkeypatch.chdir(tmp_path)
    opened = []
    for command in listed:
        words = shlex.split(command)
        if words[:2] == ["python", "train.py"]:
            output = run_train(words[2:], capsys)
            if "--help" in words:
                assert "tucker and scada compression:" in output and "compactnet-train" not in output
            if option(words, "--compress") == "lowrank":
                assert "slower" in output and "after compression, before fine-tuning" in output
        elif words[0] == "cat":
            text = pathlib.Path(words[1]).read_text(encoding="utf-8")
            assert "## Dense vs compressed" in text and text.index("## Dense vs compressed") < text.index("## Layers")
            opened.append(words[1])
        elif words[:2] == ["python", "-c"]:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            done = subprocess.run([sys.executable, "-c", words[2]], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert "Tucker" in done.stdout
        else:
            pytest.fail(f"docs/walkthrough.md: no rule to check the command {command!r}")
    assert len(opened) >= 6
