"""The fastest a wavelet-compressed model could run here: its FLOPs at the dense product's rate, plus its permutation.

A WaveletLinear's FLOP count (compressors.wavelet.WaveletLinear.flops) counts the multiply-adds of its
transforms and scales but not its permutation P, a random reordering of the n' coefficients of every
row, which any implementation pays as a gather. The dense layer it replaces is one BLAS product,
which runs close to the machine's peak FLOP rate (compare the GFLOP/s column of layer_times.md).
So, with the transforms at the dense product's own FLOP rate (no stride-2 filter bank on short
bands does better than a large GEMM) and the gather at the fastest rate measured here (a compiled
loop into a reused buffer when Numba is present, else NumPy's take), the compressed model takes at
least `floor_seconds`, and its speedup over the dense model is at most `floor_speedup`. For a
recurrent model (a GRU/LSTM whose hidden transforms are WaveletLinear) the same holds per time
step: the dense net's hidden product (B, H) @ (H, k H) is replaced by the kept gates' product plus
the wavelet layers at that floor, and everything else in the layer is timed as the dense one.
"""
import statistics
import time

import numpy as np


def _median_seconds(fn, repeats, warmup=3):
    samples = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _compiled_gather():
    """A Numba loop out[b, k] = x[b, perm[k]], or None without Numba."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def gather(x, perm, out):
        for b in range(x.shape[0]):
            source, target = x[b], out[b]
            for k in range(perm.shape[0]):
                target[k] = source[perm[k]]
    return gather


def gather_seconds(rows, perm, dtype, repeats=15):
    """(seconds, how): the fastest measured gather of a (rows, n') array by the permutation `perm`."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, perm.shape[0])).astype(dtype)
    out = np.empty_like(x)
    best = (_median_seconds(lambda: np.take(x, perm, axis=1, out=out), repeats), "NumPy take")
    gather = _compiled_gather()
    if gather is not None:
        gather(x, perm, out)                          # compile outside the timing
        best = min(best, (_median_seconds(lambda: gather(x, perm, out), repeats), "compiled loop"))
    return best


def _wavelet_layers(model):
    from compressors.wavelet import WaveletLinear
    return [m for m in model.modules() if isinstance(m, WaveletLinear)]


def _layer_floor(layer, rows, flop_rate, repeats):
    """(seconds, gather seconds, how) of one WaveletLinear applied to `rows` rows at the floor."""
    flops = layer.flops(None, np.empty((rows, layer.n)))
    gather, how = gather_seconds(rows, np.asarray(layer.permutation), layer.input_scale.dtype, repeats)
    return flops / flop_rate + gather, gather, how


def wavelet_floor(dense, compressed, x, whole_dense_seconds, flops_dense_per_example, repeats=15):
    """{floor_seconds, floor_speedup, flop_rate, gather_seconds, gather_how, parts} for a model whose
    compressed form holds WaveletLinear layers, or None when it holds none.

    flops_dense_per_example and whole_dense_seconds come from the caller's timing of the dense model
    (layer_times.breakdown), so the rate is the dense model's achieved GFLOP/s in the same session.
    """
    layers = _wavelet_layers(compressed)
    if not layers:
        return None
    cells = [m for m in compressed.modules() if hasattr(m, "hh_modules")]
    if not cells:                                       # a WaveletLinear on its own, applied once
        batch = x.shape[0]
        rate = flops_dense_per_example * batch / whole_dense_seconds
        seconds, gather, how = _layer_floor(layers[0], batch, rate, repeats)
        parts = f"transforms at {rate / 1e9:.1f} GFLOP/s (the dense layer's) + permutation ({how})"
        return {"floor_seconds": seconds, "floor_speedup": whole_dense_seconds / seconds,
                "flop_rate": rate, "gather_seconds": gather, "gather_how": how, "parts": parts}
    return _recurrent_floor(cells, x, whole_dense_seconds, repeats)


def _recurrent_floor(cells, x, whole_dense_seconds, repeats):
    from compressors.wavelet import WaveletLinear
    batch, steps = x.shape[0], x.shape[1]
    rng = np.random.default_rng(0)
    replaced_dense, kept, wavelet, gather_total, how, rate = 0.0, 0.0, 0.0, 0.0, "", None
    for cell in cells:
        modules = list(cell.hh_modules())
        hidden = modules[0].n if isinstance(modules[0], WaveletLinear) else modules[0].n_in
        h = rng.standard_normal((batch, hidden)).astype(np.float32)
        full = rng.standard_normal((hidden, len(modules) * hidden)).astype(np.float32)
        n_kept = sum(not isinstance(m, WaveletLinear) for m in modules)
        part = np.ascontiguousarray(full[:, :n_kept * hidden])
        product = _median_seconds(lambda: h @ full, repeats)
        rate = 2 * batch * hidden * full.shape[1] / product
        replaced_dense += steps * product
        kept += steps * (_median_seconds(lambda: h @ part, repeats) if n_kept else 0.0)
        for layer in modules:
            if isinstance(layer, WaveletLinear):
                seconds, gather, how = _layer_floor(layer, batch, rate, repeats)
                wavelet += steps * seconds
                gather_total += steps * gather
    floor = whole_dense_seconds - replaced_dense + kept + wavelet
    parts = (f"dense hidden products {1e3 * replaced_dense:.3f} ms of {1e3 * whole_dense_seconds:.3f} ms, "
             f"replaced by the kept gates' product {1e3 * kept:.3f} ms + the wavelet layers at "
             f"{rate / 1e9:.1f} GFLOP/s (the dense hidden product's) with their permutation ({how}) "
             f"{1e3 * wavelet:.3f} ms")
    return {"floor_seconds": floor, "floor_speedup": whole_dense_seconds / floor, "flop_rate": rate,
            "gather_seconds": gather_total, "gather_how": how, "parts": parts}
