"""Model files of dense models: the state_dict plus the architecture that rebuilds it (save_model / load_model).

A model file holds the model's state_dict and the metadata

    {"kind": "compactnet-model", "version": 1, "dtype": "float32",
     "arch": {"name": <a model registry name>, "kwargs": {...}},
     "compression": [{"method": ..., "config": {...}}, ...], "user": {...}}

Files ending in .safetensors use engine.safetensors with the metadata as JSON under the
"compactnet" key; anything else is engine.io's checksummed .npz. This module reads and
writes such files and loads those of dense models (no compression steps, an architecture
in layers.models.MODELS). Compressed models, the full model registry and train.py's run
checkpoints belong to compressors.checkpoints, which builds on the file functions here:
layers imports nothing from compressors.
"""
import json
import os

import numpy as np

from engine import backend
from engine import io as engine_io
from engine import rng as engine_random
from engine import safetensors as st
from engine.untrusted import FileFormatError, parse_json

from . import init

KIND = "compactnet-model"
FLOAT_DTYPES = ("float16", "float32", "float64")
# parameter values alive during a build beyond the stored ones: room for the dense model that compression
# steps rebuild from, and within issue 18's 100 MB for a rejected file (32 MiB as float32, plus one float64
# temporary of an initialiser of at most as many values)
BUILD_ALLOWANCE = 1 << 23
VERSION = 1
SAFETENSORS_KEY = "compactnet"
COMPRESSED_HINT = "compressors.load_model (compressors.checkpoints) loads it"


def _dense_constructor(name):
    from .models import MODELS
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def arch_spec(model, arch, constructor=_dense_constructor):
    """{'name', 'kwargs'} from a name, (name, kwargs), a dict, or None (the model's recorded arch_spec).

    `constructor` (name -> callable) checks the name now rather than at load time."""
    if arch is None:
        arch = getattr(model, "arch_spec", None)
        if arch is None:
            raise ValueError("save_model: give arch= (a model registry name, (name, kwargs) or "
                             "{'name': ..., 'kwargs': {...}}); this model does not record how it was built "
                             "(models made by compressors.build_model or a load_model do)")
    if isinstance(arch, str):
        arch = {"name": arch, "kwargs": {}}
    elif isinstance(arch, (tuple, list)) and len(arch) == 2:
        arch = {"name": arch[0], "kwargs": arch[1]}
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise TypeError(f"save_model: arch must be a name, (name, kwargs) or {{'name', 'kwargs'}}, got {arch!r}")
    arch = {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})}
    try:
        constructor(arch["name"])
    except ValueError as e:
        raise ValueError(f"save_model: {e}") from None
    try:
        json.dumps(arch)
    except TypeError as e:
        raise TypeError(f"save_model: arch kwargs must be JSON values, got {arch['kwargs']!r} ({e})") from None
    return arch


def structure_mismatch(model, state):
    """Human-readable differences between a model's state_dict keys/shapes/dtype kinds and `state`, or ''."""
    own_state = model.state_dict()
    own = {k: tuple(v.shape) for k, v in own_state.items()}
    other = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(own) - set(other))
    unexpected = sorted(set(other) - set(own))
    shapes = [f"{k}: {other[k]} vs rebuilt {own[k]}" for k in sorted(set(own) & set(other)) if own[k] != other[k]]
    # a float parameter stored as integers or booleans is not this model's weight (the load would cast it)
    kinds = [f"{k}: {state[k].dtype}" for k in sorted(set(own) & set(other))
             if np.dtype(own_state[k].dtype).kind == "f" and np.dtype(state[k].dtype).kind != "f"]
    parts = []
    if missing:
        parts.append(f"rebuilt model has extra keys {missing[:10]}")
    if unexpected:
        parts.append(f"rebuilt model lacks keys {unexpected[:10]}")
    if shapes:
        parts.append(f"shapes differ: {shapes[:10]}")
    if kinds:
        parts.append(f"float weights stored as {kinds[:10]}")
    return "; ".join(parts)


