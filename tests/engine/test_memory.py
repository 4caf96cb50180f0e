"""training.memory: keeping freed heap blocks for reuse removes the page faults of re-allocating them."""
import os
import subprocess
import sys

import pytest

from training import memory
from tests.conftest import ROOT

FAULTS_OF_A_REALLOCATION = """
import resource, sys
import numpy as np
from training.memory import retain_freed_memory
applied = retain_freed_memory(sys.argv[1] == "retain")
a = np.ones(4 << 20, dtype=np.float32); del a         # 16 MiB, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(4 << 20, dtype=np.float32)                # the same size again, written in full
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode):
    result = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REALLOCATION, mode], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    applied, faults = result.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(memory._glibc() is None, reason="needs glibc's mallopt (Linux with glibc)")
def test_retained_heap_is_reused_without_page_faults():
    applied, retained = _faults("retain")
    assert applied
    _, released = _faults("release")
    # 16 MiB is 4096 pages of 4 KiB: released memory faults them in again (the kernel may map
    # several pages per fault: 520 faults here), retained memory does not
    assert released >= 64, released
    assert retained < released / 10, (retained, released)


def test_switching_on_and_off_is_reported():
    applied = memory.retain_freed_memory(True)
    try:
        assert memory.retaining_freed_memory() == applied
        assert applied == (memory._glibc() is not None)
    finally:
        memory.retain_freed_memory(False)
    assert not memory.retaining_freed_memory()
