"""Task: the interface every data set or synthetic problem offers to train.py, plus shared checks."""
import math

import numpy as np

import engine
import engine.ops as F
from engine import backend, buffers


def check_int(owner, name, value, minimum=1, maximum=None):
    """Return `value` as an int, or raise a ValueError naming the task, the option and the bound."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: {name} must be <= {maximum}, got {value}")
    return value


def model_reference(model):
    """The first parameter array of `model` (for its device and float dtype), or None."""
    for p in model.parameters():
        return p.data
    return None


def to_model_input(inputs, model):
    """Move a batch's inputs onto the model's device; float inputs take the model's float dtype."""
    ref = model_reference(model)
    if ref is None:
        return inputs
    arr = backend.to_device(inputs, backend.device_of(ref))
    if arr.dtype.kind == "f" and arr.dtype != ref.dtype:
        arr = arr.astype(ref.dtype)
    return arr


def output_array(output):
    """The raw array of a model output (Tensor or array)."""
    return output.data if isinstance(output, engine.Tensor) else output


def like_output(targets, output, cast=False):
    """`targets` on the output's device; `cast` also gives it the output's dtype (for regression)."""
    ref = output_array(output)
    arr = backend.to_device(targets, backend.device_of(ref))
    return arr.astype(ref.dtype) if cast and arr.dtype != ref.dtype else arr


def cross_entropy_sum(outputs, labels):
    """Summed cross-entropy of logits `outputs` against integer `labels` (already on their device)."""
    return float(output_array(F.cross_entropy(outputs, labels, reduction="sum")))


class Task:
    """A problem to train on: batches, a training loss, metrics and a trivial baseline.

    Subclasses set the class attributes and implement `train_batches`, `steps_per_epoch`,
    `split_batches`, `output_shape`, `batch_totals`, `summarize` and `trivial_baseline`
    (and `loss` when it is not cross-entropy over classes).
    `metrics` returns batch *sums* (with their counts) so evaluation over many batches is exact;
    `summarize` turns the summed totals into means and the headline metric.
    Evaluation splits: 'test' always, 'valid' when the task holds one out (never used for
    training, disjoint from 'test'), 'train' where offered; `splits` lists them.
    """

    name = "task"
    metric_name = "loss"
    higher_is_better = False
    notes = {}     # metric name -> what it measures, where the name alone does not say (shown in reports)
    default_model = None
    splits = ("test",)
    output_layout = "batch, classes"   # how the expected output shape reads, for error messages

    def model_kwargs(self):
        """Keyword arguments the task fixes for its model constructor (sizes, output mode)."""
        return {}

    def config(self):
        """The task's options as a JSON-friendly dict (for metrics.json and checkpoints)."""
        return {"name": self.name}

    # ---- batches -------------------------------------------------------
    def train_batches(self, batch_size, rng):
        raise NotImplementedError

    def steps_per_epoch(self, batch_size):
        raise NotImplementedError

    def split_batches(self, batch_size, split):
        """Deterministic batches of one evaluation split ('test', and 'train'/'valid' where offered)."""
        raise NotImplementedError

    def test_batches(self, batch_size):
        return self.split_batches(batch_size, "test")

    def check_batch_size(self, batch_size):
        return check_int(f"{self.name} task", "batch_size", batch_size)

    def check_split(self, split):
        if split not in self.splits:
            raise ValueError(f"{self.name} task: unknown split {split!r}; expected one of {self.splits}")
        return split

    # ---- loss and metrics ----------------------------------------------
    def output_shape(self, targets):
        """The model output shape these targets call for."""
        raise NotImplementedError

    def check_output(self, output, targets):
        """Raise a ValueError naming the task when the model output does not fit `targets`."""
        expected = self.output_shape(targets)
        shape = output_array(output).shape
        if shape != expected:
            raise ValueError(f"{self.name} task: model output must have shape {expected} "
                             f"({self.output_layout}), got {shape}")

    def loss(self, output, targets):
        """Mean cross-entropy of the logits `output` against integer `targets`."""
        self.check_output(output, targets)
        return F.cross_entropy(output, like_output(targets, output))

    def metrics(self, outputs, targets):
        """Summed metrics of one batch (see `summarize`), after checking the output shape."""
        self.check_output(outputs, targets)
        return self.batch_totals(outputs, targets)

    def batch_totals(self, outputs, targets):
        raise NotImplementedError

    def summarize(self, totals):
        raise NotImplementedError

    def evaluate(self, model, batch_size=256, split="test"):
        """Metrics of `model` on a whole split, in eval mode and without building a graph."""
        totals = sum_metrics(metrics for _, metrics in self.batch_metrics(model, batch_size, split))
        if not totals:
            raise ValueError(f"{self.name} task: split {split!r} yielded no batches")
        return self.summarize(totals)

    def batch_metrics(self, model, batch_size=256, split="test", keep=None):
        """[(batch index, metrics of that batch)] over a split, in eval mode without a graph; `keep(index)`
        picks a share of the batches (a data-parallel run scores each batch on one process)."""
        self.check_batch_size(batch_size)
        self.check_split(split)
        was_training = getattr(model, "training", False)
        model.eval()
        scored = []
        # Evaluation's batch shapes are not training's: temporaries either phase left in the engine's
        # buffer pool (up to its 256 MiB bound) would only sit beside the other's, raising the peak.
        buffers.clear()
        try:
            with engine.no_grad():
                for index, (inputs, targets) in enumerate(self.split_batches(batch_size, split)):
                    if keep is None or keep(index):
                        scored.append((index, self.metrics(model(to_model_input(inputs, model)), targets)))
        finally:
            model.train(was_training)
            buffers.clear()
        return scored

    def trivial_baseline(self):
        raise NotImplementedError

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({options})"


