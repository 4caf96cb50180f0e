"""Scripted metrics.json dicts for bench tests, and a guard that records which splits were read."""


def scripted_metrics(test, valid=None, name="accuracy", higher_is_better=True, ratio=10.0, model="lenet5",
                     quantized=None):
    """A metrics.json dict as train.py writes it; `valid` None leaves the validation results out."""
    metrics = {"task": "mnist", "model": model, "compressor": "tucker",
               "params": {"dense": 1000, "compressed": int(1000 / ratio), "ratio": ratio, "learnable": 90},
               "flops": {"dense": 5000, "compressed": 2500, "ratio": 2.0},
               "bytes": {"dense": 4000, "compressed": int(4000 / ratio), "ratio": ratio},
               "metric": {"name": name, "value": test, "split": "test", "higher_is_better": higher_is_better},
               "test": {name: test, "loss": 0.1}}
    if valid is not None:
        metrics["valid"] = {name: valid, "loss": 0.1}
    if quantized is not None:
        metrics["quantized"] = quantized
    return metrics


class ReadLog(dict):
    """A dict that appends (label, key) to `log` whenever a test value is looked up in it."""

    WATCHED = {"test", "value"}   # metrics["test"] and metrics["metric"]["value"] hold test results

    def __init__(self, data, log, label):
        super().__init__({k: ReadLog(v, log, label) if isinstance(v, dict) else v for k, v in data.items()})
        self.log, self.label = log, label

    def __getitem__(self, key):
        if key in self.WATCHED:
            self.log.append((self.label, key))
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self.WATCHED and key in self:
            self.log.append((self.label, key))
        return super().get(key, default)
