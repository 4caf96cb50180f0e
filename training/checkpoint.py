"""The run checkpoint: file names, reading, writing, the model/optimizer split, and --init-from."""
import os

from engine import io as engine_io
from training.errors import UserError

CHECKPOINT, TRAINED = "checkpoint.npz", "trained.npz"
CHECKPOINT_KIND = "compactnet-train-checkpoint"


def checkpoint_path(path):
    """The checkpoint file of `path`: a run folder's checkpoint.npz, or `path` itself."""
    return os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path


def read_checkpoint(path, message="cannot read checkpoint: {}"):
    """(arrays, meta) of the checkpoint at `path`; UserError `message` (with the reason) when unreadable."""
    try:
        return engine_io.load(checkpoint_path(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(message.format(e)) from None


def read_checkpoint_meta(path):
    return read_checkpoint(path)[1]


def save_checkpoint(path, model, optimizer, meta, extra_arrays=None):
    """Write the model's and optimizer's arrays, `extra_arrays` (names outside model/ and optim/) and meta."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update(extra_arrays or {})
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in state["arrays"].items()})
        meta = dict(meta, optimizer={"step_count": state["step_count"], "lrs": state["lrs"]})
    engine_io.save(path, arrays, meta)


def split_checkpoint(arrays):
    """(model state, optimizer arrays) of a run checkpoint's arrays."""
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return model_state, optim_arrays


def load_init_weights(model, path):
    """--init-from: copy a checkpoint's model weights into the dense model (strict)."""
    arrays, _ = read_checkpoint(path, "--init-from: {}")
    state, _ = split_checkpoint(arrays)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"--init-from {path}: the weights do not fit the dense model ({e}); "
                        "--init-from expects a checkpoint of the same model trained without compression")
