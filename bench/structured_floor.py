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

Beside that floor, the implementation floor puts in each wavelet layer's place the fastest of the
implementations measured on the same rows: this engine's whole layer without a graph (in a GRU also
the layer as the GRU runs it, on its side), and the layer's two transforms alone (same filter length and levels, zero padding) in PyWavelets and in PyTorch
(conv1d / conv_transpose1d per level), where those are installed. It is what the structured step
would reach with the fastest transform on hand.
"""
import os
import statistics
import time
import warnings

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


def implementation_seconds(layer, rows, repeats=15, on_side=False):
    """{implementation: seconds} of WaveletLinear `layer` on a (rows, n) float input: this engine's
    whole layer without a graph, and its two transforms alone in PyWavelets and in PyTorch (each where
    installed; PyTorch on the thread count OMP_NUM_THREADS names, as bench.timing.pin_threads sets).
    on_side: the layer stands in a GRU, which without a graph keeps its state on its side from
    GRU_MIN_BATCH_ON_SIDE examples on: then also the layer as it runs there, on (n, rows) arrays."""
    import engine
    x = np.random.default_rng(0).standard_normal((rows, layer.n)).astype(layer.input_scale.dtype)

    def ours():
        with engine.no_grad():
            layer(x)
    found = {"engine (whole layer)": _median_seconds(ours, repeats)}
    if on_side:
        from layers.recurrent import GRU_MIN_BATCH_ON_SIDE
        form = layer.sideways_map(rows) if rows >= GRU_MIN_BATCH_ON_SIDE and x.dtype == np.float32 else None
        if form is not None:
            src, out = np.ascontiguousarray(x.T), np.empty((layer.n, rows), x.dtype)
            found["engine (on its side, as a GRU runs it)"] = _median_seconds(lambda: form[0](src, out), repeats)
    filters = [np.asarray(f.data, dtype=x.dtype) for f in layer.filters()]
    try:
        import pywt
    except ImportError:
        pywt = None
    if pywt is not None:
        bank = pywt.Wavelet("learned", filter_bank=[f.tolist() for f in filters])

        def pywavelets():
            with warnings.catch_warnings():         # many levels on a short signal: pywt warns, and runs
                warnings.simplefilter("ignore")
                pywt.waverec(pywt.wavedec(x, bank, mode="zero", level=layer.levels, axis=-1), bank,
                             mode="zero", axis=-1)
        found["PyWavelets (transforms only)"] = _median_seconds(pywavelets, repeats)
    try:
        import torch
    except ImportError:
        return found
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    found["PyTorch conv1d (transforms only)"] = _median_seconds(_torch_transforms(torch, x, filters, layer.levels),
                                                                repeats)
    return found


def _torch_transforms(torch, x, filters, levels):
    """A call running the analysis (a stride-2 conv1d of both filters per level) and the synthesis
    (a stride-2 conv_transpose1d per level) of x's rows in PyTorch; band lengths within a sample of ours."""
    length = filters[0].shape[0]
    analysis = torch.from_numpy(np.stack([filters[0][::-1], filters[1][::-1]]).copy()).view(2, 1, length)
    synthesis = torch.from_numpy(np.stack([filters[2], filters[3]]).copy()).view(2, 1, length)
    signal = torch.from_numpy(x).view(x.shape[0], 1, x.shape[1])

    def run():
        with torch.no_grad():
            approx, details = signal, []
            for _ in range(levels):
                bands = torch.nn.functional.conv1d(approx, analysis, stride=2, padding=length - 1)
                approx = bands[:, :1]
                details.append(bands[:, 1:])
            for detail in reversed(details):
                both = torch.cat([approx[:, :, :detail.shape[-1]], detail], 1)
                approx = torch.nn.functional.conv_transpose1d(both, synthesis.view(2, 1, length), stride=2)
    return run


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
        measured = implementation_seconds(layers[0], batch, repeats)
        fastest = min(measured.values())
        return {"floor_seconds": seconds, "floor_speedup": whole_dense_seconds / seconds,
                "flop_rate": rate, "gather_seconds": gather, "gather_how": how, "parts": parts,
                "implementation_seconds_per_step": measured, "implementation_floor_seconds": fastest,
                "implementation_floor_speedup": whole_dense_seconds / fastest}
    return _recurrent_floor(cells, x, whole_dense_seconds, repeats)


def _recurrent_floor(cells, x, whole_dense_seconds, repeats):
    from compressors.wavelet import WaveletLinear
    batch, steps = x.shape[0], x.shape[1]
    rng = np.random.default_rng(0)
    replaced_dense, kept, wavelet, gather_total, how, rate = 0.0, 0.0, 0.0, 0.0, "", None
    fastest, implementations = 0.0, {}
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
                measured = implementation_seconds(layer, batch, repeats, on_side=True)
                fastest += steps * min(measured.values())
                for name, value in measured.items():
                    implementations[name] = implementations.get(name, 0.0) + value
    floor = whole_dense_seconds - replaced_dense + kept + wavelet
    implemented = whole_dense_seconds - replaced_dense + kept + fastest
    parts = (f"dense hidden products {1e3 * replaced_dense:.3f} ms of {1e3 * whole_dense_seconds:.3f} ms, "
             f"replaced by the kept gates' product {1e3 * kept:.3f} ms + the wavelet layers at "
             f"{rate / 1e9:.1f} GFLOP/s (the dense hidden product's) with their permutation ({how}) "
             f"{1e3 * wavelet:.3f} ms")
    return {"floor_seconds": floor, "floor_speedup": whole_dense_seconds / floor, "flop_rate": rate,
            "gather_seconds": gather_total, "gather_how": how, "parts": parts,
            "implementation_seconds_per_step": implementations,
            "implementation_floor_seconds": implemented,
            "implementation_floor_speedup": whole_dense_seconds / implemented}
