"""Checkpoints that rebuild themselves: save_model / load_model record architecture and compression steps.

A checkpoint holds the model's state_dict plus metadata

    {"kind": "compactnet-model", "version": 1, "dtype": "float32",
     "arch": {"name": <a layers.models.MODELS name or "wavelet_cnn">, "kwargs": {...}},
     "compression": [{"method": "lowrank" | "basis" | "tucker" | "scada" | "wavelet", "config": {...}}, ...]}

load_model builds the dense model, re-applies every compression step structurally
(no data and no training needed: the compressors' public conversion functions run on
the fresh weights, whose values the state_dict then replaces) and loads the arrays.
The step configs use the same keys as the compressors' ``config()`` after a run, so
train.py's checkpoints (which record ``architecture`` and ``compressor.config``) load
the same way. Files ending in .safetensors use engine.safetensors with the metadata as
JSON under the "compactnet" key; anything else is engine.io's checksummed .npz.

layers never imports compressors at import time (the dependency runs the other way);
the rebuild adapters import the compressor they need when a checkpoint asks for it.
"""
import json
import os

import numpy as np

from engine import backend
from engine import io as engine_io
from engine import rng as engine_random
from engine import safetensors as st

from .conv import Conv2d
from .dense import Dense

KIND = "compactnet-model"
TRAIN_KIND = "compactnet-train-checkpoint"
VERSION = 1
SAFETENSORS_KEY = "compactnet"
RUN_CHECKPOINT = "checkpoint.npz"      # train.py's file name inside a run folder
METHOD_ORDER = ("lowrank", "basis", "tucker", "scada", "wavelet")


# ---------------------------------------------------------------- architectures
def model_constructor(name):
    """The constructor registered as `name`: layers.models.MODELS or compressors.wavelet's wavelet_cnn."""
    from .models import MODELS
    if name in MODELS:
        return MODELS[name]
    if name == "wavelet_cnn":
        from compressors.wavelet import wavelet_cnn
        return wavelet_cnn
    raise ValueError(f"load_model: unknown architecture {name!r}; known: "
                     f"{', '.join(sorted(list(MODELS) + ['wavelet_cnn']))}")


def build_model(name, **kwargs):
    """model_constructor(name)(**kwargs), remembering (name, kwargs) so save_model needs no arch=."""
    model = model_constructor(name)(**kwargs)
    object.__setattr__(model, "arch_spec", {"name": name, "kwargs": dict(kwargs)})
    return model


def _arch_spec(model, arch):
    if arch is None:
        arch = getattr(model, "arch_spec", None)
        if arch is None:
            raise ValueError("save_model: give arch= (a name in layers.models.MODELS or 'wavelet_cnn', or "
                             "{'name': ..., 'kwargs': {...}}); this model does not record how it was built "
                             "(models made by layers.serialization.build_model or load_model do)")
    if isinstance(arch, str):
        arch = {"name": arch, "kwargs": {}}
    elif isinstance(arch, (tuple, list)) and len(arch) == 2:
        arch = {"name": arch[0], "kwargs": arch[1]}
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise TypeError(f"save_model: arch must be a name, (name, kwargs) or {{'name', 'kwargs'}}, got {arch!r}")
    arch = {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})}
    model_constructor(arch["name"])          # a clear error now rather than at load time
    try:
        json.dumps(arch)
    except TypeError as e:
        raise TypeError(f"save_model: arch kwargs must be JSON values, got {arch['kwargs']!r} ({e})") from None
    return arch


# ---------------------------------------------------------------- module tree helpers
def _module_at(model, path, where):
    modules = dict(model.named_modules())
    if path not in modules:
        raise ValueError(f"{where}: the model has no module {path!r}; it has "
                         f"{[n for n in modules if n][:20]}")
    return modules[path]


def _replace(model, path, new):
    """Put `new` at dotted `path`, keeping its place among its siblings (Sequential order matters)."""
    parent = model
    *parents, last = path.split(".")
    for part in parents:
        parent = parent._modules[part]
    if last not in parent._modules:
        raise ValueError(f"load_model: no sub-module {path!r} to replace")
    parent._modules[last] = new
    object.__setattr__(parent, last, new)


