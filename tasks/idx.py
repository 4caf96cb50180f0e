"""Reading and writing IDX files (the MNIST format), gzip-compressed or raw, with header checks."""
import gzip
import os

import numpy as np

UBYTE = 0x08   # the only element type the MNIST files use


def open_bytes(path):
    """The (decompressed) bytes of an IDX file; gzip is recognised by its magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"IDX file {path}: corrupt gzip data ({exc})") from None
    return raw


def parse_idx(data, source="<bytes>"):
    """Parse IDX bytes into a uint8 array, checking the magic number and the declared size."""
    if len(data) < 4:
        raise ValueError(f"IDX file {source}: too short for a header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"IDX file {source}: bad magic number {data[:4].hex()} "
                         "(expected 0000 08 nn; is it an IDX file?)")
    if data[2] != UBYTE:
        raise ValueError(f"IDX file {source}: element type 0x{data[2]:02x} unsupported "
                         f"(expected 0x{UBYTE:02x}, unsigned bytes)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"IDX file {source}: header declares {ndim} dimensions but the file has "
                         f"{len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(f"IDX file {source}: header says shape {shape} ({expected} bytes) but the "
                         f"file has {len(data)} bytes (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path):
    """Read an IDX file (gzip or raw) into a uint8 array."""
    return parse_idx(open_bytes(path), source=os.fspath(path))


def idx_bytes(array):
    """The IDX encoding of a uint8 array."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"idx_bytes: array must be uint8, got {array.dtype}")
    header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path, array, compress=None):
    """Write a uint8 array as IDX; gzip when `compress` is true or the path ends in .gz."""
    data = idx_bytes(array)
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
