"""MNIST loader on tiny IDX fixtures (gzip and raw), corrupt/missing files, verified downloads, real data."""
import gzip
import hashlib
import re

import numpy as np
import pytest

import engine
from tasks import MissingDataError, get_task, load_mnist
from tasks import download, mnist
from tasks.idx import idx_bytes, parse_idx, read_idx, write_idx

from ..conftest import SHARED_DATA
from .helpers import FixedOutput

N_TRAIN, N_TEST = 24, 10


def fixture_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=N_TEST, dtype=np.uint8),
    }


def write_fixture(folder, arrays, compress):
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in mnist.FILES.items():
        write_idx(folder / (stem + (".gz" if compress else "")), arrays[key], compress=compress)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    np.testing.assert_array_equal(read_idx(path), array)
    assert idx_bytes(array)[:8] == bytes([0, 0, 8, 3, 0, 0, 0, 2])


@pytest.mark.parametrize("compress", [True, False])
def test_load_fixture(tmp_path, compress):
    arrays = fixture_arrays()
    write_fixture(tmp_path, arrays, compress)
    loaded = load_mnist(tmp_path)
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])


def test_task_batches_normalised(tmp_path):
    arrays = fixture_arrays()
    task = get_task("mnist", data_dir=write_fixture(tmp_path, arrays, True), valid_size=0)
    assert task.splits == ("train", "test")
    pixels = arrays["train_images"] / 255.0
    assert task.mean == pytest.approx(pixels.mean(), rel=1e-12)
    assert task.std == pytest.approx(pixels.std(), rel=1e-12)
    batches = list(task.train_batches(10, np.random.default_rng(0)))
    assert len(batches) == task.steps_per_epoch(10) == 3
    x, y = batches[0]
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(labels) == sorted(arrays["train_labels"].astype(np.int64))   # a permutation
    images = np.concatenate([b[0] for b in batches])
    assert images.mean() == pytest.approx(0.0, abs=1e-5)
    assert images.std() == pytest.approx(1.0, abs=1e-5)
    order = np.random.default_rng(0).permutation(N_TRAIN)
    np.testing.assert_allclose(x[:, 0], (pixels[order[:10]] - task.mean) / task.std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, arrays["train_labels"][order[:10]])


def test_pixel_statistics_in_chunks_match_the_whole_array(monkeypatch):
    images = np.random.default_rng(3).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    whole = mnist.pixel_statistics(images)
    seen = []
    counting = np.bincount

    def recorded_bincount(x, minlength=0):
        seen.append(x.size)
        return counting(x, minlength=minlength)
    monkeypatch.setattr(mnist, "HISTOGRAM_CHUNK", 1000)     # does not divide 7 * 784 = 5488
    monkeypatch.setattr(mnist.np, "bincount", recorded_bincount)
    assert mnist.pixel_statistics(images) == whole
    assert max(seen) == 1000 and sum(seen) == images.size
    pixels = images / 255.0
    assert whole == pytest.approx((pixels.mean(), pixels.std()), rel=1e-12)


def test_subset_valid_and_evaluate(tmp_path):
    arrays = fixture_arrays()
    task = get_task("mnist", data_dir=write_fixture(tmp_path, arrays, False), subset=8, valid_size=4)
    assert task.splits == ("train", "valid", "test")
    assert task.steps_per_epoch(3) == 3
    np.testing.assert_array_equal(task.data["valid"][1], arrays["train_labels"][-4:])
    # a "model" that knows the test labels (one batch holds the whole test set)
    test_labels = arrays["test_labels"].astype(np.int64)
    model = FixedOutput(lambda x: np.eye(10)[test_labels[:len(x)]])
    result = task.evaluate(model, batch_size=N_TEST)
    assert result["accuracy"] == 1.0 and result["error"] == 0.0
    base = task.trivial_baseline()
    prior = np.bincount(arrays["train_labels"][:8], minlength=10) / 8
    assert base["accuracy"] == pytest.approx(np.mean(test_labels == np.argmax(prior)))
    with pytest.raises(ValueError, match="subset must be <= 20"):
        get_task("mnist", data_dir=tmp_path, subset=21, valid_size=4)


def test_metrics_on_hand_made_outputs(tmp_path):
    task = get_task("mnist", data_dir=write_fixture(tmp_path, fixture_arrays(), True))
    logits = np.zeros((3, 10))
    logits[0, 2] = logits[1, 5] = logits[2, 1] = 3.0
    m = task.metrics(engine.Tensor(logits), np.array([2, 5, 7]))
    assert m["correct"] == 2 and m["count"] == 3
    z = np.log(np.exp(3.0) + 9)
    assert m["ce_sum"] == pytest.approx(2 * (z - 3.0) + z)
    with pytest.raises(ValueError, match=r"mnist task: model output must have shape \(3, 10\)"):
        task.loss(engine.Tensor(logits[:, :9]), np.array([2, 5, 7]))


def test_corrupt_headers(tmp_path):
    arrays = fixture_arrays()
    write_fixture(tmp_path, arrays, False)
    path = tmp_path / "train-images-idx3-ubyte"
    good = path.read_bytes()
    path.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: bad magic number"):
        load_mnist(tmp_path)
    path.write_bytes(good[:-5])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_mnist(tmp_path)
    path.write_bytes(good)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(N_TEST + 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="must hold 10 labels"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(ValueError, match="corrupt gzip"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="element type 0x0d"):
        parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))


