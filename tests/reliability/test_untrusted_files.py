"""Untrusted safetensors headers and gzip data files (issue 18): a clear error naming the file, before allocating."""
import gzip
import struct
import zlib

import numpy as np
import pytest

from engine import safetensors as st
from engine.untrusted import FileFormatError
from tasks import download, idx

from ._hostile_files import array_bytes, safetensors_blob
from ._memory_limit import peak_bytes


def _entry(shape=(2,), offsets=(0, 8), dtype="F32", **extra):
    return dict({"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}, **extra)


BAD_HEADERS = {
    "extra keys": ({"x": _entry(note="hi")}, "extra keys"),
    "deep nesting": (b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    "overflowing shape": ({"x": _entry(shape=(2 ** 62, 2 ** 62, 4), offsets=(0, 8))}, "too large"),
    "overflow to the right size": ({"x": _entry(shape=(2 ** 64 + 2,), offsets=(0, 8))}, "too large"),
    "boolean shape": ({"x": _entry(shape=(True, 2))}, "invalid shape"),
    "negative shape": ({"x": _entry(shape=(-2,))}, "invalid shape"),
    "float shape": ({"x": _entry(shape=(2.0,))}, "invalid shape"),
    "too many dims": ({"x": _entry(shape=(1,) * 40, offsets=(0, 4))}, "invalid shape"),
    "float offsets": ({"x": _entry(offsets=(0.0, 8))}, "data_offsets"),
    "boolean offsets": ({"x": _entry(offsets=(False, 8))}, "data_offsets"),
    "reversed offsets": ({"x": _entry(offsets=(8, 0))}, "data_offsets"),
    "offsets past the file": ({"x": _entry(shape=(10 ** 9,), offsets=(0, 4 * 10 ** 9))}, "truncated"),
    "offsets against the dtype": ({"x": _entry(dtype="F64")}, "need 16"),
    "dtype as a list": ({"x": _entry(dtype=["F32"])}, "unsupported dtype"),
    "entry not an object": ({"x": [1, 2]}, "lacks"),
    "metadata not strings": ({"__metadata__": {"k": ["v"]}, "x": _entry()}, "strings to strings"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_safetensors_headers_are_one_line_errors_naming_the_file(tmp_path, case):
    header, words = BAD_HEADERS[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_blob(header, array_bytes(2)))
    error, peak = peak_bytes(lambda: st.load_safetensors(path))
    assert isinstance(error, FileFormatError), error
    assert words in str(error) and "model.safetensors" in str(error) and "\n" not in str(error)
    assert peak < 20_000_000


@pytest.mark.parametrize("length", [2 ** 64 - 1, 2 ** 63, st.MAX_HEADER_BYTES + 1, 10 ** 6])
def test_header_lengths_beyond_the_file_or_the_limit_are_refused_before_reading(tmp_path, length):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_blob({"x": _entry()}, array_bytes(2), length=length))
    error, peak = peak_bytes(lambda: st.load_safetensors(path))
    assert isinstance(error, FileFormatError) and "header length" in str(error)
    assert peak < 1_000_000


def test_a_valid_file_costs_about_its_own_size(tmp_path):
    arrays = {"w": np.ones((1000, 1000), np.float32), "b": np.arange(10, dtype=np.int64)}
    path = tmp_path / "model.safetensors"
    st.save_safetensors(path, arrays)
    loaded = {}
    error, peak = peak_bytes(lambda: loaded.update(st.load_safetensors(path)[0]))
    assert error is None
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype for k in arrays)
    assert peak < path.stat().st_size * 1.1 + 100_000


def test_a_file_shorter_than_its_header_says_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    blob = safetensors_blob({"x": _entry()}, array_bytes(2))
    path.write_bytes(blob[:-3])
    with pytest.raises(FileFormatError, match="model.safetensors.*truncated"):
        st.load_safetensors(path)


# ---- gzip-compressed data files: bounded streaming, corrupted streams --------------------------
def _idx_gz(path, shape, payload_chunks):
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, idx.UBYTE, len(shape)]) + struct.pack(f">{len(shape)}I", *shape))
        for chunk in payload_chunks:
            fh.write(chunk)
    return path


def test_an_idx_header_declaring_too_much_is_refused_before_inflating(tmp_path):
    path = _idx_gz(tmp_path / "x.gz", (60000, 1000, 1000), [bytes(1 << 20)] * 20)
    error, peak = peak_bytes(lambda: idx.read_idx(path))
    assert isinstance(error, FileFormatError) and "x.gz" in str(error) and "declares" in str(error)
    assert peak < 5_000_000


def test_an_idx_stream_longer_than_its_header_stops_inflating(tmp_path):
    path = _idx_gz(tmp_path / "x.gz", (10, 10), [bytes(1 << 20)] * 200)   # 200 MB behind 100 bytes
    error, peak = peak_bytes(lambda: idx.read_idx(path))
    assert isinstance(error, FileFormatError) and "more data than its header declares" in str(error)
    assert peak < 5_000_000


def test_an_idx_gz_file_round_trips(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.gz"
    idx.write_idx(path, array)
    np.testing.assert_array_equal(idx.read_idx(path), array)


def test_a_corrupted_deflate_stream_is_a_value_error_naming_the_file(tmp_path):
    good = gzip.compress(idx.idx_bytes(np.arange(5000, dtype=np.uint8) % 7))
    bad = bytearray(good)
    bad[12:40] = bytes(b ^ 0x5A for b in bad[12:40])   # inside the deflate data, after the gzip header
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*corrupt gzip"):
        idx.read_idx(path)
    with pytest.raises(zlib.error):   # the class of error gzip.decompress let through before
        gzip.decompress(bytes(bad))


def test_a_downloaded_bomb_is_refused_while_hashing(monkeypatch):
    monkeypatch.setattr(download, "MAX_INFLATED_BYTES", 1 << 20)
    bomb = gzip.compress(bytes(8 << 20))
    with pytest.raises(FileFormatError, match="mirror-x.*more than"):
        download.content_md5(bomb, "mirror-x")
    with pytest.raises(FileFormatError, match="more than"):
        download.decompressed(bomb, limit=1 << 20)
    assert download.content_md5(gzip.compress(b"abc")) == download.md5_hex(b"abc")
