"""The README's Python examples run as written (placeholder lines that name the user's own files aside)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
with open(README, encoding="utf-8") as handle:
    BLOCKS = re.findall(r"```python\n(.*?)```", handle.read(), re.S)


def _runnable(block):
    """The block without lines that name a placeholder path such as runs/<folder>."""
    return "\n".join(line for line in block.splitlines() if not re.search(r"<[a-z_ -]+>", line))


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = _runnable(BLOCKS[index])
    if "lenet5.safetensors" in block:      # the import example reads the user's PyTorch export: make one
        from layers import torch_interop
        from layers.models import lenet5
        torch_interop.save_torch_file("lenet5.safetensors", torch_interop.to_torch_state_dict(lenet5()))
    exec(compile(block, f"README.md python block {index}", "exec"), {"__name__": "readme_example"})
