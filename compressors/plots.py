"""PNG plots of a run: training curves, wavelet filters, low-rank spectra, Tucker core sizes, BasisConv energy.

matplotlib is the optional extra `plot`; it is imported when a plot is drawn. Without it
every function prints one line saying so and returns None (plot_run returns []).
Entry point for train.py --plot: ``plot_run(run_dir, model=None, compressor=None)``.
"""
import csv
import math
import os
import sys

import numpy as np

from engine import backend

MAX_PANELS = 8          # layers drawn per figure; the rest are listed in the title


def _pyplot(what):
    """matplotlib.pyplot with the file-only Agg backend, or None after saying why `what` is skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"compressors.plots: matplotlib is not installed (pip install 'compactnet[plot]'); "
              f"skipped {what}", file=sys.stderr)
        return None
    return plt


def _save(plt, fig, run_dir, name):
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid(plt, count, width=4.2, height=3.2):
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _np(a):
    return np.asarray(backend.to_numpy(getattr(a, "data", a)), dtype=np.float64)


def _named(model, *type_names):
    return [(p, m) for p, m in model.named_modules() if type(m).__name__ in type_names]


# ---------------------------------------------------------------- training curves
def read_log(path):
    """Rows of a train.py log.csv as dicts (numbers parsed where they parse)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = v
            rows.append(parsed)
    return rows


def plot_training_curves(run_dir, log_path=None, name="training_curves.png"):
    """Train/test loss (and the compression loss when non-zero) and the test metric per epoch."""
    log_path = log_path or os.path.join(run_dir, "log.csv")
    if not os.path.exists(log_path):
        raise FileNotFoundError(f"plot_training_curves: no log at {log_path}")
    rows = read_log(log_path)
    if not rows:
        raise ValueError(f"plot_training_curves: {log_path} has no rows")
    plt = _pyplot("the training curves")
    if plt is None:
        return None
    x = np.arange(1, len(rows) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train_loss", "train loss"), ("test_loss", "test loss"), ("extra_loss", "compression loss")):
        values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
        if np.all(~np.isfinite(values)) or (key == "extra_loss" and not np.any(values)):
            continue
        left.plot(x, values, marker="o", ms=3, label=label)
    if all(np.all(np.array([r.get(k, 1.0) for r in rows], dtype=float) > 0)
           for k in ("train_loss", "test_loss")):
        left.set_yscale("log")
    right.plot(x, [r.get("metric", np.nan) for r in rows], marker="o", ms=3, color="C3")
    phases = [r.get("phase") for r in rows]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in (left, right):
                ax.axvline(i + 0.5, color="grey", ls=":", lw=1)
            right.annotate(str(phases[i]), (i + 0.6, right.get_ylim()[0]), fontsize=8, color="grey")
    from matplotlib.ticker import MaxNLocator
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel("test metric")
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(log_path))) or "run", fontsize=9)
    return _save(plt, fig, run_dir, name)


# ---------------------------------------------------------------- wavelet filters
def frequency_response(taps, points=256):
    """|H(e^{iw})| of an FIR filter at `points` frequencies in [0, pi]."""
    taps = np.asarray(taps, dtype=np.float64)
    spectrum = np.fft.rfft(taps, n=2 * (points - 1))
    return np.linspace(0.0, np.pi, points), np.abs(spectrum)


def _initial_filters(layer):
    """The filters a named init starts from (None for 'random': they were drawn, not recorded)."""
    from .wavelet_filters import NAMED, filter_bank
    if layer.init not in NAMED:
        return None
    return [np.asarray(f, dtype=np.float64) for f in filter_bank(layer.init, layer.filter_length)]


def plot_wavelet_filters(model, run_dir, initial=None, name="wavelet_filters.png"):
    """Per WaveletLinear: the learned filters and their frequency responses next to the initial ones.

    initial: optional {layer path: (dec_lo, dec_hi, rec_lo, rec_hi)}; by default the layer's named
    init is rebuilt (a 'random' init has no recorded start and is drawn without it).
    """
    layers = _named(model, "WaveletLinear")
    if not layers:
        raise ValueError("plot_wavelet_filters: the model has no WaveletLinear layer")
    plt = _pyplot("the wavelet filter plot")
    if plt is None:
        return None
    shown = layers[:MAX_PANELS // 2]
    fig, axes = plt.subplots(len(shown), 2, figsize=(10, 3.0 * len(shown)), squeeze=False)
    labels = ("dec_lo", "dec_hi", "rec_lo", "rec_hi")
    for (path, layer), (taps_ax, freq_ax) in zip(shown, axes):
        learned = [_np(f) for f in layer.filters()]
        start = (initial or {}).get(path) or _initial_filters(layer)
        for i, (label, f) in enumerate(zip(labels, learned)):
            color = f"C{i}"
            taps_ax.plot(np.arange(len(f)), f, marker="o", color=color, label=f"{label} learned")
            w, h = frequency_response(f)
            freq_ax.plot(w, h, color=color, label=f"{label} learned")
            if start is not None:
                f0 = np.asarray(start[i], dtype=np.float64)
                taps_ax.plot(np.arange(len(f0)), f0, ls="--", color=color, alpha=0.6)
                freq_ax.plot(*frequency_response(f0), ls="--", color=color, alpha=0.6)
        taps_ax.set_title(f"{path}: taps (dashed: initial {layer.init})", fontsize=9)
        taps_ax.set_xlabel("tap")
        freq_ax.set_title(f"{path}: |H(w)|, n={layer.n}, J={layer.levels}", fontsize=9)
        freq_ax.set_xlabel("w (rad / sample)")
        taps_ax.legend(fontsize=7, ncol=2)
    if len(layers) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(layers)} wavelet layers", fontsize=9)
    return _save(plt, fig, run_dir, name)


