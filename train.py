#!/usr/bin/env python3
"""Command line: train a task x model x compressor and write metrics.json, log.csv, checkpoint and summary.

Run ``python train.py`` for the built-in default (the adding problem, no download),
``python train.py --help`` for every flag. See README.md ("train.py") for the outputs.
"""
import argparse
import csv
import datetime
import inspect
import json
import math
import os
import signal
import sys
import time


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _threads_from_argv(argv):
    """Apply --threads N before NumPy loads its BLAS (it reads these variables once, at import)."""
    for i, word in enumerate(argv):
        value = word.split("=", 1)[1] if word.startswith("--threads=") else (
            argv[i + 1] if word == "--threads" and i + 1 < len(argv) else None)
        if value is not None and value.isdigit() and int(value) > 0:
            for name in THREAD_VARIABLES:
                os.environ[name] = value


if __name__ == "__main__":
    _threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402  (after --threads took effect)

import engine
from engine import backend, optim
from engine.argconfig import (ConfigError, HelpFormatter, check_values, explicit_dests, flatten_tables,
                              load_toml, nonnegative_float, nonnegative_int, option_actions, positive_float,
                              positive_int, unit_float, write_toml)
from engine import io as engine_io
from engine.kernels import numba_disabled
from engine.memory import retain_freed_memory
from engine.ops import distillation_loss
from engine import rng as engine_random
from engine.progress import progress
from tasks.augment import random_shift

EXIT_USAGE, EXIT_NONFINITE = 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
CHECKPOINT, TRAINED = "checkpoint.npz", "trained.npz"

# Per-task recipes: used for any of these settings the user leaves unset. The 'adding' recipe is
# the built-in default run (``python train.py``): T = 50, GRU of 32 units, Adam 1e-2 with a cosine
# schedule, 500 steps of 50 fresh sequences; it beats the trivial baseline (MSE 1/6) by about 70x
# in well under 3 minutes on 2 cores (RESULTS.md has the measurement).
RECIPES = {
    "adding": {"seq_len": 50, "hidden": 32, "optimizer": "adam", "lr": 1e-2, "batch_size": 50,
               "epochs": 5, "steps": 100, "clip_grad": 1.0, "lr_schedule": "cosine"},
    "copy": {"seq_len": 30, "hidden": 128, "optimizer": "rmsprop", "lr": 1e-3, "batch_size": 50,
             "epochs": 10, "steps": 200, "clip_grad": 1.0},
    "mnist": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 10},
    "ptb": {"optimizer": "sgd", "lr": 20.0, "batch_size": 20, "epochs": 4, "clip_grad": 0.25,
            "bptt": 35, "lr_schedule": "step", "lr_step": 1, "lr_gamma": 0.5},
    "ptb_char": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 4, "clip_grad": 1.0},
    "text": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 4, "clip_grad": 1.0},
}
GENERIC_DEFAULTS = {"optimizer": "adam", "batch_size": 64, "epochs": 5, "lr_schedule": "none"}
DEFAULT_LR = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3, "adam": 1e-3,
              "adadelta": 1.0}
# CLI option -> task constructor keyword
TASK_OPTIONS = {"seq_len": "T", "subset": "subset", "bptt": "bptt", "level": "level",
                "data_dir": "data_dir", "data_file": "data_file"}
# CLI option -> model constructor keyword
MODEL_OPTIONS = {"hidden": "hidden", "layers": "num_layers", "dropout": "dropout", "cell": "kind"}
# settings a --resume may change; any other differing flag is refused (it would change the run)
RESUME_MAY_CHANGE = {"threads", "device", "epochs", "finetune_epochs", "out", "resume", "config",
                     "no_progress", "log_every", "plot", "eval_batch_size", "detect_anomaly"}
NOT_IN_CONFIG_FILE = {"config", "resume", "out", "threads"}


class UserError(Exception):
    """A mistake in the command line, config or data: reported in one paragraph, exit status 2."""