def model_file_meta(model, spec, steps, metadata):
    """The metadata of a model file (checked to be JSON) and the model's state as NumPy arrays."""
    params = list(model.parameters())
    dtype = str(params[0].dtype) if params else None
    state = {k: backend.to_numpy(v) for k, v in model.state_dict().items()}
    meta = {"kind": KIND, "version": VERSION, "arch": spec, "compression": steps, "dtype": dtype,
            "user": dict(metadata or {})}
    try:
        meta = json.loads(json.dumps(meta))
    except TypeError as e:
        raise TypeError(f"save_model: metadata must be JSON values ({e})") from None
    return meta, state


def write_model_file(path, state, meta):
    """Write `state` and `meta` to `path`: .safetensors by extension, else engine.io's .npz. Returns path."""
    if str(path).endswith(".safetensors"):
        meta = dict(meta, sha256=engine_io.digest(state))
        st.save_safetensors(path, state, {SAFETENSORS_KEY: json.dumps(meta), "format": "np"})
    else:
        engine_io.save(path, state, meta)
    return path


def read_model_file(path):
    """(arrays, metadata) of an engine.io .npz or a compactnet .safetensors file (checksums checked)."""
    if str(path).endswith(".safetensors") or (os.path.isfile(path) and st.is_safetensors(path)):
        arrays, smeta = st.load_safetensors(path)
        if SAFETENSORS_KEY not in smeta:
            raise ValueError(f"load_model: {path} is a safetensors file without compactnet metadata (keys "
                             f"{sorted(smeta)}); for PyTorch weights use layers.torch_interop."
                             "load_torch_state_dict on a model you build")
        text = smeta[SAFETENSORS_KEY]
        if not isinstance(text, str):
            raise FileFormatError(f"load_model: {path}: the compactnet metadata is not a string")
        meta = parse_json(text.encode("utf-8", errors="replace"), f"load_model: {path}: compactnet metadata")
        if not isinstance(meta, dict):
            raise FileFormatError(f"load_model: {path}: the compactnet metadata is not a JSON object")
        if "sha256" in meta and meta["sha256"] != engine_io.digest(arrays):
            raise ValueError(f"load_model: {path} is corrupted: checksum of its arrays does not match")
        return arrays, meta
    return engine_io.load(path)


def check_model_file(path, meta):
    """ValueError unless `meta` is a model file's (KIND) of a version this code reads."""
    kind = meta.get("kind")
    if kind != KIND:
        raise ValueError(f"load_model: {path} records no architecture (kind {kind!r}); it holds arrays only: "
                         "build the model yourself and call model.load_state_dict(engine.io.load(path)[0])")
    if not isinstance(meta.get("version", 0), int):
        raise FileFormatError(f"load_model: {path}: checkpoint version {meta.get('version')!r} is not an integer")
    if meta.get("version", 0) > VERSION:
        raise ValueError(f"load_model: {path} has checkpoint version {meta['version']}, this "
                         f"compactnet reads up to {VERSION}")


def _integers(value, name):
    """(name, int) for every integer inside a JSON value (bools excluded)."""
    if isinstance(value, int) and not isinstance(value, bool):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _integers(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _integers(item, f"{name}[{i}]")


def check_recorded_model(path, arch, steps, dtype, state):
    """Check a file's recorded architecture, compression steps and dtype against its arrays before
    anything is built; returns the parameter-value budget to build it under (init.build_budget).

    The rules (README "Safety"): the dtype is one of FLOAT_DTYPES; every integer among the
    architecture's kwargs (every size and layer count of the registry's models) is at most the budget;
    and building may create at most the budget's parameter values: the stored values plus
    BUILD_ALLOWANCE (room for the dense model that compression steps rebuild from), checked before
    each initialiser allocates. FileFormatError naming `path` otherwise."""
    where = f"load_model: {path}"
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise FileFormatError(f"{where}: recorded dtype {dtype!r} is not one of {', '.join(FLOAT_DTYPES)}")
    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str)
            and isinstance(arch.get("kwargs") or {}, dict)):
        raise FileFormatError(f"{where}: the recorded architecture is not {{'name': str, 'kwargs': {{...}}}}")
    if not isinstance(steps, list) or not all(
            isinstance(step, dict) and isinstance(step.get("config") or {}, dict) for step in steps):
        raise FileFormatError(f"{where}: the recorded compression is not a list of {{'method', 'config'}}")
    budget = sum(int(np.size(a)) for a in state.values()) + BUILD_ALLOWANCE
    for name, value in _integers(arch.get("kwargs") or {}, "kwargs"):
        if value > budget:
            raise FileFormatError(f"{where}: architecture {name} = {value} exceeds what the stored arrays "
                                  f"justify (their {budget - BUILD_ALLOWANCE:,} values + {BUILD_ALLOWANCE:,}); "
                                  "the file is inconsistent or crafted")
    return budget


