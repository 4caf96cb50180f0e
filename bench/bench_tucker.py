"""Tucker rebuild timing: our kernels (NumPy, Numba) against tensorly.tucker_to_tensor, same inputs, one process."""
import argparse
import json
import os
import time

import numpy as np


def median_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="10,12,14,14,10", help="full tensor shape")
    parser.add_argument("--rank", type=int, default=4, help="core side k (core k^D)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    import tensorly as tl
    from engine.kernels import tucker as kernels

    shape = tuple(int(s) for s in args.shape.split(","))
    rng = np.random.default_rng(0)
    core = rng.standard_normal((args.rank,) * len(shape)).astype(args.dtype)
    factors = [rng.standard_normal((m, args.rank)).astype(args.dtype) for m in shape]
    grad = rng.standard_normal(shape).astype(args.dtype)
    anchor = median_time(lambda: tl.tucker_to_tensor((core, factors)), args.repeats)
    rows = {"tensorly.tucker_to_tensor": anchor}
    impls = ["numpy"] + (["numba"] if kernels.numba_available() else [])
    for impl in impls:
        rows[f"ours {impl} rebuild"] = median_time(
            lambda: kernels.tucker_rebuild(core, factors, impl=impl), args.repeats)
        rows[f"ours {impl} backward"] = median_time(
            lambda: kernels.tucker_rebuild_backward(grad, core, factors, impl=impl), args.repeats)
    rows["ours default rebuild"] = median_time(lambda: kernels.tucker_rebuild(core, factors), args.repeats)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"Tucker rebuild {shape} from core {args.rank}^{len(shape)}, {args.dtype}, "
          f"median of {args.repeats}, OMP_NUM_THREADS={threads}, numba active: {kernels.numba_available()}")
    print("| what | median ms | / tensorly |")
    print("|---|---|---|")
    for name, t in rows.items():
        print(f"| {name} | {t * 1e3:.3f} | {t / anchor:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shape": shape, "rank": args.rank, "dtype": args.dtype, "seconds": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
