"""engine.io: round trip with metadata, atomic writes, clear errors for truncated, foreign or corrupted files."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from engine import io, npz_reader
from tests.reliability import _hostile_files as hostile
from tests.reliability._memory_limit import peak_bytes


def _arrays(rng):
    return {"w": rng.standard_normal((3, 4)).astype(np.float32), "idx": np.arange(5),
            "scalar": np.float64(2.5) * np.ones(())}


def test_round_trip_with_metadata(tmp_path, rng):
    arrays = _arrays(rng)
    path = tmp_path / "ckpt.npz"
    io.save(path, arrays, {"epoch": 3, "name": "lenet", "lrs": [0.1, 0.01]})
    loaded, meta = io.load(path)
    assert loaded.keys() == arrays.keys()
    for k in arrays:
        assert loaded[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(loaded[k], arrays[k])
    assert meta["epoch"] == 3 and meta["name"] == "lenet" and meta["lrs"] == [0.1, 0.01]
    assert meta["format"] == io.FORMAT and len(meta["sha256"]) == 64


def test_failing_save_leaves_the_old_file_intact(tmp_path, rng, monkeypatch):
    path = tmp_path / "ckpt.npz"
    io.save(path, {"a": np.ones(3)}, {"v": 1})
    before = path.read_bytes()

    def savez_that_dies(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(io.np, "savez", savez_that_dies)
    with pytest.raises(KeyboardInterrupt):
        io.save(path, {"a": np.zeros(3)}, {"v": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]   # no temporary file left behind
    monkeypatch.undo()
    arrays, meta = io.load(path)
    assert meta["v"] == 1


def test_an_interrupt_inside_the_zip_writers_cleanup_stays_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C landing as np.savez closes an archive entry (before the entry's own cleanup runs): savez's
    zipf.close() then raises its own ValueError, the interrupt as its context. The caller must see the
    KeyboardInterrupt, the old file stay, no temporary remain, and nothing print later when the
    half-closed archive is finalized."""
    path = tmp_path / "ckpt.npz"
    io.save(path, {"a": np.ones(3)}, {"v": 1})
    before = path.read_bytes()
    close, landed = zipfile._ZipWriteFile.close, []

    def interrupted_close(entry):
        if not landed:
            landed.append(True)
            raise KeyboardInterrupt       # at the entry's first bytecode: its writing flag stays set
        return close(entry)

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(zipfile._ZipWriteFile, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt) as caught:
        io.save(path, {"a": np.zeros(3)}, {"v": 2})
    assert landed == [True]
    del caught
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.npz"]
    assert unraisable == []
    assert io.interrupt_behind(ValueError("plain")) is None


def test_truncated_file_is_a_clear_error(tmp_path, rng):
    path = tmp_path / "ckpt.npz"
    io.save(path, _arrays(rng))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        io.load(path)


def test_foreign_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a compactnet checkpoint"):
        io.load(path)


@pytest.mark.parametrize("writer", ["npy", "text"])
def test_non_archive_files_are_clear_errors(tmp_path, writer):
    path = tmp_path / "file.bin"
    if writer == "npy":
        with open(path, "wb") as fh:
            np.save(fh, np.ones(3))
    else:
        path.write_text("not an array file at all")
    with pytest.raises(ValueError, match="load: .*file.bin"):
        io.load(path)