def _resized(layer, weight_shape):
    """A plain Dense/Conv2d like `layer` whose weight has `weight_shape` (units removed by lowrank)."""
    bias = layer.bias is not None
    if isinstance(layer, Dense):
        return Dense(int(weight_shape[0]), int(weight_shape[1]), bias=bias)
    return Conv2d(int(weight_shape[1]) * layer.groups, int(weight_shape[0]), layer.kernel_size,
                  stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                  groups=layer.groups, bias=bias)


# ---------------------------------------------------------------- describing a compressed model
def describe_compression(model):
    """The compression steps that turn the dense architecture into `model`, read off its modules."""
    found = {m: {} for m in METHOD_ORDER}
    lowrank_mode, shared_cores = None, {}
    for path, m in model.named_modules():
        kind = type(m).__name__
        if kind in ("LowRankDense", "LowRankConv2d"):
            found["lowrank"][path] = int(m.rank)
            if kind == "LowRankConv2d":
                lowrank_mode = lowrank_mode or m.mode
        elif kind == "BasisConv2d":
            found["basis"][path] = {"M": int(m.num_basis), "batch_norm": m.norm is not None,
                                    "train_basis": bool(m.basis.requires_grad)}
        elif kind in ("TuckerDense", "TuckerConv2d"):
            spec = {"modes": [int(v) for v in m.modes], "ranks": [int(v) for v in m.ranks]}
            if m.shared_core:
                shared_cores.setdefault(id(m.core), (list(m.core.shape), {}))[1][path] = spec
            else:
                found["tucker"][path] = spec
        elif kind == "WaveletLinear":
            found["wavelet"][path] = {"n": m.n, "levels": m.levels, "filter_length": m.filter_length,
                                      "init": m.init, "bias": m.bias is not None,
                                      "learn_filters": bool(m.learn_filters), "permute": m.permute,
                                      "ac_variant": m.ac_variant}
    steps = []
    if found["lowrank"]:
        steps.append({"method": "lowrank", "config": {
            "conv_reshape": lowrank_mode or "filters", "ranks": found["lowrank"],
            "factored": {p: True for p in found["lowrank"]}}})
    if found["basis"]:
        basis = found["basis"]
        steps.append({"method": "basis", "config": {
            "per_layer_M": {p: s["M"] for p, s in basis.items()},
            "batch_norm": {p: s["batch_norm"] for p, s in basis.items()},
            "train_basis": {p: s["train_basis"] for p, s in basis.items()}}})
    if found["tucker"]:
        steps.append({"method": "tucker", "config": {"per_layer": found["tucker"], "shared_core": None}})
    for core_shape, layers in shared_cores.values():
        steps.append({"method": "scada", "config": {"per_layer": layers, "shared_core": core_shape}})
    if found["wavelet"]:
        steps.append({"method": "wavelet", "config": {"per_layer": found["wavelet"]}})
    return steps


def _normalize_steps(compression):
    """Steps from a list of {'method', 'config'} dicts and/or Compressor objects (name + config())."""
    if isinstance(compression, dict) or hasattr(compression, "config"):
        compression = [compression]
    steps = []
    for i, step in enumerate(compression):
        if hasattr(step, "config") and hasattr(step, "name"):
            step = {"method": step.name, "config": step.config()}
        if not isinstance(step, dict) or "method" not in step:
            raise TypeError(f"save_model: compression step {i} must be {{'method', 'config'}} or a "
                            f"Compressor, got {step!r}")
        if step["method"] not in REBUILDERS:
            raise ValueError(f"save_model: compression step {i} has unknown method {step['method']!r}; "
                             f"known: {', '.join(sorted(REBUILDERS))}")
        steps.append({"method": step["method"], "config": dict(step.get("config") or {})})
    return steps


# ---------------------------------------------------------------- re-applying each method structurally
def _per_path(value, paths, default):
    """A bool-or-dict config value as {path: value}."""
    if isinstance(value, dict):
        return {p: value.get(p, default) for p in paths}
    return {p: default if value is None else value for p in paths}


