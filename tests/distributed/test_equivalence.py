"""mpiexec -n 2 with global batch B trains the same parameters as one process with batch B (20 steps, every
compressor, LeNet-5 and a GRU, float64 and float32), and the two ranks' parameters are bit-identical."""
import json

import pytest

from tests.distributed import _equivalence
from tests.distributed._mpi import mpiexec, requires_mpi

pytestmark = requires_mpi
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One mpiexec run training every case (the imports and MPI start-up are paid once). Numba is off:
    at these sizes its compilation would take most of the time, and kernels are tested on their own."""
    work = tmp_path_factory.mktemp("equivalence")
    result = mpiexec(2, "tests/distributed/_equivalence.py", work, work / "results.json",
                     env={"COMPACTNET_DISABLE_NUMBA": "1"}, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((work / "results.json").read_text())


@pytest.mark.parametrize("case", sorted(_equivalence.CASES))
def test_two_ranks_train_what_one_process_trains(results, case):
    entry = results[case]
    assert entry["status"] == [0, 0], entry
    dtype = case.rsplit("-", 1)[1]
    assert entry["max_relative_difference"] <= TOLERANCE[dtype], entry


@pytest.mark.parametrize("case", sorted(_equivalence.CASES))
def test_ranks_hold_bit_identical_parameters(results, case):
    first, second = results[case]["digests"]
    assert first is not None and first == second