def test_flipped_byte_is_caught(tmp_path, rng):
    path = tmp_path / "ckpt.npz"
    io.save(path, {"w": np.zeros(1000)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        offset = z.getinfo("w.npy").header_offset
    data[offset + 600] ^= 0xFF   # inside the stored array bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        io.load(path)


def test_checksum_catches_changed_arrays_in_a_well_formed_archive(tmp_path):
    # rebuild the archive with one value changed but the old metadata: only the checksum can tell
    path = tmp_path / "ckpt.npz"
    io.save(path, {"w": np.zeros(4)}, {"note": "x"})
    with np.load(path) as z:
        meta_blob = z["__metadata__"]
    np.savez(path, w=np.array([0.0, 0.0, 1e-9, 0.0]), __metadata__=meta_blob)
    with pytest.raises(ValueError, match="checksum"):
        io.load(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="reserved"):
        io.save(tmp_path / "a.npz", {"__metadata__": np.ones(1)})
    with pytest.raises(TypeError, match="object"):
        io.save(tmp_path / "a.npz", {"a": np.array([None, 1], dtype=object)})
    with pytest.raises(TypeError):
        io.save(tmp_path / "a.npz", {"a": np.ones(1)}, {"f": object()})   # metadata must be JSON-able


def test_atomic_write_gives_ordinary_permissions_and_no_leftovers(tmp_path):
    """The file gets the mode open() would give it (not mkstemp's 0o600); a failed write leaves nothing."""
    path = tmp_path / "a.txt"
    io.atomic_write(str(path), lambda fh: fh.write(b"hello"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_bytes() == b"hello" and (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    with pytest.raises(RuntimeError):
        io.atomic_write(str(tmp_path / "b.txt"), lambda fh: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


# ---- untrusted archives (issue 18): sizes checked before reading, bounded inflation, dtypes ----
@pytest.mark.parametrize("descr", ["|O", "<U4", "|V8", "|S3", "<c16", "<i2", [("a", "<f4")]])
def test_dtypes_outside_the_allow_list_are_refused(tmp_path, descr):
    path = hostile.checkpoint_with(tmp_path / "c.npz", "w", hostile.npy_header(descr, (2,)), b"\0" * 64)
    with pytest.raises(io.FileFormatError, match=r"c\.npz.*dtype"):
        io.load(path)


def test_save_refuses_dtypes_load_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        io.save(tmp_path / "a.npz", {"a": np.ones(2, complex)})


@pytest.mark.parametrize("deflate", [False, True])
def test_a_shape_larger_than_the_member_is_refused_before_allocating(tmp_path, deflate):
    header = hostile.npy_header("<f8", (10 ** 9,))   # 8 GB declared, 80 bytes stored
    path = hostile.checkpoint_with(tmp_path / "c.npz", "w", header, b"\0" * 80, deflate)
    error, peak = peak_bytes(lambda: io.load(path))
    assert isinstance(error, io.FileFormatError) and "c.npz" in str(error) and "declares" in str(error)
    assert peak < 5_000_000


def test_a_deflate_bomb_is_refused_without_inflating(tmp_path):
    count = 200   # 200 MB of zeros in ~200 kB: more than the file size plus MAX_EXTRA_BYTES
    header = hostile.npy_header("<f8", (count * (1 << 20) // 8,))
    path = hostile.checkpoint_with(tmp_path / "bomb.npz", "w", header, (bytes(1 << 20), count), True)
    assert path.stat().st_size < 2_000_000
    error, peak = peak_bytes(lambda: io.load(path))
    assert isinstance(error, io.FileFormatError) and "decompression bomb" in str(error)
    assert peak < 5_000_000


def test_a_deflated_member_is_inflated_only_to_its_declared_size(tmp_path):
    # the zip directory says 8 kB, the stream holds 50 MB: reading stops at the declared size
    header = hostile.npy_header("<f8", (1024,))
    path = hostile.checkpoint_with(tmp_path / "c.npz", "w", header, (bytes(1 << 20), 50), True)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("w.npy")
        declared = len(header) + 8192
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")   # the directory's uncompressed size is at byte 24
    data[central + 24:central + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.file_size > declared
    error, peak = peak_bytes(lambda: io.load(path))
    assert isinstance(error, io.FileFormatError) and "c.npz" in str(error)
    assert peak < 5_000_000


@pytest.mark.parametrize("text", [b"[1, 2]", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"])
def test_metadata_that_is_not_a_json_object_is_refused(tmp_path, text):
    member = (hostile.npy_header("|u1", (len(text),)), text)
    path = hostile.write_npz(tmp_path / "c.npz", {"__metadata__": member})
    with pytest.raises(io.FileFormatError, match=r"c\.npz.*metadata"):
        io.load(path)


def test_a_zip_directory_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(npz_reader, "MAX_DIRECTORY_BYTES", 100)
    path = tmp_path / "c.npz"
    io.save(path, {f"a{i}": np.ones(1) for i in range(10)})
    with pytest.raises(io.FileFormatError, match="zip directory claims"):
        io.load(path)


# ---- temporaries of interrupted writes ---------------------------------------------------------
def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.name != "posix", reason="temporaries are cleaned on POSIX only (liveness probe)")
def test_a_successful_write_removes_temporaries_of_dead_writers_only(tmp_path):
    stale = f".tmp-{_dead_pid()}-abcd.npz"
    kept = [f".tmp-{os.getpid()}-mine.npz", f".tmp-{os.getppid()}-live.npz", ".tmp-notours.npz", "x.tmp"]
    for name in [stale] + kept:
        (tmp_path / name).write_bytes(b"half a file")
    io.save(tmp_path / "ckpt.npz", {"a": np.ones(2)})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["ckpt.npz"])
