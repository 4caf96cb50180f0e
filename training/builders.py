"""Building a run's parts from its options: the task, the model, the compressor, the optimizer, the schedule."""
import inspect
import json

import numpy as np

import tasks
from compressors import checkpoints, plugin
from engine import optim
from training.errors import UserError
from training.options import DEFAULT_LR, flag

# CLI option -> task constructor keyword
TASK_OPTIONS = {"seq_len": "T", "subset": "subset", "bptt": "bptt", "level": "level",
                "data_dir": "data_dir", "data_file": "data_file", "valid_size": "valid_size",
                "input_scale": "input_scale"}
# CLI option -> model constructor keyword
MODEL_OPTIONS = {"hidden": "hidden", "layers": "num_layers", "dropout": "dropout", "cell": "kind"}


def accepted_keywords(fn):
    """Keyword names `fn` accepts, or None when it takes **kwargs (anything)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_task(args):
    if args.task not in tasks.TASKS:
        raise UserError(f"unknown task {args.task!r}; valid tasks: {', '.join(sorted(tasks.TASKS))}")
    accepted = accepted_keywords(tasks.TASKS[args.task])
    if args.valid_size is not None and "valid_size" not in tasks.task_options(args.task):
        resizable = sorted(name for name in tasks.TASKS if "valid_size" in tasks.task_options(name))
        raise UserError(f"--valid-size {args.valid_size}: task {args.task!r} has a fixed validation split "
                        f"and cannot resize it; --valid-size applies to: {', '.join(resizable)}")
    options = _gather_options(args, TASK_OPTIONS, accepted, f"task {args.task!r}")
    return tasks.get_task(args.task, **options)


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
            raise UserError(f"{owner} takes no option {flag(dest)}; it takes: "
                            f"{', '.join(sorted(accepted)) or 'nothing'}")
        options[keyword] = value
    return options


def model_constructor(name):
    """The constructor registered as `name` in compressors.checkpoints' one model registry."""
    try:
        return checkpoints.model_constructor(name)
    except ValueError:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(checkpoints.model_names())}") from None


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
    accepted = accepted_keywords(constructor)
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
    return place(model, args)


def place(model, args):
    """`model` with its float parameters in --dtype, on --device."""
    if args.dtype == "float64":
        model.astype(np.float64)
    return model.to(args.device)


def build_compressor(args):
    try:
        return plugin.get(args.compress)(args)
    except ValueError as e:            # an unknown name; the message lists the valid ones
        raise UserError(str(e)) from None


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