def _rebuild_lowrank(model, config, state):
    """Factor the layers named in config['ranks'] (train's LowRankCompressor config works as is).

    Units removed by drop_dead_units are restored from the state's weight shapes; a layer is
    factored when the state holds '<path>.first.weight' (without a state: config['factored']
    or truncate's rule, factored when that is smaller).
    """
    ranks = config.get("ranks")
    if not ranks:
        return model                         # a run saved before truncation: still dense
    from compressors.lowrank import LowRankConv2d, LowRankDense
    mode = config.get("conv_reshape") or "filters"
    if state is not None:
        for path, m in list(model.named_modules()):
            key = f"{path}.weight" if path else "weight"
            if type(m) in (Dense, Conv2d) and key in state and tuple(state[key].shape) != m.weight.shape:
                _replace(model, path, _resized(m, state[key].shape))
    for path, rank in ranks.items():
        layer = _module_at(model, path, "load_model (lowrank)")
        if type(layer) not in (Dense, Conv2d):
            continue
        first = None if state is None else state.get(f"{path}.first.weight")
        second = None if state is None else state.get(f"{path}.second.weight")
        if state is not None:      # a later step may have replaced .first itself (e.g. by Tucker)
            factored = any(k.startswith(f"{path}.first.") for k in state)
        elif "factored" in config:
            factored = bool(config["factored"].get(path, False))
        else:
            rows, cols = (layer.n_in, layer.n_out) if isinstance(layer, Dense) else (
                layer.out_ch, layer.weight.size // layer.out_ch)
            factored = int(rank) * (rows + cols) < rows * cols
        if not factored:
            continue
        if first is not None and second is not None:
            if isinstance(layer, Dense):
                rank, shape = first.shape[1], (first.shape[0], second.shape[1])
            else:
                rank, shape = first.shape[0], (second.shape[0], first.shape[1]) + tuple(layer.kernel_size)
            if tuple(shape) != layer.weight.shape:    # units removed before factoring
                layer = _resized(layer, shape)
            if isinstance(layer, Conv2d) and first.shape[-1] == 1 and layer.kernel_size[1] > 1:
                mode = "spatial"
        _replace(model, path, _factored_shell(layer, int(rank), mode, LowRankDense, LowRankConv2d))
    return model


def _factored_shell(layer, rank, mode, dense_class, conv_class):
    """The two-layer form of `layer` at `rank` with fresh values (as lowrank's from_dense/from_conv
    lay it out), built without their SVD: the state_dict replaces the values anyway."""
    bias = layer.bias is not None
    if isinstance(layer, Dense):
        rank = min(rank, layer.n_in, layer.n_out)
        return dense_class(Dense(layer.n_in, rank, bias=False), Dense(rank, layer.n_out, bias=bias))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    c, n = layer.in_ch, layer.out_ch
    if mode == "filters":
        rank = min(rank, n, c * kh * kw)
        first = Conv2d(c, rank, (kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), bias=False)
        second = Conv2d(rank, n, 1, bias=bias)
    else:
        rank = min(rank, c * kh, kw * n)
        first = Conv2d(c, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), bias=False)
        second = Conv2d(rank, n, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), bias=bias)
    return conv_class(first, second, mode, rank)


def _rebuild_basis(model, config, state):
    """BasisConv2d with M filters at each path of config['per_layer_M'] (basis.compress with m=M)."""
    from compressors import basis
    per_m = config.get("per_layer_M")
    if not per_m:
        raise ValueError("load_model: a basis step needs per_layer_M {layer: M} (recorded after apply)")
    norms = _per_path(config.get("batch_norm"), per_m, False)
    trains = _per_path(config.get("train_basis"), per_m, False)
    for path, m in per_m.items():
        basis.compress(model, m=int(m), layers=[path], batch_norm=bool(norms[path]),
                       train_basis=bool(trains[path]))
    return model


