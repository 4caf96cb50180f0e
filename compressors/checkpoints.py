"""Checkpoints of compressed models and train.py runs, and the one model registry.

Model files (save_model / load_model / read_checkpoint) hold the state_dict, the architecture
(a name of the registry below and its kwargs) and the compression steps
[{"method": <a compressors.plugin.REGISTRY name>, "config": {...}}, ...]; the file layout is
layers.serialization's (engine.io .npz, or .safetensors with the metadata as JSON). load_model
builds the dense model, re-applies every step structurally through the method's
Compressor.rebuild (no data and no training: the saved arrays replace the fresh values) and
loads the arrays strictly. save_model reads the steps off the model with each method's
Compressor.describe. A new method needs no edit here: its module and its REGISTRY entry.

Run checkpoints (train.py's RUN_CHECKPOINT in a run folder): the model's arrays under
MODEL_PREFIX, the optimiser's under OPTIM_PREFIX, metadata of kind TRAIN_KIND recording
"architecture" {"model", "kwargs"} and "compressor" {"name", "config"} (the Compressor's
config() after the run), so load_model reads a run folder like a model file.
"""
import collections
import contextlib
import os

import numpy as np

from engine import io as engine_io
from engine import rng as engine_random
from engine.untrusted import FileFormatError
from layers import serialization as files
from layers.init import BuildTooLarge, build_budget

from . import plugin
from . import run_meta
from .run_meta import check_run_meta

KIND = files.KIND
TRAIN_KIND = run_meta.TRAIN_KIND
RUN_CHECKPOINT = "checkpoint.npz"
MODEL_PREFIX, OPTIM_PREFIX = "model/", "optim/"


# ---------------------------------------------------------------- the model registry
def model_names():
    """Every architecture name: layers.models.MODELS plus the models methods register (plugin.MODELS)."""
    from layers.models import MODELS
    return sorted(set(MODELS) | set(plugin.MODELS))


def model_constructor(name):
    """The constructor registered as `name`; ValueError listing the known names otherwise."""
    from layers.models import MODELS
    if name in MODELS:
        return MODELS[name]
    if name in plugin.MODELS:
        return plugin.resolve(plugin.MODELS[name])
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(model_names())}")


def build_model(name, **kwargs):
    """model_constructor(name)(**kwargs), remembering (name, kwargs) so save_model needs no arch=."""
    model = model_constructor(name)(**kwargs)
    object.__setattr__(model, "arch_spec", {"name": name, "kwargs": dict(kwargs)})
    return model


# ---------------------------------------------------------------- compression steps
def _method(name, i):
    if name not in plugin.REGISTRY:
        raise ValueError(f"compression step {i} has unknown method {name!r}; "
                         f"known: {', '.join(sorted(plugin.REGISTRY))}")
    return plugin.get(name)


def describe_compression(model):
    """The compression steps that turn the dense architecture into `model`, read off its modules
    by every registered method's describe, in REGISTRY order."""
    return [{"method": name, "config": config}
            for name in plugin.REGISTRY for config in plugin.get(name).describe(model)]


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
        try:
            _method(step["method"], i)
        except ValueError as e:
            raise ValueError(f"save_model: {e}") from None
        steps.append({"method": step["method"], "config": dict(step.get("config") or {})})
    return steps


def rebuild(arch, steps, state=None, dtype=None, budget=None):
    """The dense `arch` with every compression step re-applied (fresh values; the engine's RNG is left as it
    was); with `budget`, under layers.init.build_budget (an untrusted file's, from check_recorded_model)."""
    rng_state = engine_random.get_state()
    try:
        with contextlib.nullcontext() if budget is None else build_budget(budget):
            model = files.build_dense(model_constructor(arch["name"]), arch)
            for i, step in enumerate(steps):
                try:
                    method = _method(step.get("method"), i)
                except ValueError as e:
                    raise ValueError(f"load_model: {e}") from None
                method.rebuild(model, step.get("config") or {}, state)
    finally:
        engine_random.set_state(rng_state)
    if dtype is not None:
        model.astype(np.dtype(dtype))
    return model


# ---------------------------------------------------------------- model files
def save_model(path, model, arch=None, compression=None, metadata=None, verify=True):
    """Write `model` to `path` (.npz, or .safetensors by extension) so that load_model(path) rebuilds it.

    arch: a model_names() name, (name, kwargs) or {'name', 'kwargs'}; None uses what
    build_model/load_model recorded on the model. compression: None reads the steps off the
    model (describe_compression); or a list of {'method', 'config'} dicts / Compressor objects.
    metadata: any JSON-able dict kept under 'user'. With verify, the recorded recipe is rebuilt
    now and compared with the model's keys and shapes, so a checkpoint that would not load
    fails at save time. Returns the path.
    """
    spec = files.arch_spec(model, arch, model_constructor)
    steps = describe_compression(model) if compression is None else _normalize_steps(compression)
    meta, state = files.model_file_meta(model, spec, steps, metadata)
    if verify:
        problem = files.structure_mismatch(rebuild(spec, steps, state, meta["dtype"]), state)
        if problem:
            raise ValueError(f"save_model: arch {spec['name']!r} with compression "
                             f"{[s['method'] for s in steps]} does not rebuild this model ({problem}); "
                             "pass the right arch= / compression=")
    return files.write_model_file(path, state, meta)


