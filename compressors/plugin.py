"""The interface a compression method offers train.py and checkpoints, and the registry of methods by name."""
import importlib


class DoesNotApply(ValueError):
    """A method cannot compress this model at all (no layer of the kind it converts); train.py exits 2."""


class Compressor:
    """One compression method as train.py drives it; subclass and override what applies.

    Order in train.py: build the dense model -> (optionally load --init-from
    weights) -> ``apply`` -> train, adding ``extra_loss`` to the task loss each
    step and calling ``on_step`` after each optimiser step -> ``finalize``
    (e.g. truncation) -> optional fine-tuning -> evaluate and report.
    """

    name = "none"

    @staticmethod
    def add_arguments(parser):
        """Add this method's flags (prefixed with its name, e.g. --wavelet-levels) to an argparse group."""

    def __init__(self, args):
        self.args = args

    def apply(self, model, task):
        """Return the compressed model to train (may modify `model` in place)."""
        return model

    def extra_loss(self, model):
        """A scalar Tensor added to the task loss every step (logged as its own column), or None."""
        return None

    def on_step(self, optimizer, model):
        """Called after every optimiser step (a proximal step, for example)."""

    def finalize(self, model, task):
        """Called once after training; returns the model to evaluate (e.g. truncated)."""
        return model

    def cost_note(self):
        """One line train.py prints at start when this method makes training much slower, else None."""
        return None

    def config(self):
        """JSON-able description of the compression settings, stored in metrics and checkpoints."""
        return {"name": self.name}

    # ---- checkpoints (compressors.checkpoints): no data, no training, the values come from the state
    @staticmethod
    def describe(model):
        """The configs of this method's steps read off `model`'s modules: a list, empty when it has none."""
        return []

    @staticmethod
    def rebuild(model, config, state):
        """Re-apply one step recorded as `config` (describe's, or config() after a run) to `model`.

        Only the structure matters (fresh values: the saved state replaces them); `state`, the saved
        arrays by state_dict key or None, may settle what the config leaves open. Returns the model.
        """
        return model


# name -> "module:Class"; imported lazily so a method's extras are only needed when it is used.
# The order is the order in which checkpoints describe and re-apply steps: a method that can
# convert another's layers (tucker on a low-rank factor) comes after it.
REGISTRY = {
    "none": "compressors.plugin:Compressor",
    "lowrank": "compressors.lowrank:LowRankCompressor",
    "basis": "compressors.basis:BasisCompressor",
    "tucker": "compressors.tucker:TuckerCompressor",
    "scada": "compressors.tucker:ScadaCompressor",
    "wavelet": "compressors.wavelet:WaveletCompressor",
}

# architectures a method brings with it: name -> "module:function" (layers.models.MODELS holds the
# others; compressors.checkpoints.model_constructor looks in both)
MODELS = {
    "wavelet_cnn": "compressors.wavelet:wavelet_cnn",
}


# the dense network a method's own architecture came from: its reports compare with that one
# (wavelet_cnn is LeNet-5 with the 800-500-10 head replaced by a wavelet layer and an 800-10 Dense)
DENSE_ORIGINS = {
    "wavelet_cnn": "lenet5",
}


def dense_origin(model_name):
    """The model name a report's "dense" column counts for `model_name` (itself unless it has an origin)."""
    return DENSE_ORIGINS.get(model_name, model_name)


def resolve(reference):
    """The object named by "module:attribute" (imported now)."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def get(name):
    """The Compressor class registered under `name`; ValueError listing the valid names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown compressor {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    return resolve(REGISTRY[name])


def available():
    """Names of the compressors whose module imports (the others are not built yet)."""
    names = []
    for name in sorted(REGISTRY):
        try:
            get(name)
            names.append(name)
        except (ImportError, AttributeError):
            pass
    return names
