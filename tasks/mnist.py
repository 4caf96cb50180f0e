"""MNIST digits: the IDX loader (tasks.download's search order, or a verified download) and its task."""
import math
import pathlib

import numpy as np

from engine import backend

from . import download
from .base import Task, batch_count, check_int, cross_entropy_sum, like_output, output_array
from .idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the decompressed canonical files (mirrors may re-compress the .gz wrappers).
CONTENT_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
    "http://yann.lecun.com/exdb/mnist",
)
N_CLASSES = 10
IMAGE_SHAPE = (28, 28)
INPUT_SCALES = ("standard", "unit")   # (x/255 - mean)/std of the training file, or x/255 in [0, 1]
VALID_SHARE = 12   # by default the last twelfth of the training file (5,000 of 60,000) is held out


class MissingDataError(FileNotFoundError, ValueError):
    """Data files are missing (and could not be downloaded); a user error, not a bug."""


def find_file(folder, stem):
    """The path of `stem` or `stem.gz` in `folder`, or None."""
    for name in (stem + ".gz", stem):
        path = pathlib.Path(folder) / name
        if path.is_file():
            return path
    return None


def ensure_files(data_dir=None, download_missing=True, fetch=None):
    """Paths of the four MNIST files from the first folder of download.search_folders that has them all;
    without data_dir, missing files are downloaded into the user cache."""
    folders = download.search_folders("mnist", data_dir)
    stems = list(FILES.values())
    folder = download.first_complete(folders, find_file, stems)
    failure = None
    if folder is None and data_dir is None and download_missing:
        folder = download.cache_dir("mnist")
        try:
            for stem in stems:
                if find_file(folder, stem) is None:
                    download.download_verified(stem + ".gz", MIRRORS, CONTENT_MD5[stem], folder, fetch=fetch)
        except OSError as exc:
            failure = download.short_failure(exc)
            folder = None
    if folder is None:
        missing = [f"{stem}(.gz)" for stem in stems if all(find_file(f, stem) is None for _, f in folders)]
        raise MissingDataError(download.missing_data_message(
            "mnist", folders, missing or ["a folder holding all four files"],
            "put the four MNIST IDX files (gzip-compressed or raw) in one of those folders, pass --data-dir "
            "DIR (data_dir=) naming a folder that has them, or run once with network access to download them",
            failure))
    return {key: find_file(folder, stem) for key, stem in FILES.items()}


def load_mnist(data_dir=None, download_missing=True, fetch=None):
    """The four MNIST arrays as uint8 images (N, 28, 28) and uint8 labels (N,), validated."""
    paths = ensure_files(data_dir, download_missing, fetch)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        source = paths[f"{split}_images"]
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"mnist: {source} must hold images of shape (N, 28, 28), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"mnist: {paths[f'{split}_labels']} must hold {len(images)} labels "
                             f"(one per image), got shape {labels.shape}")
        if labels.size and labels.max() >= N_CLASSES:
            raise ValueError(f"mnist: {paths[f'{split}_labels']} has label {int(labels.max())}; "
                             f"expected 0..{N_CLASSES - 1}")
    return arrays


# Pixels histogrammed per call: np.bincount widens its input to int64, so the 47M pixels of the
# training file at once would need a 376 MB temporary (more than the model's whole training run).
HISTOGRAM_CHUNK = 1 << 22


def pixel_statistics(images):
    """Mean and standard deviation of pixels/255 over all images (exact, via a histogram)."""
    flat = images.reshape(-1)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, HISTOGRAM_CHUNK):
        counts += np.bincount(flat[start:start + HISTOGRAM_CHUNK], minlength=256)
    counts = counts.astype(np.float64)
    values = np.arange(256) / 255.0
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    std = float(math.sqrt((counts * (values - mean) ** 2).sum() / total))
    return mean, std