class NonFiniteLoss(Exception):
    """The loss became NaN or Inf: training stops, the last good checkpoint stays."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------------------------------------
# command line and config file
# ---------------------------------------------------------------------------------------------
def _add_compressor_arguments(parser):
    """Let every registered compressor whose module imports add its flags; returns {name: error}."""
    from compressors import plugin
    failed, seen = {}, set()
    for name in sorted(plugin.REGISTRY):
        if name == "none":
            continue
        try:
            cls = plugin.get(name)
        except Exception as e:  # a method still being written must not break the CLI
            failed[name] = f"{type(e).__name__}: {e}"
            continue
        adder = cls.add_arguments
        if adder in seen:       # e.g. scada reusing tucker's flags
            continue
        seen.add(adder)
        group = parser.add_argument_group(f"{name} compression")
        try:
            adder(group)
        except argparse.ArgumentError as e:
            failed[name] = f"flags clash: {e}"
    return failed


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one paragraph (no 40-line usage block before them)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (python train.py --help lists every flag)\n")


def build_parser():
    p = _Parser(
        prog="train.py",
        description="Train a task x model x compressor; writes metrics.json, log.csv, checkpoint.npz, "
                    "config.toml and summary.md to --out. Unset options take the task's recipe "
                    "(RECIPES in train.py).",
        formatter_class=HelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--task", default="adding", help="task name (tasks.TASKS)")
    g.add_argument("--model", default=None, help="model name (layers.models.MODELS or wavelet_cnn); "
                   "default: the task's default model")
    g.add_argument("--compress", default="none", help="compression method (compressors.plugin.REGISTRY)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help="TOML file whose keys mirror the flags (- or _); flags given on the command line win")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=nonnegative_int, default=None, help="training epochs")
    g.add_argument("--steps", type=positive_int, default=None, help="steps per epoch (default: one pass)")
    g.add_argument("--batch-size", type=positive_int, default=None, help="training batch size")
    g.add_argument("--eval-batch-size", type=positive_int, default=256, help="batch size of evaluation")
    g.add_argument("--optimizer", default=None, choices=sorted(DEFAULT_LR),
                   help="momentum/nesterov: SGD with --momentum")
    g.add_argument("--lr", type=positive_float, default=None, help="default: per optimizer")
    g.add_argument("--momentum", type=nonnegative_float, default=0.9,
                   help="for --optimizer momentum/nesterov/rmsprop")
    g.add_argument("--lr-schedule", default=None, choices=["none", "step", "cosine"],
                   help="per-epoch learning-rate schedule")
    g.add_argument("--lr-step", type=positive_int, default=1, help="epochs between step decays")
    g.add_argument("--lr-gamma", type=positive_float, default=0.1, help="step decay factor")
    g.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="L2 penalty added to gradients")
    g.add_argument("--clip-grad", type=positive_float, default=None, help="max global gradient norm")
    g.add_argument("--seed", type=nonnegative_int, default=0, help="seeds initialisation and batch order")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="BLAS/OpenMP threads (sets OMP/OPENBLAS/MKL_NUM_THREADS before NumPy loads; use 1 on "
                        "a machine shared with other jobs). Default: the environment's setting")
    g.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="gpu needs CuPy")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter dtype")
    g.add_argument("--finetune-epochs", type=nonnegative_int, default=0,
                   help="epochs after the compressor's finalize step (e.g. truncation)")
    g.add_argument("--finetune-lr", type=positive_float, default=None, help="default: --lr")
    g = p.add_argument_group("task options")
    g.add_argument("--data-dir", default=None, help="directory of a real data set's files")
    g.add_argument("--data-file", default=None, help="a UTF-8 text file (task text)")
    g.add_argument("--seq-len", "-T", type=positive_int, default=None, help="sequence length T")
    g.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")
    g.add_argument("--bptt", type=positive_int, default=None, help="truncated back-propagation length")
    g.add_argument("--level", default=None, choices=["word", "char"], help="PTB level")
    g = p.add_argument_group("model options")
    g.add_argument("--hidden", type=positive_int, default=None, help="recurrent hidden size")
    g.add_argument("--layers", type=positive_int, default=None, help="stacked recurrent layers")
    g.add_argument("--dropout", type=nonnegative_float, default=None, help="dropout probability")
    g.add_argument("--cell", default=None, choices=["gru", "lstm"], help="recurrent cell of sequence_model")
    g.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="any other model keyword (value parsed as JSON when it can be); repeatable")
    g = p.add_argument_group("run folder and output")
    g.add_argument("--out", default=None, help="run folder (default runs/<task>-<model>-<compress>-<time>)")
    g.add_argument("--resume", default=None, metavar="PATH",
                   help="continue a run from its checkpoint (a run folder or checkpoint.npz)")
    g.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="load dense weights from a checkpoint before compressing")
    g.add_argument("--quantize-bits", type=int, choices=range(1, 9), default=None, metavar="BITS",
                   help="after training, also store every parameter as BITS-bit codes (1..8) with a per-tensor "
                        "range (compressors.quantize): writes quantized.npz and the quantized model's test "
                        "metrics, bytes and byte ratio under 'quantized' in metrics.json")
    g.add_argument("--plot", action="store_true", help="write training curves (needs matplotlib)")
    g.add_argument("--detect-anomaly", action="store_true", help="stop at the first op producing NaN/Inf")
    g.add_argument("--no-progress", action="store_true", help="no progress bar; a line every --log-every steps")
    g.add_argument("--log-every", type=nonnegative_int, default=50,
                   help="steps between progress lines when there is no bar (0: none)")
    g = p.add_argument_group("knowledge distillation (the student still starts from its own init)")
    g.add_argument("--distill-from", default=None, metavar="RUN",
                   help="a trained dense run (folder or checkpoint.npz) of the same --model, used as teacher: "
                        "the training objective becomes (1 - alpha) x task loss + alpha x T^2 x "
                        "KL(softmax(teacher / T) || softmax(student / T)); the logged train loss stays the task loss")
    g.add_argument("--distill-temp", type=positive_float, default=4.0, metavar="T",
                   help="softmax temperature of the soft targets (default 4)")
    g.add_argument("--distill-alpha", type=unit_float, default=0.5, metavar="A",
                   help="weight of the soft-target term in [0, 1] (default 0.5; 0 = plain task loss)")
    g = p.add_argument_group("data augmentation")
    g.add_argument("--augment-shift", type=nonnegative_int, default=0, metavar="PX",
                   help="move each training image by a random (dy, dx) in [-PX, PX] pixels, the uncovered "
                        "border filled with the image's minimum (its background); image tasks only; 0 = off")
    failed = _add_compressor_arguments(p)
    if failed:
        p.epilog = "compressors not available: " + "; ".join(f"{k} ({v})" for k, v in failed.items())
    return p


def parse_args(argv=None):
    """argparse Namespace: built-in defaults < --resume's saved config < --config file < command line.

    ``args.explicit`` holds the names the command line set.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)          # usage errors: argparse prints them and exits 2
    explicit = explicit_dests(parser, argv)
    layered = {}
    if args.resume:
        saved = _read_checkpoint_meta(args.resume).get("config", {})
        actions = option_actions(parser)
        layered.update({k: v for k, v in saved.items() if k in actions})
    if args.config:
        try:
            layered.update(check_values(flatten_tables(load_toml(args.config)), parser,
                                        f"--config {args.config}", excluded=NOT_IN_CONFIG_FILE))
        except ConfigError as e:
            raise UserError(str(e)) from None
    for key, value in layered.items():
        if key not in explicit:
            setattr(args, key, value)
    args.explicit = explicit
    args.argv = argv
    args.failed_compressors = parser.epilog
    args.parser = parser
    return args


