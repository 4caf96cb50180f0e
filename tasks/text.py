"""Character-level language modelling of any UTF-8 text file (in order: 90% train, 5% valid, 5% test)."""
import pathlib

import numpy as np

from .language import LanguageModelTask
from .mnist import MissingDataError

TRAIN_TWENTIETHS, VALID_TWENTIETHS = 18, 1   # 90% and 5% of the text; the last 5% is the test split


class TextTask(LanguageModelTask):
    """Characters of `data_file`; the vocabulary is every character in the file; metric bpc.
    `split_rows` names the character offsets of each split."""

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
        if len(text) < 40:
            raise ValueError(f"text task: {path} is empty or too short ({len(text)} characters; "
                             "need at least 40, so that the 5% valid and test parts hold 2 each)")
        self.data_file = str(path)
        itos = sorted(set(text))
        lookup = {ch: i for i, ch in enumerate(itos)}
        ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
        train_end = len(ids) * TRAIN_TWENTIETHS // 20
        valid_end = len(ids) * (TRAIN_TWENTIETHS + VALID_TWENTIETHS) // 20
        self.split_rows = {"train": range(train_end), "valid": range(train_end, valid_end),
                           "test": range(valid_end, len(ids))}
        self.setup({split: ids[rows.start:rows.stop] for split, rows in self.split_rows.items()},
                   itos, bptt)

    def config(self):
        return {"name": self.name, "data_file": self.data_file, "bptt": self.bptt,
                "vocab": self.vocab_size}