class MNISTTask(Task):
    """MNIST classification: images (B, 1, 28, 28) float32, labels int64. input_scale 'standard' (the
    default) standardises pixels as (x/255 - 0.1307)/0.3081 (the training file's mean and std); 'unit'
    gives x/255 in [0, 1], as a network trained elsewhere on ToTensor() inputs expects. The last
    `valid_size` images of the training file form the 'valid' split
    (default: the last twelfth, 5,000 of the 60,000; 0 trains on all of them); `subset` keeps the
    first n of the rest for training. `split_rows` names the training-file rows of each split."""

    name = "mnist"
    metric_name = "accuracy"
    higher_is_better = True
    default_model = "lenet300"

    def __init__(self, data_dir=None, subset=None, valid_size=None, input_scale="standard", download=True,
                 fetch=None):
        if input_scale not in INPUT_SCALES:
            raise ValueError(f"mnist task: input_scale must be one of {', '.join(INPUT_SCALES)}, got {input_scale!r}")
        self.input_scale = input_scale
        arrays = load_mnist(data_dir, download_missing=download, fetch=fetch)
        n_train = len(arrays["train_images"])
        if valid_size is None:
            valid_size = n_train // VALID_SHARE
        self.valid_size = check_int("mnist task", "valid_size", valid_size, minimum=0,
                                    maximum=n_train - 1)
        available = n_train - self.valid_size
        self.subset = None if subset is None else check_int("mnist task", "subset", subset,
                                                            maximum=available)
        keep = available if self.subset is None else self.subset
        self.data_dir = None if data_dir is None else str(data_dir)
        # Normalise with the statistics of the whole training file (0.1307 / 0.3081), so a subset
        # sees the same inputs as a full run; a 256-entry table turns uint8 pixels into floats.
        self.mean, self.std = pixel_statistics(arrays["train_images"])
        shift, scale = (self.mean, self.std) if input_scale == "standard" else (0.0, 1.0)
        self.lookup = ((np.arange(256) / 255.0 - shift) / scale).astype(np.float32)
        images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int64)
        self.split_rows = {"train": range(keep), "valid": range(available, n_train)}
        self.data = {"train": (images[:keep], labels[:keep])}
        if self.valid_size:
            self.data["valid"] = (images[available:], labels[available:])
        self.data["test"] = (arrays["test_images"], arrays["test_labels"].astype(np.int64))
        self.splits = tuple(self.data)

    def config(self):
        return {"name": self.name, "data_dir": self.data_dir, "subset": self.subset,
                "valid_size": self.valid_size, "input_scale": self.input_scale, "mean": self.mean, "std": self.std}

    def model_kwargs(self):
        return {"n_classes": N_CLASSES}

    def images(self, raw):
        """uint8 images (B, 28, 28) -> normalised float32 (B, 1, 28, 28)."""
        return self.lookup[raw][:, None]

    def steps_per_epoch(self, batch_size):
        return batch_count(len(self.data["train"][1]), self.check_batch_size(batch_size))

    def train_batches(self, batch_size, rng):
        self.check_batch_size(batch_size)
        images, labels = self.data["train"]
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield self.images(images[idx]), labels[idx]

    def split_batches(self, batch_size, split):
        self.check_batch_size(batch_size)
        images, labels = self.data[self.check_split(split)]
        for start in range(0, len(labels), batch_size):
            yield self.images(images[start:start + batch_size]), labels[start:start + batch_size]

    def output_shape(self, targets):
        return (len(targets), N_CLASSES)

    def batch_totals(self, outputs, targets):
        labels = like_output(targets, outputs)
        logits = output_array(outputs)
        xp = backend.xp_of(logits)
        return {"ce_sum": cross_entropy_sum(outputs, labels),
                "correct": float(xp.sum(xp.argmax(logits, axis=1) == labels)),
                "count": float(len(labels))}

    def summarize(self, totals):
        accuracy = totals["correct"] / totals["count"]
        return {"loss": totals["ce_sum"] / totals["count"], "accuracy": accuracy, "error": 1.0 - accuracy}

    def trivial_baseline(self):
        """Ignore the image: predict the training class frequencies (accuracy = test share of the
        most frequent training class; loss = cross-entropy of those frequencies on the test labels)."""
        train_labels, test_labels = self.data["train"][1], self.data["test"][1]
        prior = np.bincount(train_labels, minlength=N_CLASSES) / len(train_labels)
        accuracy = float(np.mean(test_labels == np.argmax(prior)))
        with np.errstate(divide="ignore"):
            loss = float(-np.mean(np.log(prior[test_labels])))
        return {"loss": loss, "accuracy": accuracy, "error": 1.0 - accuracy,
                "predictor": "training class frequencies (majority class)"}
