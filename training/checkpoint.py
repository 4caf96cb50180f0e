"""The run checkpoint as the loop uses it: its file names, user-facing read errors, and --init-from.

The format itself (prefixes, kind, layout) belongs to compressors.checkpoints; this module only
names the files of a run folder and turns unreadable files into one-line UserErrors."""
from compressors.checkpoints import read_checkpoint as read_model_file
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
    """--init-from: copy the weights of a run checkpoint (file or run folder) or of a save_model file
    into the dense model (strict)."""
    try:
        state = read_model_file(path)[2]      # compressors.checkpoints reads both kinds
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"--init-from: {e}") from None
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"--init-from {path}: the weights do not fit the dense model ({e}); "
                        "--init-from expects a checkpoint of the same model trained without compression")