def apply_recipe(args):
    """Fill unset settings from the task's recipe, then generic defaults; returns the recipe used."""
    recipe = RECIPES.get(args.task, {})
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key, value in GENERIC_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    args.recipe_keys = set(recipe)
    return recipe


def effective_config(args):
    """The settings of this run as a flat dict (what config.toml holds)."""
    actions = option_actions(args.parser)
    return {k: getattr(args, k) for k in actions
            if k not in NOT_IN_CONFIG_FILE and getattr(args, k, None) is not None}


def _write_text(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# building the task, the model and the compressor
# ---------------------------------------------------------------------------------------------
def _accepted_keywords(fn):
    """Keyword names `fn` accepts, or None when it takes **kwargs (anything)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _flag(dest):
    return "--" + dest.replace("_", "-")


def build_task(args):
    import tasks
    registry = getattr(tasks, "TASKS", None)
    if not registry:
        raise UserError("no tasks are available (tasks.TASKS is missing or empty)")
    if args.task not in registry:
        raise UserError(f"unknown task {args.task!r}; valid tasks: {', '.join(sorted(registry))}")
    constructor = registry[args.task]
    accepted = _accepted_keywords(constructor)
    options = _gather_options(args, TASK_OPTIONS, accepted, f"task {args.task!r}")
    return tasks.get_task(args.task, **options) if hasattr(tasks, "get_task") else constructor(**options)


def _gather_options(args, table, accepted, owner):
    """{keyword: value} for the flags in `table` (dest -> keyword) that were set.

    A flag the constructor does not accept is an error when the user gave it, and is
    dropped silently when only the task's recipe filled it in.
    """
    options = {}
    for dest, keyword in table.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if accepted is not None and keyword not in accepted:
            if dest in args.recipe_keys and dest not in args.explicit:
                continue
            raise UserError(f"{owner} takes no option {_flag(dest)}; it takes: "
                            f"{', '.join(sorted(accepted)) or 'nothing'}")
        options[keyword] = value
    return options


def model_registry():
    """name -> constructor: layers.models.MODELS plus the wavelet paper's CNN (imported lazily)."""
    try:
        from layers.models import MODELS
    except ImportError as e:
        raise UserError(f"layers.models is not available ({e})") from None
    names = dict(MODELS)
    names.setdefault("wavelet_cnn", None)
    return names


def model_constructor(name):
    registry = model_registry()
    if name not in registry:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(sorted(registry))}")
    if registry[name] is None:
        try:
            from compressors.wavelet import wavelet_cnn
        except ImportError as e:
            raise UserError(f"model 'wavelet_cnn' needs compressors.wavelet, which does not import ({e})")
        return wavelet_cnn
    return registry[name]


def _parse_model_arg(text):
    if "=" not in text:
        raise UserError(f"--model-arg expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def model_spec(args, task):
    """(model name, constructor kwargs) from the task's kwargs and the model options."""
    name = args.model or task.default_model
    if not name:
        raise UserError(f"task {args.task!r} has no default model; pass --model")
    constructor = model_constructor(name)
    accepted = _accepted_keywords(constructor)
    kwargs = dict(task.model_kwargs())
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.update(_gather_options(args, MODEL_OPTIONS, accepted, f"model {name!r}"))
    for text in args.model_arg or []:
        key, value = _parse_model_arg(text)
        if accepted is not None and key not in accepted:
            raise UserError(f"model {name!r} takes no keyword {key!r}; it takes: {', '.join(sorted(accepted))}")
        kwargs[key] = value
    return name, kwargs


def build_model(name, kwargs, args):
    """The dense model, its float parameters in --dtype, on --device."""
    model = model_constructor(name)(**kwargs)
    return _place(model, args)


def _place(model, args):
    if args.dtype == "float64":
        model.astype(np.float64)
    return model.to(args.device)


def build_compressor(args):
    if args.compress == "none":
        from compressors.plugin import Compressor
        return Compressor(args)
    from compressors import plugin
    if args.compress not in plugin.REGISTRY:
        raise UserError(f"unknown compressor {args.compress!r}; valid: {', '.join(sorted(plugin.REGISTRY))}")
    try:
        cls = plugin.get(args.compress)
    except (ImportError, AttributeError) as e:
        raise UserError(f"compressor {args.compress!r} is not available: {e}") from None
    return cls(args)


def compressor_args(args):
    """The flags belonging to the chosen compressor (dest prefixed with its name)."""
    prefix = args.compress + "_"
    return {k: v for k, v in vars(args).items()
            if k.startswith(prefix) and isinstance(v, (int, float, str, bool, list, type(None)))}


def make_optimizer(args, params, lr):
    params = [p for p in params if p.requires_grad]
    if not params:
        raise UserError("the model has no learnable parameters to train")
    kind, wd = args.optimizer, args.weight_decay
    if kind == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=wd)
    if kind in ("momentum", "nesterov"):
        return optim.SGD(params, lr=lr, momentum=args.momentum, nesterov=kind == "nesterov", weight_decay=wd)
    if kind == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=wd,
                             momentum=args.momentum if "momentum" in args.explicit else 0.0)
    if kind == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    if kind == "adadelta":
        return optim.Adadelta(params, lr=lr, weight_decay=wd)
    raise UserError(f"unknown optimizer {kind!r}; valid: {', '.join(sorted(DEFAULT_LR))}")