# ---------------------------------------------------------------- low-rank spectra
def effective_matrix(module, conv_reshape="filters"):
    """The weight matrix whose rank lowrank penalises, for a Dense, Conv2d, LowRankDense or LowRankConv2d."""
    kind = type(module).__name__
    if kind == "LowRankDense":
        return _np(module.first.weight) @ _np(module.second.weight)
    if kind == "LowRankConv2d":
        first, second = _np(module.first.weight), _np(module.second.weight)
        r = first.shape[0]
        if module.mode == "filters":
            return second.reshape(second.shape[0], r) @ first.reshape(r, -1)
        a = first.reshape(r, -1).T                                   # (C kh, r)
        b = second[:, :, 0, :].transpose(1, 2, 0).reshape(r, -1)    # (r, kw N)
        return a @ b
    w = _np(module.weight)
    if w.ndim == 2:
        return w
    n, c, kh, kw = w.shape
    return w.reshape(n, -1) if conv_reshape == "filters" else w.transpose(1, 2, 3, 0).reshape(c * kh, kw * n)


def plot_lowrank_spectra(model, run_dir, before=None, conv_reshape="filters", name="lowrank_spectra.png"):
    """Singular values per layer after truncation (markers) and before it (line), normalised by s_max.

    before: optional {layer path: singular values, or a weight array} of the dense model
    (plot_run takes them from the run's trained.npz, saved before truncation).
    """
    layers = _named(model, "LowRankDense", "LowRankConv2d")
    if not layers:
        layers = _named(model, "Dense", "Conv2d")
    if not layers:
        raise ValueError("plot_lowrank_spectra: the model has no Dense, Conv2d or low-rank layer")
    plt = _pyplot("the low-rank spectra plot")
    if plt is None:
        return None
    shown = layers[:MAX_PANELS]
    fig, axes = _grid(plt, len(shown))
    for (path, module), ax in zip(shown, axes):
        after = np.linalg.svd(effective_matrix(module, conv_reshape), compute_uv=False)
        rank = getattr(module, "rank", None)
        if rank is not None:
            after = after[:rank]         # the rest are rounding-level zeros of a rank-r product
        top = after[0] if after.size and after[0] > 0 else 1.0
        ref = (before or {}).get(path)
        if ref is not None:
            ref = np.asarray(ref, dtype=np.float64)
            if ref.ndim > 1:
                w = ref if ref.ndim == 2 else (ref.reshape(ref.shape[0], -1) if conv_reshape == "filters"
                                               else ref.transpose(1, 2, 3, 0).reshape(ref.shape[1] * ref.shape[2], -1))
                ref = np.linalg.svd(w, compute_uv=False)
            top = ref[0] if ref.size and ref[0] > 0 else top
            ax.semilogy(np.arange(1, ref.size + 1), np.maximum(ref / top, 1e-12), label="before")
        ax.semilogy(np.arange(1, after.size + 1), np.maximum(after / top, 1e-12), "o", ms=2.5, label="after")
        if rank is not None:
            ax.axvline(rank, color="grey", ls=":", lw=1)
        ax.set_title(f"{path}: {type(module).__name__}" + (f", rank {rank}" if rank is not None else ""),
                     fontsize=9)
        ax.set_xlabel("index")
        ax.set_ylabel("s / s_max")
        ax.legend(fontsize=7)
    return _save(plt, fig, run_dir, name)


# ---------------------------------------------------------------- Tucker core sizes
def plot_tucker_cores(model, run_dir, name="tucker_cores.png"):
    """Per Tucker layer: dense weight count vs stored core and factor values (log scale), with the ranks."""
    layers = _named(model, "TuckerDense", "TuckerConv2d")
    if not layers:
        raise ValueError("plot_tucker_cores: the model has no TuckerDense/TuckerConv2d layer")
    plt = _pyplot("the Tucker core plot")
    if plt is None:
        return None
    names = [p for p, _ in layers]
    dense = [math.prod(m.weight_shape) for _, m in layers]
    core = [math.prod(m.ranks) for _, m in layers]
    factors = [sum(a * b for a, b in zip(m.modes, m.ranks)) for _, m in layers]
    shared = any(m.shared_core for _, m in layers)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(layers) + 2), 4.0))
    ax.bar(x - 0.27, dense, 0.27, label="dense weight")
    ax.bar(x, core, 0.27, label="core" + (" (shared: stored once)" if shared else ""))
    ax.bar(x + 0.27, factors, 0.27, label="factors")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\nmodes {list(m.modes)}\nranks {list(m.ranks)}" for n, (_, m) in zip(names, layers)],
                       fontsize=7)
    ax.set_ylabel("values")
    ax.legend(fontsize=8)
    ax.set_title("Tucker layers: core and factor sizes" + (" (SCADA)" if shared else ""), fontsize=10)
    return _save(plt, fig, run_dir, name)


