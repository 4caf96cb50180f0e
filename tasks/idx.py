"""Reading and writing IDX files (the MNIST format), gzip-compressed or raw, with header checks."""
import gzip
import math
import os
import struct

import numpy as np

from engine.untrusted import FileFormatError

from .download import MAX_INFLATED_BYTES, gunzip_chunks

UBYTE = 0x08   # the only element type the MNIST files use
MAX_IDX_BYTES = MAX_INFLATED_BYTES   # a header declaring more is refused before inflating further


def open_bytes(path):
    """The (decompressed) bytes of an IDX file; gzip is recognised by its magic bytes.

    A .gz file is inflated in chunks into a buffer of the size its IDX header declares (at most
    MAX_IDX_BYTES); more data, a corrupted stream or a bigger declaration is a FileFormatError.
    """
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            f.seek(0)
            return f.read()
        f.seek(0)
        return _inflate_idx(f, f"IDX file {os.fspath(path)}")


def _declared_size(head, where):
    """Header plus payload bytes that an IDX header declares; None while `head` is too short to tell."""
    if len(head) < 4 or len(head) < 4 + 4 * head[3]:
        return None
    ndim = head[3]
    size = 4 + 4 * ndim + math.prod(struct.unpack(f">{ndim}I", bytes(head[4:4 + 4 * ndim])))
    if size > MAX_IDX_BYTES:
        raise FileFormatError(f"{where}: header declares {size} bytes, more than the limit of "
                              f"{MAX_IDX_BYTES} (corrupt, or not an MNIST-sized file)")
    return size


def _inflate_idx(stream, where):
    """The inflated IDX bytes, streamed into one buffer sized by the header once it has arrived."""
    head, out, filled = bytearray(), None, 0
    for chunk in gunzip_chunks(stream, where, MAX_IDX_BYTES):
        if out is None:
            head += chunk
            declared = _declared_size(head, where)
            if declared is None:
                continue
            out, chunk = bytearray(declared), head
        if filled + len(chunk) > len(out):
            raise FileFormatError(f"{where}: holds more data than its header declares ({len(out)} bytes)")
        out[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    if out is None:
        return bytes(head)   # too short for a header: parse_idx says so
    return out if filled == len(out) else bytes(out[:filled])


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