def make_scheduler(args, optimizer, epochs):
    if args.lr_schedule == "step":
        return optim.StepLR(optimizer, step_size=args.lr_step, gamma=args.lr_gamma)
    if args.lr_schedule == "cosine":
        return optim.CosineLR(optimizer, total_epochs=epochs)
    return None


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _checkpoint_path(path):
    return os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path


def _read_checkpoint_meta(path):
    try:
        _, meta = engine_io.load(_checkpoint_path(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"cannot read checkpoint: {e}") from None
    return meta


def save_checkpoint(path, model, optimizer, meta):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in state["arrays"].items()})
        meta = dict(meta, optimizer={"step_count": state["step_count"], "lrs": state["lrs"]})
    engine_io.save(path, arrays, meta)


def _split_checkpoint(arrays):
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return model_state, optim_arrays


def load_init_weights(model, path):
    """--init-from: copy a checkpoint's model weights into the dense model (strict)."""
    try:
        arrays, _ = engine_io.load(_checkpoint_path(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"--init-from: {e}") from None
    state, _ = _split_checkpoint(arrays)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"--init-from {path}: the weights do not fit the dense model ({e}); "
                        "--init-from expects a checkpoint of the same model trained without compression")


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
class SignalGuard:
    """First SIGINT/SIGTERM: remember it (training finishes the step, saves, exits); second: abort.

    Once the run is on its way out (checkpoint saved or abort begun), further signals are ignored
    until main() returns, so a late Ctrl-C cannot turn a clean exit into a traceback."""

    def __init__(self):
        self.received = None
        self.exiting = False
        self.previous = {}

    def __enter__(self):
        for signum in EXIT_SIGNAL:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:   # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.exiting:
            return
        if self.received is not None:
            self.exiting = True
            raise KeyboardInterrupt
        self.received = signum
        print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving a "
              "checkpoint (send it again to abort without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.received is None:
            self.restore()
        else:
            self.exiting = True      # main() restores the handlers once the exit is reported
        return False

    def interrupted(self):
        """The Interrupted exception to raise once the interrupt checkpoint is saved (repeats now ignored)."""
        self.exiting = True
        return Interrupted(self.received)

    def restore(self, process_ending=False):
        """Put back the handlers found on entry. When the process is about to exit after a signal,
        ignore repeats instead: Python resets its own handlers to the default during shutdown, so a
        late Ctrl-C would otherwise kill the process (status -2) instead of letting it exit 130."""
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if process_ending and self.exiting else handler)
        self.previous = {}


