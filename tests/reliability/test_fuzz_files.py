"""Fuzzing untrusted files under a memory limit: safetensors headers and .npz archives load or fail clearly."""
import functools
import os

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis (the test extra)")
from hypothesis import given, strategies as st  # noqa: E402

from engine import io, safetensors  # noqa: E402
from tests.reliability import _hostile_files as hostile  # noqa: E402
from tests.reliability._fuzz import FUZZ  # noqa: E402
from tests.reliability._memory_limit import run_limited  # noqa: E402

INTS = st.integers(-3, 40) | st.sampled_from([2 ** 31, 2 ** 62, 2 ** 63, 2 ** 64 + 1, 10 ** 30])
JUNK = st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=4) | st.lists(INTS, max_size=3)
CODES = st.sampled_from(sorted(safetensors.DTYPES) + ["BF16", "F33", ""]) | JUNK
SHAPES = st.lists(INTS | st.booleans() | st.floats(0, 4), max_size=5) | JUNK
OFFSETS = st.lists(INTS | st.floats(0, 64), min_size=0, max_size=3) | JUNK
DESCRS = st.sampled_from(["<f4", "<f8", "<f2", ">f8", "|u1", "<i8", "|b1", "|O", "<U3", "|V4", "<c8",
                          "<M8[s]", "|S2", "<i2", [("a", "<f4")]])


@st.composite
def entries(draw):
    entry = {"dtype": draw(CODES), "shape": draw(SHAPES), "data_offsets": draw(OFFSETS)}
    for key in draw(st.lists(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]), max_size=2)):
        entry.pop(key, None) if draw(st.booleans()) else entry.update({key: draw(JUNK)})
    return entry


@st.composite
def safetensors_files(draw):
    """Valid files with bytes flipped or cut, or headers built from drawn (often hostile) fields."""
    if draw(st.booleans()):
        shapes = draw(st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=1, max_size=3))
        blob = bytearray(safetensors.encode({f"a{i}": np.ones(s, np.float32) for i, s in enumerate(shapes)}))
        for position in draw(st.lists(st.integers(0, len(blob) - 1), max_size=3)):
            blob[position] = draw(st.integers(0, 255))
        return bytes(blob[:draw(st.integers(0, len(blob)))] if draw(st.booleans()) else blob)
    header = draw(st.dictionaries(st.text(max_size=3), entries(), max_size=3))
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=2), JUNK | st.text(), max_size=2) | JUNK)
    depth = draw(st.sampled_from([0, 0, 3, 100_000]))
    text = ('{"x": ' + "[" * depth + "]" * depth + "}").encode() if depth else None
    length = draw(st.none() | st.sampled_from([0, 7, 2 ** 63, 2 ** 64 - 1, 10 ** 8]))
    return hostile.safetensors_blob(text or header, draw(st.binary(max_size=64)), length)


@functools.lru_cache(maxsize=None)
def _bomb(tmp):
    """A checkpoint whose member inflates to 150 MB from ~150 kB (built once)."""
    path = os.path.join(tmp, "bomb.npz")
    header = hostile.npy_header("<f8", (150 * (1 << 20) // 8,))
    hostile.checkpoint_with(path, "w", header, (bytes(1 << 20), 150), True)
    with open(path, "rb") as fh:
        return fh.read()


@st.composite
def npz_files(draw, tmp):
    """Valid checkpoints with bytes flipped or cut, or archives of crafted .npy headers (some bombs)."""
    path = os.path.join(tmp, f"case{draw(st.integers(0, 10 ** 9))}.npz")
    if draw(st.booleans()):
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        io.save(path, {"w": np.ones(shape, np.float32), "t": np.zeros((), np.int64)}, {"epoch": 1})
        with open(path, "rb") as fh:
            blob = bytearray(fh.read())
        for position in draw(st.lists(st.integers(0, len(blob) - 1), max_size=3)):
            blob[position] = draw(st.integers(0, 255))
        with open(path, "wb") as fh:
            fh.write(blob[:draw(st.integers(0, len(blob)))] if draw(st.booleans()) else blob)
        return path
    if draw(st.integers(0, 9)) == 0:
        with open(path, "wb") as fh:
            fh.write(_bomb(tmp))
        return path
    shape = draw(st.lists(INTS | st.booleans(), max_size=3))
    payload = draw(st.binary(max_size=64))
    hostile.checkpoint_with(path, "w", hostile.npy_header(draw(DESCRS), shape), payload, draw(st.booleans()))
    return path


def _assert_clear(outcome, message, name):
    assert outcome in ("ok", "clear"), f"{name}: {message}"
    if outcome == "clear":
        assert name in message and "\n" not in message.strip(), message


@FUZZ
@given(blob=safetensors_files())
def test_safetensors_headers_load_or_fail_clearly_within_the_memory_limit(blob, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz.safetensors"
    path.write_bytes(blob)
    _assert_clear(*run_limited(lambda: safetensors.load_safetensors(path)), "fuzz.safetensors")


@FUZZ
@given(data=st.data())
def test_npz_archives_load_or_fail_clearly_within_the_memory_limit(data, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp()
    path = data.draw(npz_files(str(tmp)))
    try:
        _assert_clear(*run_limited(lambda: io.load(path)), os.path.basename(path))
    finally:
        os.remove(path)


def test_the_limit_catches_an_allocation_bomb():
    # the runner itself: a bomb beyond the budget must end as 'other' (MemoryError), not succeed
    outcome, message = run_limited(lambda: np.ones(400_000_000 // 8))
    assert outcome == "other" and "MemoryError" in message
