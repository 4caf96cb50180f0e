"""Tiny data sets for whole train.py runs: MNIST IDX files, a PTB-format folder and a text file."""
import numpy as np

from tasks import mnist
from tasks.idx import write_idx

WORDS = "the cat sat on a mat and the dog ran to it".split()
# per task: flags that keep a run short (short sequences, few steps) and find the tiny data
SHORT = {
    "adding": ["--seq-len", "6"],
    "copy": ["--seq-len", "4"],
    "mnist": ["--subset", "40"],
    "ptb": ["--bptt", "5", "--eval-batch-size", "4"],     # the tiny streams hold too few tokens for 256 rows
    "ptb_char": ["--bptt", "5", "--eval-batch-size", "4"],
    "text": ["--bptt", "5", "--eval-batch-size", "4"],
}
STEPS = ["--epochs", "1", "--steps", "2", "--batch-size", "4", "--no-progress", "--log-every", "0"]


def write_mnist(folder, n_train=48, n_test=12, seed=0):
    """Random 28x28 uint8 images with labels 0..9 in the four standard IDX files (raw, not gzipped)."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(n_test) % 10).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in mnist.FILES.items():
        write_idx(folder / stem, arrays[key], compress=False)
    return folder


def write_ptb(folder, lines=30, seed=0):
    """ptb.{train,valid,test}.txt of random sentences over WORDS (every split uses only train words)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        text = "\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def write_text(path):
    path.write_text("hello world, this is a small text. " * 40, encoding="utf-8")
    return path


def data_flags(root):
    """{task: flags naming its tiny data under `root`} (written on first use)."""
    return {"mnist": ["--data-dir", str(write_mnist(root / "mnist"))],
            "ptb": ["--data-dir", str(write_ptb(root / "ptb"))],
            "ptb_char": ["--data-dir", str(root / "ptb")],
            "text": ["--data-file", str(write_text(root / "text.txt"))]}