def _rebuild_tucker(model, config, state):
    """Tucker layers with the recorded modes and ranks (a shared k^D core when config['shared_core'])."""
    from compressors import tucker
    per_layer = config.get("per_layer")
    if not per_layer:
        raise ValueError("load_model: a tucker/scada step needs per_layer {layer: {modes, ranks}}")
    names = list(per_layer)
    shapes = {n: [int(v) for v in per_layer[n]["modes"]] for n in names}
    shared = config.get("shared_core")
    if shared:
        tucker.compress(model, order=None, shared_core=True, k=int(shared[0]), layers=names, shapes=shapes)
    else:
        ranks = {n: [int(v) for v in per_layer[n]["ranks"]] for n in names}
        tucker.compress(model, order=None, ranks=ranks, layers=names, shapes=shapes)
    return model


def _rebuild_wavelet(model, config, state):
    """WaveletLinear layers from per-layer specs, or replaying train's WaveletCompressor settings."""
    from compressors import wavelet
    per_layer = config.get("per_layer")
    if per_layer:
        for path, s in per_layer.items():
            _module_at(model, path, "load_model (wavelet)")
            _replace(model, path, wavelet.WaveletLinear(
                int(s["n"]), int(s["levels"]), int(s["filter_length"]), init=s.get("init", "haar"),
                bias=bool(s.get("bias")), learn_filters=bool(s.get("learn_filters", True)),
                permute=bool(s.get("permute", True)), ac_variant=s.get("ac_variant", "modulated")))
        return model
    layer_kw = dict(learn_filters=not config.get("fixed", False),
                    ac_variant=config.get("ac_variant", "modulated"))
    args = (config.get("levels"), config.get("filter_length", 6), config.get("init", "haar"))
    replaced = str(config.get("replaced") or "")
    if replaced.startswith("recurrent:"):
        wavelet.compress_recurrent(model, config.get("which", "state_reset"), *args, **layer_kw)
    elif replaced == "square dense layers":
        wavelet.compress_square_dense(model, *args, **layer_kw)
    for layer in wavelet.wavelet_layers(model):
        layer.set_learn_filters(layer_kw["learn_filters"])
    return model


REBUILDERS = {"none": lambda model, config, state: model, "lowrank": _rebuild_lowrank,
              "basis": _rebuild_basis, "tucker": _rebuild_tucker, "scada": _rebuild_tucker,
              "wavelet": _rebuild_wavelet}


def rebuild(arch, steps, state=None, dtype=None):
    """The dense `arch` with every compression step applied (fresh values; the engine's RNG is left as it was)."""
    rng_state = engine_random.get_state()
    try:
        model = model_constructor(arch["name"])(**dict(arch.get("kwargs") or {}))
        for i, step in enumerate(steps):
            method = step.get("method")
            if method not in REBUILDERS:
                raise ValueError(f"load_model: compression step {i} has unknown method {method!r}; "
                                 f"known: {', '.join(sorted(REBUILDERS))}")
            REBUILDERS[method](model, step.get("config") or {}, state)
    finally:
        engine_random.set_state(rng_state)
    if dtype is not None:
        model.astype(np.dtype(dtype))
    object.__setattr__(model, "arch_spec", {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})})
    return model


