"""The PyTorch side of bench/memory.py: train.py's LeNet-5/MNIST and PTB-LSTM epochs, rebuilt in PyTorch.

Usage: python bench/memory_torch.py --model {lenet5,ptb_lstm} --data-dir DIR [--threads 1] [--epochs 1]
       [--steps N] [--subset N] [--valid-size N] [--eval-batch-size 256] [--out DIR]
       python bench/memory_torch.py --imports-only

Each run mirrors what `python train.py` does for the same task with its recipe (training/options.py):
the same data pipeline shape (uint8 MNIST images turned into float32 batch by batch through a
256-entry table; PTB read into token lists, a vocabulary, an int64 stream cut into batch rows and
35-token windows, each window seen on its own), the same model, batch, optimizer and clipping, an
evaluation of the valid and test splits after every epoch and once more at the end, and a
checkpoint written after every epoch. --imports-only stops after the imports (the baseline).
Prints one JSON line with what it trained. Independent of this project's packages, so the child's
memory holds PyTorch and NumPy alone.
"""
import argparse
import collections
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch

MODELS = ("lenet5", "ptb_lstm")
RECIPES = {   # train.py's recipes for these tasks (training/options.py RECIPES)
    "lenet5": {"batch_size": 64, "optimizer": "adam", "lr": 1e-3, "clip_grad": None},
    "ptb_lstm": {"batch_size": 20, "optimizer": "sgd", "lr": 20.0, "clip_grad": 0.25, "bptt": 35},
}
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
PTB_SPLITS = ("train", "valid", "test")


def fail(message):
    print(f"memory_torch.py: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- MNIST and LeNet-5
def read_idx(folder, stem):
    """A uint8 IDX array from `stem`.gz or `stem` in `folder`."""
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with opener(path, "rb") as f:
                data = f.read()
            ndim = data[3]
            shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    fail(f"{os.path.join(folder, stem)}(.gz) not found; pass --data-dir")


def mnist_splits(folder, subset, valid_size):
    """{'train', 'valid', 'test'}: (uint8 images, int64 labels), split as tasks/mnist.py does, and the
    pixel lookup table of (x/255 - mean)/std with the training file's statistics."""
    arrays = {key: read_idx(folder, stem) for key, stem in MNIST_FILES.items()}
    images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    n = len(labels)
    valid_size = n // 12 if valid_size is None else valid_size
    keep = n - valid_size if subset is None else subset
    pixels = images.reshape(-1)
    counts = sum(np.bincount(pixels[i:i + (1 << 22)], minlength=256) for i in range(0, pixels.size, 1 << 22))
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    lookup = ((values - mean) / std).astype(np.float32)
    splits = {"train": (images[:keep], labels[:keep])}
    if valid_size:
        splits["valid"] = (images[n - valid_size:], labels[n - valid_size:])
    splits["test"] = (arrays["test_images"], arrays["test_labels"].astype(np.int64))
    return splits, lookup


def lenet5():
    """LeNet-5 in Caffe's form, as layers.models.lenet5 builds it."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


class MNISTRun:
    def __init__(self, args):
        self.splits, self.lookup = mnist_splits(args.data_dir, args.subset, args.valid_size)
        self.eval_splits = [split for split in ("valid", "test") if split in self.splits]
        self.model = lenet5()

    def to_input(self, raw):
        return torch.from_numpy(self.lookup[raw][:, None])

    def train_batches(self, batch_size, rng):
        images, labels = self.splits["train"]
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield self.to_input(images[idx]), torch.from_numpy(labels[idx])

    def loss(self, inputs, targets):
        return torch.nn.functional.cross_entropy(self.model(inputs), targets)

    def evaluate(self, split, batch_size):
        images, labels = self.splits[split]
        ce = correct = 0.0
        for start in range(0, len(labels), batch_size):
            logits = self.model(self.to_input(images[start:start + batch_size]))
            targets = torch.from_numpy(labels[start:start + batch_size])
            ce += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            correct += float((logits.argmax(1) == targets).sum())
        return {"loss": ce / len(labels), "accuracy": correct / len(labels)}


# ---------------------------------------------------------------- PTB and the word-level LSTM
def ptb_streams(folder):
    """int64 token streams of the three splits and the vocabulary size, as tasks/ptb.py builds them."""
    tokens = {}
    for split in PTB_SPLITS:
        path = os.path.join(folder, f"ptb.{split}.txt")
        if not os.path.isfile(path):
            fail(f"{path} not found; pass --data-dir")
        with open(path, encoding="utf-8") as f:
            tokens[split] = [word for line in f.read().splitlines() for word in line.split() + ["<eos>"]]
    itos = [token for token, _ in collections.Counter(tokens["train"]).most_common()]
    stoi = {token: i for i, token in enumerate(itos)}
    unknown = stoi["<unk>"]
    streams = {}
    for split, words in tokens.items():
        ids = np.empty(len(words), dtype=np.int64)
        for i, word in enumerate(words):
            ids[i] = stoi.get(word, unknown)
        streams[split] = ids
    return streams, len(itos)


class LanguageModel(torch.nn.Module):
    """Embedding -> 2-layer LSTM -> Dense decoder (Zaremba et al.'s small model, layers.models.language_model)."""

    def __init__(self, vocab, emb=200, hidden=200, num_layers=2):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, emb)
        self.rnn = torch.nn.LSTM(emb, hidden, num_layers=num_layers, batch_first=True)
        self.decoder = torch.nn.Linear(hidden, vocab)

    def forward(self, tokens):
        outputs, _ = self.rnn(self.embedding(tokens))
        return self.decoder(outputs)


class PTBRun:
    def __init__(self, args):
        self.streams, self.vocab = ptb_streams(args.data_dir)
        self.bptt = RECIPES["ptb_lstm"]["bptt"]
        self.eval_splits = ("valid", "test")
        self.model = LanguageModel(self.vocab)

    def rows(self, split, batch_size):
        stream = self.streams[split]
        length = len(stream) // batch_size
        if length < 2:
            fail(f"ptb.{split}.txt: {len(stream)} tokens are too few for batch size {batch_size}")
        return stream[:length * batch_size].reshape(batch_size, length)

    def train_batches(self, batch_size, rng):
        data = self.rows("train", batch_size)
        steps = (data.shape[1] - self.bptt) // self.bptt
        spare = data.shape[1] - 1 - steps * self.bptt
        start = int(rng.integers(0, min(self.bptt - 1, spare) + 1))
        for i in range(start, start + steps * self.bptt, self.bptt):
            yield (torch.from_numpy(np.ascontiguousarray(data[:, i:i + self.bptt])),
                   torch.from_numpy(np.ascontiguousarray(data[:, i + 1:i + 1 + self.bptt])))

    def loss(self, inputs, targets):
        logits = self.model(inputs)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))

    def evaluate(self, split, batch_size):
        data = self.rows(split, batch_size)
        ce = count = 0.0
        for i in range(0, data.shape[1] - 1, self.bptt):
            seq = min(self.bptt, data.shape[1] - 1 - i)
            inputs = torch.from_numpy(np.ascontiguousarray(data[:, i:i + seq]))
            targets = torch.from_numpy(np.ascontiguousarray(data[:, i + 1:i + 1 + seq]))
            logits = self.model(inputs)
            ce += float(torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1),
                                                          reduction="sum"))
            count += targets.numel()
        return {"cross_entropy": ce / count}


