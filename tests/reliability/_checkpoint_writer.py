"""Child process for the kill-during-write test: writes large checkpoints to one path in a loop."""
import sys

import numpy as np

from engine import io as engine_io


def main(path, megabytes):
    n = int(megabytes * 2 ** 20) // 8
    i = 0
    while True:
        # every array is derived from i, so a loaded file can be checked against its own metadata
        arrays = {"weight": np.full(n, float(i)), "index": np.arange(1000, dtype=np.int64) + i}
        engine_io.save(path, arrays, {"iteration": i})
        print(f"saved {i}", flush=True)
        i += 1


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