def read_checkpoint(path):
    """(arch, compression steps, state dict, dtype) of a save_model file or a run checkpoint/run folder."""
    path = run_checkpoint_path(path)
    arrays, meta = files.read_model_file(path)
    if meta.get("kind") == TRAIN_KIND:
        check_run_meta(meta, path)
        arch = meta.get("architecture") or {}
        spec = {"name": arch.get("model"), "kwargs": arch.get("kwargs") or {}}
        compressor = meta.get("compressor") or {}
        name = compressor.get("name", "none")
        steps = [] if name in (None, "none") else [{"method": name, "config": compressor.get("config") or {}}]
        return spec, steps, _strip(arrays, MODEL_PREFIX), (meta.get("config") or {}).get("dtype")
    files.check_model_file(path, meta)
    return meta.get("arch"), meta.get("compression") or [], arrays, meta.get("dtype")


def load_model(path, device="cpu"):
    """The model saved at `path` (save_model file, run checkpoint or run folder), in eval mode.

    No user code is needed: the architecture is rebuilt, the recorded compression steps are
    re-applied and the arrays loaded (strictly: every key and shape must match).
    """
    arch, steps, state, dtype = read_checkpoint(path)
    budget = files.check_recorded_model(path, arch, steps, dtype, state)
    try:
        model = rebuild(arch, steps, state, dtype, budget)
    except BuildTooLarge as e:
        raise FileFormatError(f"load_model: {path}: {e}, more than its arrays justify") from None
    files.load_state_strictly(model, state, path,
                              f"{arch['name']!r} with compression {[s.get('method') for s in steps]}")
    object.__setattr__(model, "compression_steps", steps)
    return model.to(device).eval()


# ---------------------------------------------------------------- run checkpoints
def run_checkpoint_path(path):
    """`path` itself, or the RUN_CHECKPOINT inside it when it is a run folder."""
    return os.path.join(path, RUN_CHECKPOINT) if os.path.isdir(path) else path


def _strip(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def save_run_checkpoint(path, model, optimizer, meta, extra_arrays=None):
    """Write the model's and the optimiser's arrays, `extra_arrays` (the loop's own, named outside
    MODEL_PREFIX and OPTIM_PREFIX) and `meta` (kind TRAIN_KIND) to `path`, atomically."""
    arrays = {f"{MODEL_PREFIX}{k}": v for k, v in model.state_dict().items()}
    for name, value in (extra_arrays or {}).items():
        if name.startswith((MODEL_PREFIX, OPTIM_PREFIX)):
            raise ValueError(f"save_run_checkpoint: extra array {name!r} uses a reserved prefix")
        arrays[name] = value
    meta = dict(meta, kind=TRAIN_KIND)
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays.update({f"{OPTIM_PREFIX}{k}": v for k, v in state["arrays"].items()})
        meta["optimizer"] = {"step_count": state["step_count"], "lrs": state["lrs"]}
    engine_io.save(path, arrays, meta)
    return path


RunCheckpoint = collections.namedtuple("RunCheckpoint", "model_state optim_arrays meta extra_arrays")


def load_run_checkpoint(path):
    """RunCheckpoint(model state, optimiser arrays, metadata, extra arrays) of a run checkpoint (file or
    run folder). FileNotFoundError / ValueError (naming the file) when it is missing, corrupted or foreign."""
    path = run_checkpoint_path(path)
    arrays, meta = engine_io.load(path)
    check_run_meta(meta, path)
    extra = {k: v for k, v in arrays.items() if not k.startswith((MODEL_PREFIX, OPTIM_PREFIX))}
    return RunCheckpoint(_strip(arrays, MODEL_PREFIX), _strip(arrays, OPTIM_PREFIX), meta, extra)


def read_run_checkpoint(path):
    """(model state, optimiser arrays, metadata) of a run checkpoint (file or run folder); errors as
    load_run_checkpoint."""
    return tuple(load_run_checkpoint(path)[:3])


def read_run_meta(path):
    """The metadata of a run checkpoint (file or run folder); errors as read_run_checkpoint."""
    return engine_io.load(run_checkpoint_path(path))[1]
