"""Data: real data-set loaders and synthetic problems, each a task with batches, a loss and a metric."""
import functools
import inspect

from .base import Task, to_model_input
from .adding import AddingTask
from .copy_memory import CopyTask
from .mnist import MNISTTask, MissingDataError, load_mnist
from .ptb import PTBTask
from .text import TextTask

TASKS = {
    "adding": AddingTask,
    "copy": CopyTask,
    "mnist": MNISTTask,
    "ptb": PTBTask,
    "ptb_char": functools.partial(PTBTask, level="char"),
    "text": TextTask,
}


def task_options(name):
    """The option names a task accepts."""
    constructor = TASKS[name]
    fixed = constructor.keywords if isinstance(constructor, functools.partial) else {}
    target = constructor.func if isinstance(constructor, functools.partial) else constructor
    params = inspect.signature(target).parameters
    return [p for p in params if p not in fixed and p != "fetch"]


def get_task(name, **options):
    """Build task `name` with `options`; options that are None are left at their defaults.

    Unknown names and unknown options raise a ValueError listing the valid ones.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    options = {k: v for k, v in options.items() if v is not None}
    accepted = task_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"task {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"it accepts: {', '.join(accepted)}")
    return TASKS[name](**options)


__all__ = ["Task", "TASKS", "get_task", "task_options", "to_model_input", "AddingTask", "CopyTask",
           "MNISTTask", "PTBTask", "TextTask", "MissingDataError", "load_mnist"]
