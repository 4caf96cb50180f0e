"""im2col/col2im timing at LeNet-5 shapes: Numba kernel against the NumPy strided-copy reference."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import pin_threads, median_seconds  # noqa: E402

# (channels, side, kernel) of LeNet-5's two convolutions on MNIST, stride 1, no padding
LENET5_CONVS = [(1, 28, 5), (20, 12, 5)]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    pin_threads(args.threads)
    import numpy as np
    from engine.kernels import im2col as K
    if not K.numba_enabled():
        sys.exit("Numba is not available (or COMPACTNET_DISABLE_NUMBA=1): nothing to compare")
    rng = np.random.default_rng(0)
    geometry = ((1, 1), (0, 0), (1, 1))
    print(f"threads={args.threads} batch={args.batch} float32; times are medians in ms; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| input | direction | numpy | numba serial | numba parallel | serial/numpy | parallel/numpy |")
    print("|---|---|---|---|---|---|---|")
    nb = K.numba_kernels()
    for c, side, k in LENET5_CONVS:
        x = rng.standard_normal((args.batch, c, side, side)).astype(np.float32)
        out = side - k + 1
        cols = K.im2col_numpy(x, k, k, *geometry)
        g = rng.standard_normal(cols.shape).astype(np.float32)
        candidates = {
            "im2col": [lambda: K.im2col_numpy(x, k, k, *geometry),
                       lambda: nb.im2col_serial(x, k, k, 1, 1, 0, 0, 1, 1, out, out),
                       lambda: nb.im2col_parallel(x, k, k, 1, 1, 0, 0, 1, 1, out, out)],
            "col2im": [lambda: K.col2im_numpy(g, x.shape, *geometry),
                       lambda: K.col2im_nb(g, x.shape, *geometry, parallel=False),
                       lambda: K.col2im_nb(g, x.shape, *geometry, parallel=True)],
        }
        for direction, fns in candidates.items():
            results = [f() for f in fns]
            if not all(np.allclose(r, results[0], atol=1e-5) for r in results[1:]):
                sys.exit(f"{direction}: Numba and NumPy disagree")
            t = [median_seconds(f, args.repeats) * 1e3 for f in fns]
            print(f"| {c}x{side}x{side}, k={k} | {direction} | {t[0]:.3f} | {t[1]:.3f} | {t[2]:.3f} | "
                  f"{t[1] / t[0]:.2f} | {t[2] / t[0]:.2f} |")

if __name__ == "__main__":
    main()
