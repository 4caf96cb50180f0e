"""Export a finished run folder (or a save_model / train.py checkpoint file) to ONNX."""
import os

import numpy as np

IMAGE_SIDE = 28     # the image task (MNIST) is 28 x 28; pass input_shape for other sizes


def load_run(path):
    """The model saved in a run folder or checkpoint file, in eval mode (the one place that loads it)."""
    from compressors.checkpoints import load_model
    return load_model(path).eval()


def example_input_for(model, input_shape=None):
    """A zero batch of one example the model accepts: input_shape (batch first) if given, else
    guessed: tokens (1, 8) for a language model, (1, 8, n_in) for a sequence model, (1, C, 28, 28)
    for a network that starts with a convolution, (1, n_in) for one that starts with a dense layer."""
    from layers.models import LanguageModel, SequenceModel
    integer = isinstance(model, LanguageModel)
    if input_shape is not None:
        shape = tuple(input_shape)
    elif integer:
        shape = (1, 8)
    elif isinstance(model, SequenceModel):
        shape = (1, 8, model.n_in)
    else:
        shape = _first_layer_shape(model)
    return np.zeros(shape, dtype=np.int64 if integer else np.float32)


def _first_layer_shape(model):
    for _, module in model.named_modules():
        channels = getattr(module, "in_ch", None) or getattr(module, "in_channels", None)
        if channels:
            return (1, channels, IMAGE_SIDE, IMAGE_SIDE)
        if getattr(module, "n_in", None):
            return (1, module.n_in)
    raise ValueError(f"cannot guess the input shape of {type(model).__name__}; give --input-shape")


def export_run(path, out=None, input_shape=None, quantize_bits=None):
    """Write the run at `path` to `out` (default <run folder>/model.onnx); returns the ExportReport."""
    from .export import to_onnx
    if not os.path.exists(path):
        raise ValueError("no such run folder or checkpoint")
    model = load_run(path)
    if out is None:
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        out = os.path.join(folder, "model.onnx" if quantize_bits is None else f"model_q{quantize_bits}.onnx")
    return to_onnx(model, out, example_input_for(model, input_shape), quantize_bits=quantize_bits)
