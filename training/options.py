"""The command line: flags, per-task recipes and defaults, the --config/--resume layering, the effective config."""
import argparse
import os
import sys

import tasks
from compressors import checkpoints, plugin
from training.argconfig import (ConfigError, HelpFormatter, check_values, explicit_dests, flatten_tables,
                                load_toml, nonnegative_float, nonnegative_int, option_actions, positive_float,
                                positive_int, threads_value, unit_float)
from training.checkpoint import read_checkpoint_meta
from training.divergence import DEFAULT_FACTOR, DEFAULT_PATIENCE
from training.errors import EXIT_USAGE, UserError
from training.selection import SELECT_RULES

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

# settings a --resume may change; any other differing flag is refused (it would change the run)
RESUME_MAY_CHANGE = {"threads", "device", "distributed", "epochs", "finetune_epochs", "out", "resume", "config",
                     "no_progress", "log_every", "plot", "export_onnx", "eval_batch_size", "detect_anomaly",
                     "overwrite", "diverge_factor", "diverge_patience"}
NOT_IN_CONFIG_FILE = {"config", "resume", "out", "threads", "overwrite"}


def flag(dest):
    """The command-line spelling of an option's dest: batch_size -> --batch-size."""
    return "--" + dest.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one paragraph (no 40-line usage block before them)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} ({self.prog} --help lists every flag)\n")