def test_missing_file_in_given_folder_is_named(tmp_path):
    write_fixture(tmp_path, fixture_arrays(), True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()

    def no_network(url):
        raise AssertionError("must not download when data_dir is given")
    with pytest.raises(MissingDataError, match=r"(?s)--data-dir " + re.escape(str(tmp_path)) +
                       r".*missing: t10k-labels-idx1-ubyte\(\.gz\)"):
        load_mnist(tmp_path, fetch=no_network)
    with pytest.raises(ValueError, match="t10k-labels"):      # also a ValueError for train.py
        get_task("mnist", data_dir=tmp_path)


def fake_mirrors(monkeypatch, arrays):
    """Point the loader at fixture bytes: MD5s of the fixture content, two fake mirrors."""
    contents = {stem: idx_bytes(arrays[key]) for key, stem in mnist.FILES.items()}
    monkeypatch.setattr(mnist, "CONTENT_MD5", {s: hashlib.md5(c).hexdigest() for s, c in contents.items()})
    monkeypatch.setattr(mnist, "MIRRORS", ("https://bad.example", "https://good.example"))
    return contents


def test_download_verifies_decompressed_checksum(tmp_path, monkeypatch):
    arrays = fixture_arrays()
    contents = fake_mirrors(monkeypatch, arrays)
    monkeypatch.delenv("COMPACTNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def fetch(url):
        calls.append(url)
        stem = url.rsplit("/", 1)[1][:-3]
        if url.startswith("https://bad"):
            return gzip.compress(contents[stem][:-1] + b"\x00")   # right size, wrong bytes
        return gzip.compress(contents[stem], compresslevel=1)     # re-compressed: .gz differs
    loaded = load_mnist(fetch=fetch)
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert len(calls) == 8 and all(u.endswith(".gz") for u in calls)
    cached = sorted(p.name for p in (tmp_path / "cache" / "compactnet" / "mnist").iterdir())
    assert cached == sorted(stem + ".gz" for stem in mnist.FILES.values())
    # the second load reads the cache and never fetches
    load_mnist(fetch=lambda url: pytest.fail("fetched again"))


def test_download_failure_message(tmp_path, monkeypatch):
    fake_mirrors(monkeypatch, fixture_arrays())
    monkeypatch.setenv("COMPACTNET_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url):
        raise OSError("network unreachable")
    with pytest.raises(MissingDataError) as info:
        load_mnist(fetch=offline)
    looked, missing, fix = str(info.value).splitlines()      # three lines: where, what, how
    assert str(tmp_path / "mnist") in looked and str(tmp_path / "cache" / "compactnet" / "mnist") in looked
    assert "train-images-idx3-ubyte" in missing and "network unreachable" in missing
    assert "--data-dir" in fix
    assert not any((tmp_path / "cache").rglob("*.gz"))


def test_search_order_env_folder_then_cache(tmp_path, monkeypatch):
    """Without data_dir: $COMPACTNET_DATA/mnist first, then the user cache; nothing is fetched."""
    arrays, other = fixture_arrays(0), fixture_arrays(1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fixture(tmp_path / "cache" / "compactnet" / "mnist", other, True)
    monkeypatch.delenv("COMPACTNET_DATA", raising=False)
    no_fetch = lambda url: pytest.fail("fetched")  # noqa: E731
    np.testing.assert_array_equal(load_mnist(fetch=no_fetch)["test_labels"], other["test_labels"])
    monkeypatch.setenv("COMPACTNET_DATA", str(tmp_path / "env"))
    write_fixture(tmp_path / "env" / "mnist", arrays, False)
    np.testing.assert_array_equal(load_mnist(fetch=no_fetch)["test_labels"], arrays["test_labels"])
    with pytest.raises(MissingDataError, match="--data-dir"):     # a given folder is the only one searched
        load_mnist(tmp_path / "empty", fetch=no_fetch)


def test_download_verified_rejects_wrong_bytes(tmp_path):
    data = b"fixture content"
    digest = hashlib.md5(data).hexdigest()
    with pytest.raises(OSError, match="checksum mismatch"):
        download.download_verified("f.gz", ["m1"], digest, tmp_path, fetch=lambda u: b"other")
    path = download.download_verified("f.gz", ["m1", "m2"], digest, tmp_path,
                                      fetch=lambda u: data if u == "m2/f.gz" else b"x")
    assert path.read_bytes() == data


@pytest.mark.data
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"real MNIST not found in {SHARED_DATA}")
def test_real_mnist():
    task = get_task("mnist", data_dir=SHARED_DATA / "mnist")
    assert task.data["train"][0].shape == (55000, 28, 28)            # the last 5,000 are held out
    assert task.data["valid"][0].shape == (5000, 28, 28) and task.valid_size == 5000
    assert task.split_rows == {"train": range(55000), "valid": range(55000, 60000)}
    assert task.data["test"][0].shape == (10000, 28, 28)
    assert round(task.mean, 4) == 0.1307 and round(task.std, 4) == 0.3081
    assert sorted(np.unique(task.data["test"][1])) == list(range(10))
    assert task.trivial_baseline()["accuracy"] == pytest.approx(0.1135)   # share of test '1's