def sum_metrics(batches):
    """Per-batch metric dicts summed key by key, in the order given (the totals `summarize` takes)."""
    totals = {}
    for metrics in batches:
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


def batch_count(n, batch_size):
    """Number of batches covering n items (the last one may be short)."""
    return math.ceil(n / batch_size)


class SyntheticSequenceTask(Task):
    """A generated sequence problem: fresh training batches from train.py's rng every step and fixed
    validation and test sets, each drawn once from its own stream of the task's seed (never from
    train.py's rng); no validation sequence repeats a test sequence. Subclasses give
    `make_batch(rng, n, T)`."""

    min_T = 1
    VALID_STREAM = 1   # the validation set's seed is (seed, VALID_STREAM); the test set's is seed

    def __init__(self, T, train_size_per_epoch=10000, test_size=1000, valid_size=1000, seed=1234):
        owner = f"{self.name} task"
        self.T = check_int(owner, "T", T, minimum=self.min_T)
        self.train_size_per_epoch = check_int(owner, "train_size_per_epoch", train_size_per_epoch)
        self.test_size = check_int(owner, "test_size", test_size)
        self.valid_size = check_int(owner, "valid_size", valid_size, minimum=0)
        self.seed = check_int(owner, "seed", seed, minimum=0)
        self.splits = ("valid", "test") if self.valid_size else ("test",)
        self._fixed = {}

    def make_batch(self, rng, batch_size, T):
        raise NotImplementedError

    def config(self):
        return {"name": self.name, "T": self.T, "train_size_per_epoch": self.train_size_per_epoch,
                "test_size": self.test_size, "valid_size": self.valid_size, "seed": self.seed}

    def steps_per_epoch(self, batch_size):
        return batch_count(self.train_size_per_epoch, self.check_batch_size(batch_size))

    def train_batches(self, batch_size, rng):
        for _ in range(self.steps_per_epoch(batch_size)):
            yield self.make_batch(rng, batch_size, self.T)

    def test_set(self):
        """The fixed test set, drawn once from the task's seed."""
        if "test" not in self._fixed:
            self._fixed["test"] = self.make_batch(np.random.default_rng(self.seed), self.test_size, self.T)
        return self._fixed["test"]

    def valid_set(self):
        """The fixed validation set, drawn once from (seed, VALID_STREAM); sequences equal to a test
        sequence are dropped and redrawn, so the two sets share none."""
        self.check_split("valid")
        if "valid" not in self._fixed:
            rng = np.random.default_rng((self.seed, self.VALID_STREAM))
            test_rows = {row.tobytes() for row in self.test_set()[0]}
            inputs, targets = [], []
            while sum(len(x) for x in inputs) < self.valid_size:
                x, y = self.make_batch(rng, self.valid_size, self.T)
                fresh = np.array([row.tobytes() not in test_rows for row in x], dtype=bool)
                inputs.append(x[fresh])
                targets.append(y[fresh])
            self._fixed["valid"] = (np.concatenate(inputs)[:self.valid_size],
                                    np.concatenate(targets)[:self.valid_size])
        return self._fixed["valid"]

    def split_batches(self, batch_size, split):
        self.check_batch_size(batch_size)
        inputs, targets = self.valid_set() if self.check_split(split) == "valid" else self.test_set()
        for start in range(0, len(inputs), batch_size):
            yield inputs[start:start + batch_size], targets[start:start + batch_size]