def build_within(path, budget, build):
    """build() under init.build_budget(budget); FileFormatError naming `path` when it asks for more."""
    try:
        with init.build_budget(budget):
            return build()
    except init.BuildTooLarge as e:
        raise FileFormatError(f"load_model: {path}: {e}, more than its arrays justify") from None


def build_dense(constructor, arch, dtype=None):
    """constructor(**arch kwargs) with the engine's RNG left as it was, cast to `dtype`, recording arch_spec."""
    rng_state = engine_random.get_state()
    try:
        model = constructor(**dict(arch.get("kwargs") or {}))
    finally:
        engine_random.set_state(rng_state)
    if dtype is not None:
        model.astype(np.dtype(dtype))
    object.__setattr__(model, "arch_spec", {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})})
    return model


def load_state_strictly(model, state, path, what):
    """model.load_state_dict(state) after a one-line ValueError naming `path` when keys or shapes differ."""
    problem = structure_mismatch(model, state)
    if problem:
        raise ValueError(f"load_model: {path}: the rebuilt {what} does not fit the saved arrays ({problem})")
    model.load_state_dict(state)
    return model


# ---------------------------------------------------------------- dense models
def save_model(path, model, arch=None, metadata=None, verify=True):
    """Write the dense `model` to `path` (.npz, or .safetensors by extension); load_model(path) rebuilds it.

    arch: a layers.models.MODELS name, (name, kwargs) or {'name', 'kwargs'}; None uses what the
    model recorded (compressors.build_model, load_model). metadata: any JSON-able dict kept
    under 'user'. With verify the architecture is rebuilt now and compared with the model's
    keys and shapes, so a compressed model (whose layers the dense architecture lacks) is
    refused: compressors.save_model writes those. Returns the path.
    """
    spec = arch_spec(model, arch)
    meta, state = model_file_meta(model, spec, [], metadata)
    if verify:
        problem = structure_mismatch(build_dense(_dense_constructor(spec["name"]), spec), state)
        if problem:
            raise ValueError(f"save_model: arch {spec['name']!r} does not rebuild this model ({problem}); "
                             "pass the right arch=, or save a compressed model with compressors.save_model")
    return write_model_file(path, state, meta)


def load_model(path, device="cpu"):
    """The dense model saved at `path` by save_model, in eval mode (arrays loaded strictly)."""
    if os.path.isdir(path):
        raise ValueError(f"load_model: {path} is a folder (a train.py run folder?); {COMPRESSED_HINT}")
    arrays, meta = read_model_file(path)
    if meta.get("kind") != KIND and meta.get("kind") is not None:
        raise ValueError(f"load_model: {path} is a {meta.get('kind')!r} file; {COMPRESSED_HINT}")
    check_model_file(path, meta)
    arch, steps = meta.get("arch"), meta.get("compression") or []
    budget = check_recorded_model(path, arch, steps, meta.get("dtype"), arrays)
    from .models import MODELS
    if steps or arch.get("name") not in MODELS:
        what = f"compression {[s.get('method') for s in steps]}" if steps else f"architecture {arch.get('name')!r}"
        raise ValueError(f"load_model: {path} holds a model with {what}; {COMPRESSED_HINT}")
    model = build_within(path, budget, lambda: build_dense(MODELS[arch["name"]], arch, meta.get("dtype")))
    load_state_strictly(model, arrays, path, repr(arch["name"]))
    return model.to(device).eval()
