"""Language modelling on a token stream: batchify, contiguous bptt windows, cross-entropy metrics."""
import math
from collections import Counter

import numpy as np

from engine import backend

from .base import Task, check_int, cross_entropy_sum, like_output


def build_vocabulary(tokens):
    """Token list -> (itos list, stoi dict), most frequent first (ties in order of first appearance)."""
    itos = [token for token, _ in Counter(tokens).most_common()]
    return itos, {token: i for i, token in enumerate(itos)}


def encode(tokens, stoi, source, unknown=None):
    """Token list -> int64 ids; unseen tokens map to `unknown` when given, else raise naming `source`."""
    fallback = stoi.get(unknown) if unknown is not None else None
    ids = np.empty(len(tokens), dtype=np.int64)
    for i, token in enumerate(tokens):
        index = stoi.get(token, fallback)
        if index is None:
            raise ValueError(f"{source}: token {token!r} is not in the training vocabulary")
        ids[i] = index
    return ids


def batchify(stream, batch_size, owner="language task"):
    """Cut a 1-d token stream into `batch_size` parallel rows (B, L), dropping the remainder."""
    length = len(stream) // batch_size
    if length < 2:
        raise ValueError(f"{owner}: a stream of {len(stream)} tokens is too short for batch_size "
                         f"{batch_size} (each of the {batch_size} rows needs at least 2 tokens)")
    return stream[:length * batch_size].reshape(batch_size, length)


class LanguageModelTask(Task):
    """Next-token prediction; inputs (B, bptt) int64, targets the same windows shifted by one.

    The training stream is split into B parallel rows and an epoch walks them in order in
    non-overlapping windows of `bptt` tokens, starting at a random offset in [0, bptt) drawn from
    train.py's rng. Evaluation walks a split the same way from offset 0 and scores every
    token once (the last window may be shorter). The model sees each window on its own.
    """

    default_model = "language_model"
    higher_is_better = False
    level = "word"
    output_layout = "batch, steps, vocabulary"

    def setup(self, streams, itos, bptt):
        self.streams = streams
        self.itos = list(itos)
        self.bptt = check_int(f"{self.name} task", "bptt", bptt)
        self.splits = tuple(streams)
        self.metric_name = "perplexity" if self.level == "word" else "bpc"
        self._rows = {}

    @property
    def vocab_size(self):
        return len(self.itos)

    def model_kwargs(self):
        return {"vocab": self.vocab_size}

    def rows(self, split, batch_size):
        key = (split, batch_size)
        if key not in self._rows:
            self._rows[key] = batchify(self.streams[split], batch_size, f"{self.name} task ({split})")
        return self._rows[key]

    def steps_per_epoch(self, batch_size):
        length = self.rows("train", self.check_batch_size(batch_size)).shape[1]
        steps = (length - self.bptt) // self.bptt
        if steps < 1:
            raise ValueError(f"{self.name} task: training rows of {length} tokens (batch_size "
                             f"{batch_size}) are too short for bptt {self.bptt}; lower one of them")
        return steps

    def train_batches(self, batch_size, rng):
        steps = self.steps_per_epoch(batch_size)
        data = self.rows("train", batch_size)
        spare = data.shape[1] - 1 - steps * self.bptt      # room left for a random start
        start = int(rng.integers(0, min(self.bptt - 1, spare) + 1))
        for i in range(start, start + steps * self.bptt, self.bptt):
            yield data[:, i:i + self.bptt], data[:, i + 1:i + 1 + self.bptt]

    def split_batches(self, batch_size, split):
        self.check_batch_size(batch_size)
        data = self.rows(self.check_split(split), batch_size)
        length = data.shape[1]
        for i in range(0, length - 1, self.bptt):
            seq = min(self.bptt, length - 1 - i)
            yield data[:, i:i + seq], data[:, i + 1:i + 1 + seq]

    def output_shape(self, targets):
        return targets.shape + (self.vocab_size,)

    def batch_totals(self, outputs, targets):
        return {"ce_sum": cross_entropy_sum(outputs, like_output(targets, outputs)),
                "count": float(targets.size)}

    def from_cross_entropy(self, ce):
        """Mean cross-entropy (nats per token) -> the reported metrics."""
        out = {"loss": ce, "cross_entropy": ce, "perplexity": math.exp(min(ce, 700.0))}
        if self.level != "word":
            out["bpc"] = ce / math.log(2.0)
        return out

    def summarize(self, totals):
        return self.from_cross_entropy(totals["ce_sum"] / totals["count"])

    def trivial_baseline(self):
        """A unigram model: add-one smoothed training frequencies, scored on the test stream."""
        counts = np.bincount(self.streams["train"], minlength=self.vocab_size) + 1.0
        logp = np.log(counts / counts.sum())
        out = self.from_cross_entropy(float(-logp[self.streams["test"]].mean()))
        out["predictor"] = "unigram (add-one smoothed training frequencies)"
        return out

    def decode(self, ids):
        """Token ids -> tokens (for inspection)."""
        return [self.itos[int(i)] for i in backend.to_numpy(np.asarray(ids)).reshape(-1)]
