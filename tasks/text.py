"""Character-level language modelling of any UTF-8 text file (first 90% train, last 10% test)."""
import pathlib

import numpy as np

from .language import LanguageModelTask
from .mnist import MissingDataError

TRAIN_FRACTION = 0.9


class TextTask(LanguageModelTask):
    """Characters of `data_file`; the vocabulary is every character in the file; metric bpc."""

    name = "text"
    level = "char"

    def __init__(self, data_file=None, bptt=100):
        if data_file is None:
            raise ValueError("text task: data_file is required (a UTF-8 text file; --data-file)")
        path = pathlib.Path(data_file)
        if not path.is_file():
            raise MissingDataError(f"text task: data file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"text task: {path} is not valid UTF-8 ({exc})") from None
        if len(text) < 4:
            raise ValueError(f"text task: {path} is empty or too short ({len(text)} characters; "
                             "need enough text for a train and a test part)")
        self.data_file = str(path)
        itos = sorted(set(text))
        lookup = {ch: i for i, ch in enumerate(itos)}
        ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
        cut = int(len(ids) * TRAIN_FRACTION)
        self.setup({"train": ids[:cut], "test": ids[cut:]}, itos, bptt)

    def config(self):
        return {"name": self.name, "data_file": self.data_file, "bptt": self.bptt,
                "vocab": self.vocab_size}