def program_name():
    """How the user called us: compactnet-train (the console script) or train.py."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "compactnet-train" if called.startswith("compactnet-train") else "train.py"


def build_parser():
    parser = _Parser(
        prog=program_name(),
        description="Train a task x model x compressor; writes metrics.json, log.csv, checkpoint.npz, "
                    "config.toml and summary.md to --out. Unset options take the task's recipe "
                    "(RECIPES in training/options.py).",
        formatter_class=HelpFormatter)
    for add_group in (_what_to_train, _training_options, _task_options, _model_options, _output_options,
                      _distillation_options, _augmentation_options, _compressor_options):
        add_group(parser)
    return parser


def _what_to_train(parser):
    g = parser.add_argument_group("what to train")
    g.add_argument("--task", default="adding", help=f"one of {', '.join(sorted(tasks.TASKS))}")
    defaults = ", ".join(f"{name} {getattr(task, 'func', task).default_model}"
                         for name, task in sorted(tasks.TASKS.items()))
    g.add_argument("--model", default=None, help=f"one of {', '.join(checkpoints.model_names())}; default: the "
                   f"task's default model ({defaults})")
    g.add_argument("--compress", default="none", help=f"one of {', '.join(sorted(plugin.REGISTRY))}")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help="TOML file whose keys mirror the flags (- or _); flags given on the command line win")


def _training_options(parser):
    g = parser.add_argument_group("training")
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
    g.add_argument("--threads", type=threads_value, default=None, metavar="N|auto",
                   help="BLAS/OpenMP threads: N sets OMP/OPENBLAS/MKL_NUM_THREADS before NumPy loads (a fixed "
                        "count: bit-exact reruns); auto uses the cores other processes leave free, re-checked "
                        "every second during the run (with the extra 'threads'; without it, once at start). "
                        "Default: auto, unless one of those variables is set (then the environment's setting) "
                        "or under mpiexec (each rank's share of the cores)")
    g.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="gpu needs CuPy")
    g.add_argument("--distributed", default="auto", choices=["auto", "mpi", "none"],
                   help="data-parallel training over MPI (mpiexec -n N python train.py ...; --batch-size is "
                        "the global batch); auto: MPI when an MPI launcher started the process and mpi4py "
                        "imports; mpi needs the extra 'mpi'; none: one process")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter dtype")
    g.add_argument("--finetune-epochs", type=nonnegative_int, default=0,
                   help="epochs after the compressor's finalize step (e.g. truncation)")
    g.add_argument("--finetune-lr", type=positive_float, default=None, help="default: --lr")
    g.add_argument("--diverge-factor", type=nonnegative_float, default=DEFAULT_FACTOR, metavar="F",
                   help="stop (exit 3) when the training loss stays above F x max(starting loss, 1) for "
                        "--diverge-patience steps in a row (training/divergence.py); 0 = never")
    g.add_argument("--diverge-patience", type=positive_int, default=DEFAULT_PATIENCE, metavar="STEPS",
                   help="consecutive steps above the --diverge-factor limit that stop the run")
    g.add_argument("--select", default="last", choices=list(SELECT_RULES),
                   help="which epoch the run reports. last: the final one. best-valid: the epoch with the best "
                        "validation metric (higher accuracy, lower MSE/perplexity), whose weights are restored "
                        "before the one final test evaluation; chosen within each phase: the best train epoch "
                        "is restored before the compressor's finalize step, then (with --finetune-epochs) the "
                        "best finetune epoch before the final evaluation; --quantize-bits quantizes the "
                        "selected model. Needs a validation split (not --valid-size 0)")


def _task_options(parser):
    g = parser.add_argument_group("task options")
    g.add_argument("--data-dir", default=None,
                   help="folder of a real data set's files (mnist, ptb); without it: $COMPACTNET_DATA/NAME, then "
                        "the user cache ~/.cache/compactnet/NAME, where mnist downloads go")
    g.add_argument("--data-file", default=None, help="a UTF-8 text file (task text)")
    g.add_argument("--seq-len", "-T", type=positive_int, default=None, help="sequence length T")
    g.add_argument("--subset", type=positive_int, default=None, help="use the first N training examples")
    g.add_argument("--valid-size", type=nonnegative_int, default=None, metavar="N",
                   help="validation examples held out (never trained on). mnist: the last N images of the "
                        "training file (default: its last twelfth, rounded down: 5,000 of the 60,000; at most "
                        "one fewer than the file holds), --subset then takes the first examples of the rest; "
                        "adding/copy: the size of the fixed validation set (default 1,000). 0: no validation "
                        "split (mnist then trains on the whole file, or --subset's first N). ptb, ptb_char "
                        "and text have a fixed split "
                        "(ptb.valid.txt; the text's 5%% after its first 90%%) and refuse this option")
    g.add_argument("--bptt", type=positive_int, default=None, help="truncated back-propagation length")
    g.add_argument("--level", default=None, choices=["word", "char"], help="PTB level")
    g.add_argument("--input-scale", default=None, choices=["standard", "unit"],
                   help="mnist pixels: standard = (x/255 - 0.1307)/0.3081 (the default), unit = x/255 in [0, 1] "
                        "(for a network trained on ToTensor() inputs, e.g. imported from PyTorch)")


def _model_options(parser):
    g = parser.add_argument_group("model options")
    g.add_argument("--hidden", type=positive_int, default=None, help="recurrent hidden size")
    g.add_argument("--layers", type=positive_int, default=None, help="stacked recurrent layers")
    g.add_argument("--dropout", type=nonnegative_float, default=None, help="dropout probability")
    g.add_argument("--cell", default=None, choices=["gru", "lstm"], help="recurrent cell of sequence_model")
    g.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="any other model keyword (value parsed as JSON when it can be); repeatable")


def _output_options(parser):
    g = parser.add_argument_group("run folder and output")
    g.add_argument("--out", default=None, help="run folder (default runs/<task>-<model>-<compress>-<time>)")
    g.add_argument("--resume", default=None, metavar="PATH",
                   help="continue a run from its checkpoint (a run folder or checkpoint.npz)")
    g.add_argument("--overwrite", action="store_true",
                   help="use an --out folder that is not empty: first delete the files train.py writes there "
                        "(checkpoints, metrics, logs, config, plots; other files stay). Without it such a "
                        "folder is refused; --resume continues the run in it")
    g.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="load dense weights from a checkpoint before compressing")
    g.add_argument("--quantize-bits", type=int, choices=range(1, 9), default=None, metavar="BITS",
                   help="after training, also store every parameter as BITS-bit codes (1..8) with a per-tensor "
                        "range (compressors.quantize): writes quantized.npz and the quantized model's test "
                        "metrics, bytes and byte ratio under 'quantized' in metrics.json")
    g.add_argument("--plot", action="store_true", help="write training curves (needs matplotlib)")
    g.add_argument("--export-onnx", action="store_true",
                   help="also write model.onnx with the compressed structure kept (extra onnx; quantized codes "
                        "with --quantize-bits); python -m compressors.onnx RUN exports a finished run folder")
    g.add_argument("--detect-anomaly", action="store_true", help="stop at the first op producing NaN/Inf")
    g.add_argument("--no-progress", action="store_true", help="no progress bar; a line every --log-every steps")
    g.add_argument("--log-every", type=nonnegative_int, default=50,
                   help="steps between progress lines when there is no bar (0: none)")


def _distillation_options(parser):
    g = parser.add_argument_group("knowledge distillation (the student still starts from its own init)")
    g.add_argument("--distill-from", default=None, metavar="RUN",
                   help="a trained dense run (folder or checkpoint.npz) of the same --model, used as teacher: "
                        "the training objective becomes (1 - alpha) x task loss + alpha x T^2 x "
                        "KL(softmax(teacher / T) || softmax(student / T)); the logged train loss stays the task loss")
    g.add_argument("--distill-temp", type=positive_float, default=4.0, metavar="T",
                   help="softmax temperature of the soft targets (default 4)")
    g.add_argument("--distill-alpha", type=unit_float, default=0.5, metavar="A",
                   help="weight of the soft-target term in [0, 1] (default 0.5; 0 = plain task loss)")


def _augmentation_options(parser):
    g = parser.add_argument_group("data augmentation")
    g.add_argument("--augment-shift", type=nonnegative_int, default=0, metavar="PX",
                   help="move each training image by a random (dy, dx) in [-PX, PX] pixels, the uncovered "
                        "border filled with the image's minimum (its background); image tasks only; 0 = off")


def _compressor_options(parser):
    """Every registered compressor's flags, one group each; methods sharing one adder (tucker and scada)
    share one group named after all of them."""
    users = {}
    for name in plugin.REGISTRY:
        if name != "none":
            users.setdefault(plugin.get(name).add_arguments, []).append(name)
    for adder, names in users.items():
        adder(parser.add_argument_group(f"{' and '.join(names)} compression"))


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
        saved_meta = read_checkpoint_meta(args.resume)
        saved = saved_meta.get("config", {})
        if "threads" in saved_meta:
            args.saved_threads = saved_meta["threads"]
        layered.update(_saved_settings(saved, parser, args.resume))
    from_config = {}
    if args.config:
        try:
            from_config = check_values(flatten_tables(load_toml(args.config)), parser,
                                       f"--config {args.config}", excluded=NOT_IN_CONFIG_FILE)
        except ConfigError as e:
            raise UserError(str(e)) from None
        layered.update(from_config)
    for key, value in layered.items():
        if key not in explicit:
            setattr(args, key, value)
    args.explicit = explicit
    args.chosen = explicit | set(from_config)   # what this invocation sets: a --resume checks every one
    args.argv = argv
    args.parser = parser
    return args


def _saved_settings(saved, parser, path):
    """A checkpoint's saved config (untrusted: checked like a --config file), keeping the keys that are
    options of this version (a newer or older run may record others)."""
    if not isinstance(saved, dict):
        raise UserError(f"--resume {path}: the saved config is not a table of settings")
    actions = option_actions(parser)
    known = {k: v for k, v in saved.items() if k in actions and k not in NOT_IN_CONFIG_FILE and v is not None}
    try:
        return check_values(known, parser, f"--resume {path}: saved config", excluded=NOT_IN_CONFIG_FILE)
    except ConfigError as e:
        raise UserError(str(e)) from None


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


def compressor_args(args):
    """The flags belonging to the chosen compressor (dest prefixed with its name)."""
    prefix = args.compress + "_"
    return {k: v for k, v in vars(args).items()
            if k.startswith(prefix) and isinstance(v, (int, float, str, bool, list, type(None)))}