# ---------------------------------------------------------------- the run
def evaluate_splits(run, batch_size):
    run.model.eval()
    with torch.no_grad():
        result = {split: run.evaluate(split, batch_size) for split in run.eval_splits}
    run.model.train()
    return result


def train(args):
    recipe = RECIPES[args.model]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    run = MNISTRun(args) if args.model == "lenet5" else PTBRun(args)
    params = list(run.model.parameters())
    optimizer = (torch.optim.Adam(params, lr=recipe["lr"]) if recipe["optimizer"] == "adam"
                 else torch.optim.SGD(params, lr=recipe["lr"]))
    steps = 0
    started = time.perf_counter()
    for epoch in range(args.epochs):
        for i, (inputs, targets) in enumerate(run.train_batches(recipe["batch_size"], rng)):
            if args.steps is not None and i == args.steps:
                break
            loss = run.loss(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            if recipe["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(params, recipe["clip_grad"])
            optimizer.step()
            steps += 1
        evaluation = evaluate_splits(run, args.eval_batch_size)
        if args.out:
            torch.save({"model": run.model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                       os.path.join(args.out, "checkpoint.pt"))
    evaluation = evaluate_splits(run, args.eval_batch_size)    # train.py's final report evaluates again
    print(json.dumps({"model": args.model, "steps": steps, "seconds": time.perf_counter() - started,
                      "final": evaluation, "torch_threads": torch.get_num_threads()}))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--data-dir", help="folder of the MNIST IDX files or the PTB text files")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="training steps per epoch (default: one pass)")
    p.add_argument("--subset", type=int, default=None, help="MNIST: the first N training images")
    p.add_argument("--valid-size", type=int, default=None, help="MNIST: held-out images (default 1/12)")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for the per-epoch checkpoint (default: none written)")
    p.add_argument("--imports-only", action="store_true", help="exit after the imports (the baseline)")
    args = p.parse_args(argv)
    if not args.imports_only:
        if args.model is None or args.data_dir is None:
            fail("--model and --data-dir are required (or --imports-only)")
        if not os.path.isdir(args.data_dir):
            fail(f"--data-dir {args.data_dir}: not a folder")
        for name in ("epochs", "eval_batch_size"):
            if getattr(args, name) < 1:
                fail(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    return args


def main(argv=None):
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.imports_only:
        print(json.dumps({"imports_only": True}))
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
