"""Checking a run checkpoint's metadata (kind and field types) before train.py or load_model acts on it."""
from engine.untrusted import FileFormatError

TRAIN_KIND = "compactnet-train-checkpoint"
_COUNTS = ("epoch", "step_in_epoch", "global_step", "scheduler_epoch")
RESUME_FIELDS = ("phase", "epoch", "step_in_epoch", "global_step", "train_rng", "engine_rng")   # --resume's needs
_OBJECTS = ("config", "architecture", "compressor", "task", "partial", "best", "optimizer", "divergence")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rng(value, where, key):
    """A NumPy PCG64 state as bit_generator.state gives it."""
    state = value.get("state") if isinstance(value, dict) else None
    ok = (isinstance(state, dict) and value.get("bit_generator") == "PCG64"
          and all(_is_count_or_big(state.get(k)) for k in ("state", "inc"))
          and value.get("has_uint32") in (0, 1) and _is_count_or_big(value.get("uinteger")))
    if not ok:
        raise FileFormatError(f"{where}: {key} is not a PCG64 generator state")


def _is_count_or_none(value):
    return value is None or _is_count(value)


def _is_count_or_big(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 128


def check_run_meta(meta, where, required=()):
    """FileFormatError naming `where` unless `meta` is a run checkpoint's (TRAIN_KIND) holding the
    `required` fields, whose present fields have the types train.py writes (counts, numbers, objects,
    lists, generator states)."""
    if meta.get("kind") != TRAIN_KIND:
        raise FileFormatError(f"{where} is not a train.py run checkpoint (kind {meta.get('kind')!r}); --resume, "
                              "--init-from and --distill-from take a run folder or its checkpoint.npz")
    missing = [key for key in required if key not in meta]
    if missing:
        raise FileFormatError(f"{where}: the run checkpoint lacks {', '.join(missing)}")
    if "phase" in meta and meta["phase"] not in ("train", "finetune"):
        raise FileFormatError(f"{where}: phase {meta['phase']!r} is neither 'train' nor 'finetune'")
    for key in _COUNTS:
        if key in meta and not _is_count(meta[key]):
            raise FileFormatError(f"{where}: {key} = {meta[key]!r} is not a count")
    for key in _OBJECTS:
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise FileFormatError(f"{where}: {key} is not a JSON object")
    if "seconds" in meta and not _is_number(meta["seconds"]):
        raise FileFormatError(f"{where}: seconds = {meta['seconds']!r} is not a number")
    if "threads" in meta and meta["threads"] is not None and not (_is_count(meta["threads"]) and meta["threads"]):
        raise FileFormatError(f"{where}: threads = {meta['threads']!r} is not a positive count")
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise FileFormatError(f"{where}: history is not a list of objects")
    for key in ("train_rng", "engine_rng"):
        if key in meta:
            _check_rng(meta[key], where, key)
    _check_parts(meta, where)


def _check_parts(meta, where):
    partial = meta.get("partial")
    if partial and not all(_is_number(partial.get(k)) for k in ("loss", "extra", "count", "seconds")):
        raise FileFormatError(f"{where}: partial epoch sums are not numbers")
    optimizer = meta.get("optimizer")
    if optimizer and not (_is_count(optimizer.get("step_count")) and isinstance(optimizer.get("lrs"), list)
                          and all(_is_number(lr) for lr in optimizer["lrs"])):
        raise FileFormatError(f"{where}: optimizer state is not a step count and a list of learning rates")
    architecture = meta.get("architecture")
    if architecture and not (isinstance(architecture.get("model"), str)
                             and isinstance(architecture.get("kwargs") or {}, dict)):
        raise FileFormatError(f"{where}: architecture is not {{'model': str, 'kwargs': {{...}}}}")
    best = meta.get("best")
    if best and not (best.get("phase") in ("train", "finetune", None) and _is_count_or_none(best.get("epoch"))
                     and (best.get("value") is None or _is_number(best.get("value")))
                     and isinstance(best.get("earlier") or {}, dict)):
        raise FileFormatError(f"{where}: the kept best epoch (best) is not a phase, an epoch and a value")
    compressor = meta.get("compressor")
    if compressor and not (isinstance(compressor.get("name", "none"), (str, type(None)))
                           and isinstance(compressor.get("config") or {}, dict)):
        raise FileFormatError(f"{where}: compressor is not {{'name': str, 'config': {{...}}}}")