# ---------------------------------------------------------------- BasisConv energy
def energy_curve(singular_values):
    """Cumulative energy sum_{i<=M} s_i^2 / sum s_i^2 for M = 1..len(s)."""
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    total = s2.sum()
    return np.cumsum(s2) / total if total > 0 else np.ones_like(s2)


def plot_basis_energy(model, run_dir, singular_values=None, name="basis_energy.png"):
    """Per BasisConv2d: the energy curve of the original filters and the chosen M.

    singular_values: optional {layer path: s of the original N x d filter matrix}; otherwise the
    layer's own record (set by BasisConv2d.from_conv), else the current filters (a curve
    reaching 1 at M, labelled as such).
    """
    layers = _named(model, "BasisConv2d")
    if not layers:
        raise ValueError("plot_basis_energy: the model has no BasisConv2d layer")
    plt = _pyplot("the BasisConv energy plot")
    if plt is None:
        return None
    shown = layers[:MAX_PANELS]
    fig, axes = _grid(plt, len(shown))
    for (path, layer), ax in zip(shown, axes):
        s = (singular_values or {}).get(path)
        source = "original filters"
        if s is None and getattr(layer, "singular_values", None) is not None:
            s = layer.singular_values
        if s is None:
            w = np.asarray(backend.to_numpy(layer.filters()), dtype=np.float64)
            s = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)
            source = "current filters"
        curve = energy_curve(s)
        m = layer.num_basis
        ax.plot(np.arange(1, curve.size + 1), curve, label=source)
        ax.axvline(m, color="C3", ls="--", lw=1)
        kept = curve[min(m, curve.size) - 1]
        ax.annotate(f"M = {m}: {kept:.3f}", (m, kept), textcoords="offset points", xytext=(5, -12), fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("number of basis filters M")
        ax.set_ylabel("energy kept")
        ax.set_title(f"{path}: {layer.out_channels} filters, d = {layer.in_channels * math.prod(layer.kernel_size)}",
                     fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, run_dir, name)


# ---------------------------------------------------------------- a whole run
def _dense_state(path):
    """The model arrays of a run checkpoint (or a save_model file), or None when unreadable."""
    try:
        from .checkpoints import read_checkpoint
        return read_checkpoint(path)[2]
    except (OSError, ValueError):
        return None


def _run_meta(run_dir):
    try:
        from .checkpoints import read_run_meta
        return read_run_meta(run_dir)
    except (OSError, ValueError):
        return {}


def plot_run(run_dir, model=None, compressor=None, out_dir=None):
    """Every plot that applies to the run in `run_dir`; returns the PNG paths written.

    model: the final model (default: compressors.load_model(run_dir)). compressor: the run's
    Compressor (its conv_reshape is used for the low-rank spectra when it has one).
    out_dir: where the PNGs go (default: the run folder itself).
    """
    if _pyplot("every plot of the run") is None:
        return []
    written = []
    out = out_dir or run_dir
    log = os.path.join(run_dir, "log.csv")
    if os.path.exists(log) and read_log(log):
        written.append(plot_training_curves(out, log_path=log))
    if model is None:
        try:
            from .checkpoints import load_model
            model = load_model(run_dir)
        except (OSError, ValueError, KeyError) as e:
            print(f"compressors.plots: no model plots: cannot load the run's checkpoint ({e})", file=sys.stderr)
            return written
    kinds = {type(m).__name__ for m in model.modules()}
    if "WaveletLinear" in kinds:
        written.append(plot_wavelet_filters(model, out))
    if kinds & {"LowRankDense", "LowRankConv2d"}:
        reshape = getattr(compressor, "conv_reshape", None) or next(
            (m.mode for m in model.modules() if type(m).__name__ == "LowRankConv2d"), "filters")
        dense = _dense_state(os.path.join(run_dir, "trained.npz")) or {}
        before = {p: dense[f"{p}.weight"] for p, _ in _named(model, "LowRankDense", "LowRankConv2d")
                  if f"{p}.weight" in dense}
        written.append(plot_lowrank_spectra(model, out, before, reshape))
    if kinds & {"TuckerDense", "TuckerConv2d"}:
        written.append(plot_tucker_cores(model, out))
    if "BasisConv2d" in kinds:
        original = {}
        init_from = (_run_meta(run_dir).get("config") or {}).get("init_from")
        dense = _dense_state(init_from) if init_from else None
        for path, layer in _named(model, "BasisConv2d"):
            w = (dense or {}).get(f"{path}.weight")
            if w is not None and w.ndim == 4:
                original[path] = np.linalg.svd(np.asarray(w, np.float64).reshape(w.shape[0], -1), compute_uv=False)
        written.append(plot_basis_energy(model, out, original))
    return [p for p in written if p]
