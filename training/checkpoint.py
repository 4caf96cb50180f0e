"""The run checkpoint as the loop uses it: its file names, user-facing read errors, and --init-from.

The format itself (prefixes, kind, layout) belongs to compressors.checkpoints; this module only
names the files of a run folder and turns unreadable files into one-line UserErrors."""
import os

from compressors.checkpoints import (RUN_CHECKPOINT as CHECKPOINT, TRAIN_KIND as CHECKPOINT_KIND,
                                     load_run_checkpoint, run_checkpoint_path as checkpoint_path,
                                     save_run_checkpoint as save_checkpoint)
from training.errors import UserError

TRAINED = "trained.npz"
__all__ = ["CHECKPOINT", "CHECKPOINT_KIND", "TRAINED", "checkpoint_path", "save_checkpoint", "read_checkpoint",
           "read_checkpoint_meta", "load_init_weights"]


def read_checkpoint(path, message="cannot read checkpoint: {}"):
    """The RunCheckpoint (model_state, optim_arrays, meta, extra_arrays) at `path` (a file or a run
    folder); UserError `message` (with the reason) when it is missing or unreadable."""
    try:
        return load_run_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(message.format(e)) from None


def read_checkpoint_meta(path):
    return read_checkpoint(path).meta


def load_init_weights(model, path):
    """--init-from: copy a checkpoint's model weights into the dense model (strict)."""
    state = read_checkpoint(path, "--init-from: {}").model_state
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"--init-from {path}: the weights do not fit the dense model ({e}); "
                        "--init-from expects a checkpoint of the same model trained without compression")
