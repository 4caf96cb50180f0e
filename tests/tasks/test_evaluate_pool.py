"""Evaluation empties the engine's buffer pool before it starts and after it ends."""
import numpy as np

from engine import buffers
from tasks import get_task

from .helpers import FixedOutput


def test_evaluation_starts_and_ends_with_an_empty_buffer_pool():
    pool = buffers.default_pool()
    rows = buffers.POOL_MIN_BYTES // 4                              # float32 rows over the pool's size floor
    buffers.give_back(np.empty((rows, 2), dtype=np.float32))        # left over by "training"
    held_during = []

    def output_that_leaves_a_temporary(x):
        held_during.append(pool.held_bytes)
        buffers.give_back(np.empty((rows, len(x)), dtype=np.float32))
        return np.ones((len(x), 1))
    task = get_task("adding", T=5, test_size=20, valid_size=0)
    task.evaluate(FixedOutput(output_that_leaves_a_temporary), batch_size=8)
    assert held_during[0] == 0 and held_during[1] > 0      # within evaluation the pool still works
    assert pool.held_bytes == 0