class Run:
    """One training run: state that the checkpoint must restore, and the loop."""

    def __init__(self, args):
        self.args = args
        self.out = None
        self.history = []
        self.seconds = 0.0
        self.global_step = 0
        self.teacher = None

    # ---- setup -------------------------------------------------------
    def setup(self):
        args = self.args
        self.resume_meta, self.resume_arrays = None, None
        if args.resume:
            path = _checkpoint_path(args.resume)
            try:
                self.resume_arrays, self.resume_meta = engine_io.load(path)
            except (FileNotFoundError, ValueError) as e:
                raise UserError(f"--resume: {e}") from None
            self._check_resume_changes(self.resume_meta.get("config", {}))
        self.recipe = apply_recipe(args)
        if args.device == "gpu" and not backend.gpu_available():
            raise UserError("--device gpu: CuPy with a CUDA device is not available "
                            "(pip install 'compactnet[gpu]' on a machine with an NVIDIA GPU)")
        self.task = build_task(args)
        self.model_name, self.model_kwargs = model_spec(args, self.task)
        natural = self.task.steps_per_epoch(args.batch_size)   # also where a task rejects the batch size
        try:
            next(iter(self.task.test_batches(args.eval_batch_size)), None)
        except ValueError as e:
            raise UserError(f"--eval-batch-size {args.eval_batch_size}: {e}") from None
        self.steps_per_epoch = args.steps or natural
        self.example = self._example_input()
        if args.augment_shift and np.ndim(self.example) != 4:
            raise UserError(f"--augment-shift needs image batches (B, C, H, W); task {args.task!r} gives "
                            f"inputs of shape {np.shape(self.example)}")
        self.compressor = build_compressor(args)
        self.out = self._out_dir()
        self.train_rng = np.random.default_rng(args.seed)

    def _check_resume_changes(self, saved):
        args = self.args
        for key in sorted(args.explicit - RESUME_MAY_CHANGE):
            if key in saved and saved[key] != getattr(args, key):
                raise UserError(f"--resume: {_flag(key)} was {saved[key]!r} in the saved run and cannot "
                                f"change on resume (only {', '.join(sorted(map(_flag, RESUME_MAY_CHANGE)))} can)")

    def _example_input(self):
        from compressors import report
        for inputs, targets in self.task.test_batches(2):
            self.example_targets = report.as_example(targets, 2)
            return report.as_example(inputs, 2)
        raise UserError(f"task {self.args.task!r} has no test batches")

    def _out_dir(self):
        args = self.args
        if args.out:
            out = args.out
        elif args.resume:
            out = os.path.dirname(os.path.abspath(_checkpoint_path(args.resume)))
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            base = os.path.join("runs", f"{args.task}-{self.model_name}-{args.compress}-{stamp}")
            out, n = base, 1
            while os.path.exists(out):
                n += 1
                out = f"{base}-{n}"
        os.makedirs(out, exist_ok=True)
        return out

    def example_on_device(self):
        x = backend.to_device(self.example, self.args.device)
        if x.dtype.kind == "f":
            x = x.astype(self.args.dtype)
        return x

    def build(self):
        """Dense model -> (--init-from) -> compressor.apply; dense counts taken before apply."""
        from compressors import report
        args = self.args
        engine.manual_seed(args.seed)
        try:
            model = build_model(self.model_name, self.model_kwargs, args)
        except (ValueError, TypeError) as e:
            raise UserError(f"--model {self.model_name} {self.model_kwargs}: {e}") from None
        try:
            self.dense_rows = report.summary(model, self.example_on_device())
        except (ValueError, TypeError) as e:
            raise UserError(f"model {self.model_name!r} does not fit the input of task {args.task!r}: {e}") from None
        if args.init_from:
            load_init_weights(model, args.init_from)
        try:
            model = self.compressor.apply(model, self.task)
        except (ValueError, TypeError) as e:
            raise UserError(f"--compress {args.compress}: {e}") from None
        model = _place(model, args)
        self._check_fits(model)
        if args.distill_from:
            self.teacher = self._build_teacher()
        return model

    def _build_teacher(self):
        """--distill-from: the dense --model with a trained run's weights, in eval mode (the engine's
        random state is restored afterwards, so the student's run is otherwise unchanged)."""
        args = self.args
        path = args.distill_from
        if getattr(self.task, "metric_name", None) != "accuracy":
            raise UserError(f"--distill-from needs a classification task (soft targets over classes); "
                            f"task {args.task!r} reports {getattr(self.task, 'metric_name', None)!r}")
        try:
            arrays, meta = engine_io.load(_checkpoint_path(path))
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--distill-from: cannot read the teacher's checkpoint: {e}") from None
        saved = (meta or {}).get("config", {})
        if saved.get("compress", "none") != "none":
            raise UserError(f"--distill-from {path}: the teacher must be a dense run (--compress none); "
                            f"it was trained with --compress {saved.get('compress')}")
        if saved.get("model") not in (None, self.model_name):
            raise UserError(f"--distill-from {path}: the teacher is a --model {saved.get('model')} run; "
                            f"this run trains --model {self.model_name}")
        state = engine_random.get_state()
        try:
            teacher = build_model(self.model_name, self.model_kwargs, args)
        finally:
            engine_random.set_state(state)
        weights, _ = _split_checkpoint(arrays)
        try:
            teacher.load_state_dict(weights)
        except (KeyError, ValueError) as e:
            raise UserError(f"--distill-from {path}: the weights do not fit a dense --model {self.model_name} "
                            f"({e})") from None
        teacher = _place(teacher, args)
        teacher.eval()
        return teacher

    def _check_fits(self, model):
        """One forward pass and loss on two test examples (eval mode, no graph): a model whose output
        does not suit the task's loss is a user error, reported before training starts."""
        x, y = self.to_batch(self.example, self.example_targets)
        model.eval()
        try:
            with engine.no_grad():
                self.task.loss(model(x), y)
        except (ValueError, TypeError) as e:
            raise UserError(f"model {self.model_name!r} (compression {self.args.compress!r}) does not fit "
                            f"task {self.args.task!r}: {e}") from None
        finally:
            model.train()

    def finalize(self, model):
        try:
            model = self.compressor.finalize(model, self.task)
        except (ValueError, TypeError) as e:
            raise UserError(f"--compress {self.args.compress}: finalize failed: {e}") from None
        return _place(model, self.args)

    # ---- checkpoint state --------------------------------------------
    def meta(self, phase, epoch, step_in_epoch, epoch_rng_state, partial):
        return {
            "kind": "compactnet-train-checkpoint",
            "config": effective_config(self.args),
            "architecture": {"model": self.model_name, "kwargs": self.model_kwargs},
            "compressor": {"name": self.args.compress, "config": self.compressor.config(),
                           "args": compressor_args(self.args)},
            "task": self.task.config() if hasattr(self.task, "config") else {"name": self.args.task},
            "phase": phase, "epoch": epoch, "step_in_epoch": step_in_epoch,
            "global_step": self.global_step, "seconds": self.seconds,
            "train_rng": epoch_rng_state, "engine_rng": engine_random.get_state(),
            "scheduler_epoch": self.scheduler.epoch if self.scheduler is not None else 0,
            "partial": partial, "history": self.history,
            "compressor_state": (self.compressor.state_dict()
                                 if hasattr(self.compressor, "state_dict") else None),
        }

    def restore(self, model, optimizer, meta, arrays):
        model_state, optim_arrays = _split_checkpoint(arrays)
        try:
            model.load_state_dict(model_state)
        except (KeyError, ValueError) as e:
            raise UserError(f"--resume: the checkpoint does not fit the rebuilt model ({e})") from None
        if optimizer is not None and "optimizer" in meta:
            optimizer.load_state_dict({"arrays": optim_arrays, **meta["optimizer"]})
        if self.scheduler is not None:
            self.scheduler.epoch = int(meta.get("scheduler_epoch", 0))
        engine_random.set_state(meta["engine_rng"])
        if meta.get("compressor_state") is not None and hasattr(self.compressor, "load_state_dict"):
            self.compressor.load_state_dict(meta["compressor_state"])

    # ---- the loop ----------------------------------------------------
    def to_batch(self, inputs, targets):
        args = self.args
        x = backend.to_device(np.asarray(inputs), args.device)
        if x.dtype.kind == "f" and x.dtype != args.dtype:
            x = x.astype(args.dtype)
        y = backend.to_device(np.asarray(targets), args.device)
        return engine.Tensor(x), y

    def train_step(self, model, optimizer, inputs, targets, where):
        if self.args.augment_shift:
            # shifts drawn from (seed, global step): the same on an exact resume, independent of batch order
            rng = np.random.default_rng([self.args.seed, self.global_step, 0xA6])
            inputs = random_shift(inputs, self.args.augment_shift, rng)
        x, y = self.to_batch(inputs, targets)
        output = model(x)
        loss = self.task.loss(output, y)
        objective = loss
        if self.teacher is not None:
            with engine.no_grad():
                teacher_output = self.teacher(x)
            objective = distillation_loss(output, teacher_output, loss, self.args.distill_temp,
                                          self.args.distill_alpha)
        extra = self.compressor.extra_loss(model)
        total = objective if extra is None else objective + extra
        loss_value = float(loss.item())
        extra_value = float(extra.item()) if extra is not None else 0.0
        if not (math.isfinite(loss_value) and math.isfinite(extra_value)):
            bad = "loss" if not math.isfinite(loss_value) else "extra (compression) loss"
            raise NonFiniteLoss(f"the {bad} became {loss_value if bad == 'loss' else extra_value} at {where}")
        optimizer.zero_grad()
        total.backward()
        if self.args.clip_grad:
            optim.clip_grad_norm([p for g in optimizer.param_groups for p in g["params"]], self.args.clip_grad)
        optimizer.step()
        self.compressor.on_step(optimizer, model)
        return loss_value, extra_value

    def run_phase(self, phase, model, optimizer, epochs, start):
        """Epochs of one phase ('train' or 'finetune'); `start` = (epoch, step_in_epoch, rng state, partial)."""
        args = self.args
        epoch, skip, rng_state, partial = start
        if rng_state is not None:
            self.train_rng.bit_generator.state = rng_state
        while epoch < epochs:
            epoch_state = self.train_rng.bit_generator.state
            sums = dict(partial or {"loss": 0.0, "extra": 0.0, "count": 0, "seconds": 0.0})
            partial = None
            label = f"{phase} epoch {epoch + 1}/{epochs}"
            bar = progress(self.steps_per_epoch, label, enabled=not args.no_progress, every=args.log_every)
            started = time.perf_counter()
            done = 0
            try:
                for i, (inputs, targets) in enumerate(self._epoch_batches()):
                    done = i + 1
                    if i < skip:
                        continue
                    where = f"{phase} epoch {epoch + 1}, step {i + 1} (global step {self.global_step + 1})"
                    loss_value, extra_value = self.train_step(model, optimizer, inputs, targets, where)
                    self.global_step += 1
                    sums["loss"] += loss_value
                    sums["extra"] += extra_value
                    sums["count"] += 1
                    bar.update(1, f"loss {loss_value:.4g}")
                    if self.guard.received is not None:
                        self._save_interrupted(phase, model, optimizer, epoch, done, epoch_state, sums, started)
            finally:
                bar.close()
            skip = 0
            lr_used = optimizer.lr
            if self.scheduler is not None:
                self.scheduler.step()
            evaluation = self.task.evaluate(model, args.eval_batch_size, split="test")
            sums["seconds"] += time.perf_counter() - started
            self.seconds += time.perf_counter() - started
            epoch += 1
            row = self._log_epoch(phase, epoch, epochs, sums, evaluation, lr_used, model)
            self.history.append(row)
            self._write_log()
            save_checkpoint(os.path.join(self.out, CHECKPOINT), model, optimizer,
                            self.meta(phase, epoch, 0, self.train_rng.bit_generator.state, None))
            if self.guard.received is not None:
                raise self.guard.interrupted()
            if done == 0:
                raise UserError(f"task {args.task!r} produced no training batches")

    def _epoch_batches(self):
        """steps_per_epoch batches, drawing further passes of the task's epoch when --steps asks for more."""
        count = 0
        while count < self.steps_per_epoch:
            before = count
            for batch in self.task.train_batches(self.args.batch_size, self.train_rng):
                yield batch
                count += 1
                if count == self.steps_per_epoch:
                    return
            if count == before:
                return

    def _save_interrupted(self, phase, model, optimizer, epoch, done, epoch_state, sums, started):
        sums = dict(sums, seconds=sums["seconds"] + time.perf_counter() - started)
        self.seconds += time.perf_counter() - started
        save_checkpoint(os.path.join(self.out, CHECKPOINT), model, optimizer,
                        self.meta(phase, epoch, done, epoch_state, sums))
        raise self.guard.interrupted()

    def _log_epoch(self, phase, epoch, epochs, sums, evaluation, lr, model):
        metric_name = self.task.metric_name
        count = max(1, sums["count"])
        row = {"phase": phase, "epoch": epoch, "step": self.global_step,
               "train_loss": sums["loss"] / count, "extra_loss": sums["extra"] / count,
               "test_loss": float(evaluation.get("loss", float("nan"))),
               "metric": float(evaluation[metric_name]), "lr": lr, "seconds": sums["seconds"]}
        for key, value in evaluation.items():
            if key not in ("loss", metric_name) and isinstance(value, (int, float)):
                row[f"test_{key}"] = float(value)
        if hasattr(self.compressor, "log_values"):
            for key, value in (self.compressor.log_values(model) or {}).items():
                row[key] = float(value)
        others = "".join(f"  {k} {v:.4g}" for k, v in row.items()
                         if k not in ("phase", "epoch", "step", "train_loss", "extra_loss", "test_loss",
                                      "metric", "lr", "seconds"))
        extra = f"  extra {row['extra_loss']:.4g}" if self.args.compress != "none" else ""
        print(f"{phase} epoch {epoch}/{epochs}  step {self.global_step}  train_loss {row['train_loss']:.4g}"
              f"{extra}  test {metric_name} {row['metric']:.4g}{others}  lr {row['lr']:.3g}  "
              f"{row['seconds']:.1f}s", flush=True)
        return row

    def _write_log(self):
        columns = ["phase", "epoch", "step", "train_loss", "extra_loss", "test_loss", "metric", "lr", "seconds"]
        for row in self.history:
            columns += [k for k in row if k not in columns]
        tmp = os.path.join(self.out, "log.csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, os.path.join(self.out, "log.csv"))

    # ---- whole run ---------------------------------------------------
    def execute(self):
        args = self.args
        meta, arrays = self.resume_meta, self.resume_arrays
        phase = meta["phase"] if meta else "train"
        trained = None
        if meta and phase != "train":
            trained = self._load_trained()
            if args.epochs > trained[1]["epoch"]:      # a finished run given more --epochs: train on
                print(f"extending training from {trained[1]['epoch']} to {args.epochs} epochs", flush=True)
                arrays, meta = trained
                phase = "train"
        if meta:
            self.history = list(meta.get("history", []))
            self.seconds = float(meta.get("seconds", 0.0))
            self.global_step = int(meta.get("global_step", 0))
            print(f"resuming {_checkpoint_path(args.resume)}: {phase} phase, epoch {meta['epoch']}, "
                  f"step {meta['step_in_epoch']} in that epoch (global step {self.global_step})", flush=True)
        write_toml(os.path.join(self.out, "config.toml"), effective_config(args),
                   header="effective settings of this run; rerun with: python train.py --config config.toml")
        model = self.build()
        self._print_header(model)
        with self.guard:
            if phase == "train":
                optimizer = make_optimizer(args, model.parameters(), args.lr)
                self.scheduler = make_scheduler(args, optimizer, args.epochs)
                start = (0, 0, None, None)
                if meta:
                    self.restore(model, optimizer, meta, arrays)
                    start = (meta["epoch"], meta["step_in_epoch"], meta["train_rng"], meta.get("partial"))
                if args.epochs:
                    self.run_phase("train", model, optimizer, args.epochs, start)
                # the model before finalize, resumable as a train-phase checkpoint (to rebuild or extend)
                save_checkpoint(os.path.join(self.out, TRAINED), model, optimizer,
                                self.meta("train", args.epochs, 0, self.train_rng.bit_generator.state, None))
                start = (0, 0, None, None)
                model = self.finalize(model)
            else:
                self.scheduler = None
                self.restore(model, None, trained[1], trained[0])
                model = self.finalize(model)
                start = (meta["epoch"], meta["step_in_epoch"], meta["train_rng"], meta.get("partial"))
            optimizer = make_optimizer(args, model.parameters(), args.finetune_lr or args.lr)
            self.scheduler = make_scheduler(args, optimizer, args.finetune_epochs)
            if phase == "finetune":
                self.restore(model, optimizer, meta, arrays)
            if args.finetune_epochs:
                self.run_phase("finetune", model, optimizer, args.finetune_epochs, start)
            save_checkpoint(os.path.join(self.out, CHECKPOINT), model, optimizer,
                            self.meta("finetune", args.finetune_epochs, 0,
                                      self.train_rng.bit_generator.state, None))
        return self.report(model)

    def _load_trained(self):
        """(arrays, meta) of trained.npz beside the checkpoint being resumed."""
        path = os.path.join(os.path.dirname(os.path.abspath(_checkpoint_path(self.args.resume))), TRAINED)
        try:
            return engine_io.load(path)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--resume: a checkpoint after training needs {TRAINED} beside it ({e})") from None

    def _print_header(self, model):
        args = self.args
        print(f"task {args.task}  model {self.model_name} {self.model_kwargs}  compress {args.compress}  "
              f"params {model.num_parameters():,}  optimizer {args.optimizer} lr {args.lr:g}  "
              f"epochs {args.epochs} x {self.steps_per_epoch} steps  batch {args.batch_size}  "
              f"device {args.device}  out {self.out}", flush=True)

    def report(self, model):
        from compressors import report
        args = self.args
        evaluation = self.task.evaluate(model, args.eval_batch_size, split="test")
        rows = report.summary(model, self.example_on_device())
        comparison = report.compare_rows(self.dense_rows, rows)
        baseline = self.task.trivial_baseline()
        metric_name = self.task.metric_name
        value = float(evaluation[metric_name])
        metrics = {
            "task": args.task, "model": self.model_name, "compressor": args.compress,
            "seed": args.seed, "device": args.device, "dtype": args.dtype,
            "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
            "steps": self.global_step, "steps_per_epoch": self.steps_per_epoch,
            "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
            "seconds": round(self.seconds, 3),
            "params": {"dense": comparison["params"]["dense"], "compressed": comparison["params"]["compressed"],
                       "ratio": comparison["params"]["ratio"],
                       "learnable": comparison["learnable"]["compressed"]},
            "flops": {"dense": comparison["flops"]["dense"], "compressed": comparison["flops"]["compressed"],
                      "ratio": comparison["flops"]["ratio"]},
            "bytes": {"dense": comparison["bytes"]["dense"], "compressed": comparison["bytes"]["compressed"],
                      "ratio": comparison["bytes"]["ratio"]},
            "metric": {"name": metric_name, "value": value, "split": "test",
                       "higher_is_better": bool(self.task.higher_is_better)},
            "test": {k: v for k, v in evaluation.items() if isinstance(v, (int, float, str))},
            "baseline": baseline,
            "compressor_config": self.compressor.config(),
            "task_config": self.task.config() if hasattr(self.task, "config") else {"name": args.task},
            "model_kwargs": self.model_kwargs,
            "history": self.history,
            "command": "python train.py " + " ".join(args.argv),
        }
        quantized_line = ""
        if args.quantize_bits:
            from compressors import quantize
            quantized = quantize.quantized_evaluation(
                model, args.quantize_bits, lambda m: self.task.evaluate(m, args.eval_batch_size, split="test"),
                dense_bytes=comparison["bytes"]["dense"], path=os.path.join(self.out, "quantized.npz"))
            metrics["quantized"] = quantized
            quantized_line = (f"\n{args.quantize_bits}-bit storage: {quantized['bytes']:,} bytes "
                              f"({quantized['ratio']:.1f}x), test {metric_name} "
                              f"{float(quantized['test'][metric_name]):.4g}")
        _write_text(os.path.join(self.out, "metrics.json"), json.dumps(metrics, indent=2, default=_json_default))
        table = report.format_summary(rows)
        versus = report.format_compare(comparison)
        base_value = baseline.get(metric_name)
        verdict = ""
        if isinstance(base_value, (int, float)):
            better = value > base_value if self.task.higher_is_better else value < base_value
            verdict = f"  (trivial baseline {base_value:.4g}: {'beaten' if better else 'NOT beaten'})"
        headline = f"test {metric_name} {value:.4g}{verdict}{quantized_line}"
        _write_text(os.path.join(self.out, "summary.md"),
                    f"# {args.task} / {self.model_name} / {args.compress}\n\n{headline}\n\n"
                    f"## Layers\n\n{table}\n\n## Dense vs compressed\n\n{versus}\n")
        print(f"\n{table}\n\n{versus}\n\n{headline}  params {comparison['params']['compressed']:,}  "
              f"time {self.seconds:.1f}s\nrun folder: {self.out}", flush=True)
        if args.plot:
            self.plot(model)
        return metrics

    def plot(self, model):
        """compressors.plots.plot_run when that module exists (all figures), else the training curves here."""
        try:
            from compressors import plots
        except ImportError:
            plots = None
        if plots is not None and hasattr(plots, "plot_run"):
            try:
                plots.plot_run(self.out, model=model, compressor=self.compressor)
                return
            except Exception as e:  # a figure must never cost the finished run
                print(f"--plot: compressors.plots.plot_run failed ({type(e).__name__}: {e}); "
                      "writing the training curves only", file=sys.stderr)
        self.plot_curves(model)

    def plot_curves(self, model):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("--plot: matplotlib is not installed (pip install 'compactnet[plot]'); no plots written",
                  file=sys.stderr)
            return
        epochs = range(1, len(self.history) + 1)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        left.plot(epochs, [r["train_loss"] for r in self.history], marker=".", label="train loss")
        left.plot(epochs, [r["test_loss"] for r in self.history], marker=".", label="test loss")
        left.set_xlabel("epoch")
        left.set_yscale("log")
        left.legend()
        right.plot(epochs, [r["metric"] for r in self.history], marker=".")
        for axis in (left, right):
            axis.xaxis.get_major_locator().set_params(integer=True)
        right.set_xlabel("epoch")
        right.set_ylabel(f"test {self.task.metric_name}")
        fig.suptitle(f"{self.args.task} / {self.model_name} / {self.args.compress}")
        fig.tight_layout()
        fig.savefig(os.path.join(self.out, "training_curves.png"), dpi=120)
        plt.close(fig)
        if hasattr(self.compressor, "plot"):      # method-specific figures (filters, spectra, ranks...)
            try:
                self.compressor.plot(model, self.out)
            except Exception as e:  # a figure must never cost the finished run
                print(f"--plot: the {self.args.compress} plots failed: {type(e).__name__}: {e}", file=sys.stderr)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _user_message(error):
    text = " ".join(str(error).split())
    return f"train.py: error: {text}"


def main(argv=None):
    """Run train.py; returns the process exit status. argv None means the command line (train.py or the
    compactnet-train script): main() then owns the process, which exits when it returns."""
    debug = os.environ.get("COMPACTNET_TRACEBACK") == "1"
    run = guard = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as e:       # argparse: --help (0) or a usage error (2), already printed
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        retain_freed_memory()   # large per-step temporaries reuse heap pages (engine/memory.py)
        run = Run(args)
        run.guard = guard = SignalGuard()
        try:
            numba_disabled()   # a bad COMPACTNET_DISABLE_NUMBA value is a usage error, before any kernel runs
            run.setup()
        except (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError) as e:
            if debug:
                raise
            raise UserError(str(e)) from None
        context = engine.detect_anomaly() if args.detect_anomaly else _null_context()
        with context:
            run.execute()
        return 0
    except UserError as e:
        if debug:
            raise
        print(_user_message(e), file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLoss as e:
        where = run.out if run.out else "the run folder"
        print(f"train.py: stopped: {e}. The last good checkpoint (if any) is kept in {where}; try a "
              "smaller --lr, --clip-grad, or --detect-anomaly to find the op.", file=sys.stderr)
        return EXIT_NONFINITE
    except FloatingPointError as e:
        print(f"train.py: stopped by --detect-anomaly: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    except KeyboardInterrupt:
        print("train.py: aborted (interrupted before training started, or a second time: nothing saved "
              "beyond the last checkpoint)", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    except Interrupted as e:
        print(f"train.py: interrupted; resumable checkpoint saved: "
              f"python train.py --resume {os.path.join(run.out, CHECKPOINT)}", file=sys.stderr)
        return EXIT_SIGNAL.get(e.signum, 130)
    finally:
        if guard is not None:
            guard.restore(process_ending=argv is None)


class _null_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
