"""Synchronised BatchNorm over 2 ranks equals one BatchNorm on the whole batch (outputs, gradients, running
statistics), so its gradients inherit the finite-difference checks of the plain layer."""
import json

import pytest

from tests.distributed._mpi import mpiexec, requires_mpi

pytestmark = requires_mpi


@pytest.fixture(scope="module")
def differences():
    result = mpiexec(2, "tests/distributed/_sync_batch_norm.py", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layer", ["BatchNorm2d", "BatchNorm1d"])
def test_synced_batch_norm_matches_one_batch_norm_on_the_whole_batch(differences, layer):
    assert set(differences[layer]) == {"output", "input grad", "weight grad", "bias grad", "running mean",
                                       "running var"}
    for quantity, difference in differences[layer].items():
        assert difference <= 1e-12, (quantity, difference)