def _structure_mismatch(model, state):
    """Human-readable differences between a model's state_dict keys/shapes and `state`, or ''."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    other = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(own) - set(other))
    unexpected = sorted(set(other) - set(own))
    shapes = [f"{k}: {other[k]} vs rebuilt {own[k]}" for k in sorted(set(own) & set(other)) if own[k] != other[k]]
    parts = []
    if missing:
        parts.append(f"rebuilt model has extra keys {missing[:10]}")
    if unexpected:
        parts.append(f"rebuilt model lacks keys {unexpected[:10]}")
    if shapes:
        parts.append(f"shapes differ: {shapes[:10]}")
    return "; ".join(parts)


# ---------------------------------------------------------------- save / load
def _is_safetensors_path(path):
    return str(path).endswith(".safetensors")


def save_model(path, model, arch=None, compression=None, metadata=None, verify=True):
    """Write `model` to `path` (.npz, or .safetensors by extension) so that load_model(path) rebuilds it.

    arch: a layers.models.MODELS name (or 'wavelet_cnn'), (name, kwargs) or {'name', 'kwargs'};
    None uses what build_model/load_model recorded on the model. compression: None reads the
    steps off the model's modules (describe_compression); or a list of {'method', 'config'}
    dicts / Compressor objects. metadata: any JSON-able dict kept under 'user'. With verify,
    the recorded recipe is rebuilt now and compared with the model's keys and shapes, so a
    checkpoint that would not load fails at save time. Returns the path.
    """
    spec = _arch_spec(model, arch)
    steps = describe_compression(model) if compression is None else _normalize_steps(compression)
    params = list(model.parameters())
    dtype = str(params[0].dtype) if params else None
    state = {k: backend.to_numpy(v) for k, v in model.state_dict().items()}
    meta = {"kind": KIND, "version": VERSION, "arch": spec, "compression": steps, "dtype": dtype,
            "user": dict(metadata or {})}
    try:
        text = json.dumps(meta)
    except TypeError as e:
        raise TypeError(f"save_model: metadata must be JSON values ({e})") from None
    if verify:
        problem = _structure_mismatch(rebuild(spec, steps, state, dtype), state)
        if problem:
            raise ValueError(f"save_model: arch {spec['name']!r} with compression "
                             f"{[s['method'] for s in steps]} does not rebuild this model ({problem}); "
                             "pass the right arch= / compression=")
    if _is_safetensors_path(path):
        meta["sha256"] = engine_io.digest(state)
        st.save_safetensors(path, state, {SAFETENSORS_KEY: json.dumps(meta), "format": "np"})
    else:
        engine_io.save(path, state, json.loads(text))
    return path


def read_checkpoint(path):
    """(arch, compression steps, state dict, dtype) of a save_model file or a train.py checkpoint/run folder."""
    if os.path.isdir(path):
        path = os.path.join(path, RUN_CHECKPOINT)
    if _is_safetensors_path(path) or (os.path.exists(path) and st.is_safetensors(path)):
        arrays, smeta = st.load_safetensors(path)
        if SAFETENSORS_KEY not in smeta:
            raise ValueError(f"load_model: {path} is a safetensors file without compactnet metadata (keys "
                             f"{sorted(smeta)}); for PyTorch weights use layers.torch_interop."
                             "load_torch_state_dict on a model you build")
        try:
            meta = json.loads(smeta[SAFETENSORS_KEY])
        except json.JSONDecodeError as e:
            raise ValueError(f"load_model: {path} has unreadable compactnet metadata ({e})") from None
        if "sha256" in meta and meta["sha256"] != engine_io.digest(arrays):
            raise ValueError(f"load_model: {path} is corrupted: checksum of its arrays does not match")
    else:
        arrays, meta = engine_io.load(path)
    kind = meta.get("kind")
    if kind == KIND:
        if meta.get("version", 0) > VERSION:
            raise ValueError(f"load_model: {path} has checkpoint version {meta['version']}, this "
                             f"compactnet reads up to {VERSION}")
        return meta["arch"], meta.get("compression") or [], arrays, meta.get("dtype")
    if kind == TRAIN_KIND:
        arch = meta.get("architecture") or {}
        spec = {"name": arch.get("model"), "kwargs": arch.get("kwargs") or {}}
        compressor = meta.get("compressor") or {}
        name = compressor.get("name", "none")
        steps = [] if name in (None, "none") else [{"method": name, "config": compressor.get("config") or {}}]
        state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        return spec, steps, state, (meta.get("config") or {}).get("dtype")
    raise ValueError(f"load_model: {path} records no architecture (kind {kind!r}); it holds arrays only: "
                     "build the model yourself and call model.load_state_dict(engine.io.load(path)[0])")


def load_model(path, device="cpu"):
    """The model saved at `path` (save_model file, train.py checkpoint or run folder), in eval mode.

    No user code is needed: the architecture is rebuilt, the recorded compression steps are
    re-applied and the arrays loaded (strictly: every key and shape must match).
    """
    arch, steps, state, dtype = read_checkpoint(path)
    model = rebuild(arch, steps, state, dtype)
    problem = _structure_mismatch(model, state)
    if problem:
        raise ValueError(f"load_model: {path}: the rebuilt {arch['name']!r} with compression "
                         f"{[s.get('method') for s in steps]} does not fit the saved arrays ({problem})")
    model.load_state_dict(state)
    object.__setattr__(model, "compression_steps", steps)
    return model.to(device).eval()
