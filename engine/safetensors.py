"""A small reader/writer of the safetensors format: named little-endian arrays plus string metadata.

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of UTF-8 JSON, then the raw array bytes. The JSON maps each array name
to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} (offsets relative to the
start of the byte buffer) and may hold "__metadata__": {string: string}. The buffer must be
covered by the arrays with no holes or overlaps. BF16 arrays (common in PyTorch exports) are
read as float32; NumPy has no bfloat16 to write them back.

Loading trusts nothing: the header length, every entry's keys, dtype, shape and offsets are checked
against each other and against the file size before any array is allocated or read, and only the
bytes the file holds are read. Any malformed header is a FileFormatError (a ValueError) naming the file.
"""
import json
import math
import os
import struct

import numpy as np

from . import backend
from .io import atomic_write
from .untrusted import MAX_JSON_BYTES, FileFormatError, parse_json

METADATA_KEY = "__metadata__"
ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
# the reference implementation allows 100 MB; parsing JSON holds up to ~25x its size as Python
# objects, so our limit keeps a hostile header within 100 MB (real headers are a few hundred kB)
MAX_HEADER_BYTES = MAX_JSON_BYTES
MAX_DIMS = 32
MAX_ARRAY_BYTES = 2 ** 63 - 1            # what NumPy can address (checked with zero dims left out)
# safetensors dtype code -> NumPy little-endian dtype
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
# (kind, itemsize) -> code, so an array of either byte order finds its code
CODES = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in DTYPES.items()}
BF16 = "BF16"


def _code_of(name, array):
    code = CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(f"save_safetensors: array {name!r} has dtype {array.dtype}; supported: "
                        f"{', '.join(str(np.dtype(v)) for v in DTYPES.values())}")
    return code


def _check_metadata(metadata):
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save_safetensors: metadata must map str to str (the format's rule), got "
                            f"{key!r}: {type(value).__name__}; encode other values with json.dumps")
    return metadata


def encode(arrays, metadata=None):
    """The safetensors bytes of `arrays` (name -> array) and `metadata` (str -> str)."""
    if not isinstance(arrays, dict):
        raise TypeError(f"save_safetensors: arrays must be a dict name -> array, got {type(arrays).__name__}")
    metadata = _check_metadata(metadata)
    header, chunks, offset = {}, [], 0
    for name in sorted(arrays):
        if not isinstance(name, str) or not name or name == METADATA_KEY:
            raise ValueError(f"save_safetensors: invalid array name {name!r}")
        array = np.asarray(backend.to_numpy(arrays[name]))
        code = _code_of(name, array)
        data = np.ascontiguousarray(array, dtype=np.dtype(DTYPES[code])).tobytes()
        header[name] = {"dtype": code, "shape": [int(s) for s in array.shape],
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header[METADATA_KEY] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)      # pad so the array bytes start 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_safetensors(path, arrays, metadata=None):
    """Write `arrays` and `metadata` to `path` atomically (temporary file, fsync, rename)."""
    blob = encode(arrays, metadata)
    atomic_write(path, lambda fh: fh.write(blob), suffix=".safetensors")


def _bad(where, why):
    return FileFormatError(f"load_safetensors: {where} is not a valid safetensors file: {why}")


def _header_length(head, size, where):
    """The header length from the first 8 bytes, checked against the limit and the file size."""
    if size < 8 or len(head) < 8:
        raise _bad(where, f"{size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise _bad(where, f"header length {n} does not fit a file of {size} bytes "
                          f"(truncated, not a safetensors file, or over the {MAX_HEADER_BYTES}-byte limit)")
    return n


def _check_shape(name, shape, itemsize, where):
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise _bad(where, f"entry {name!r:.100} has an invalid shape {shape!r:.200} (a list of at most "
                          f"{MAX_DIMS} non-negative integers)")
    if math.prod(s for s in shape if s) * itemsize > MAX_ARRAY_BYTES:
        raise _bad(where, f"entry {name!r:.100} has a shape too large for any array")
    return math.prod(shape) * itemsize


def _entry(name, info, buffer_size, where):
    """(begin, end, name, code, shape) of one header entry, every field checked."""
    if not name or not isinstance(info, dict) or not ENTRY_KEYS <= set(info):
        raise _bad(where, f"entry {name!r:.100} lacks dtype, shape or data_offsets")
    if set(info) != ENTRY_KEYS:
        raise _bad(where, f"entry {name!r:.100} has extra keys {sorted(set(info) - ENTRY_KEYS)!r:.200} "
                          "(only dtype, shape and data_offsets are allowed)")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or (code not in DTYPES and code != BF16):
        raise _bad(where, f"entry {name!r:.100} has unsupported dtype {code!r:.100}")
    itemsize = 2 if code == BF16 else np.dtype(DTYPES[code]).itemsize
    expected = _check_shape(name, shape, itemsize, where)
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise _bad(where, f"entry {name!r:.100} has invalid data_offsets {offsets!r:.200}")
    begin, end = offsets
    if end > buffer_size:
        raise _bad(where, f"entry {name!r:.100} ends at byte {end} of a {buffer_size}-byte buffer "
                          "(the file is truncated)")
    if end - begin != expected:
        raise _bad(where, f"entry {name!r:.100} spans {end - begin} bytes, its shape {shape!r:.200} and dtype "
                          f"{code} need {expected}")
    return begin, end, name, code, shape


def parse_header(text, buffer_size, where="<bytes>"):
    """(entries sorted by offset, metadata) from the JSON header; the entries must tile the
    `buffer_size` bytes after the header exactly. Nothing is allocated for the arrays here."""
    header = parse_json(text, f"load_safetensors: {where}: the header")
    if not isinstance(header, dict):
        raise _bad(where, f"the header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop(METADATA_KEY, None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(where, "__metadata__ must map strings to strings")
    entries = sorted(_entry(name, info, buffer_size, where) for name, info in header.items())
    position = 0
    for begin, end, name, _, _ in entries:
        if begin != position:
            raise _bad(where, f"entry {name!r:.100} starts at byte {begin}, expected {position} "
                              "(arrays overlap or leave a hole)")
        position = end
    if position != buffer_size:
        raise _bad(where, f"{buffer_size - position} bytes after the last array (not covered by any entry)")
    return entries, metadata


def _to_array(raw, code, shape):
    """A native-order array of `shape` from the raw little-endian bytes of one entry."""
    if code == BF16:   # bfloat16 is the top half of a float32
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    array = np.frombuffer(raw, dtype=DTYPES[code]).reshape(shape)
    return array.astype(array.dtype.newbyteorder("="), copy=True)


def decode(blob, where="<bytes>"):
    """(arrays, metadata) from safetensors bytes; FileFormatError naming `where` for truncated or foreign data."""
    blob = memoryview(blob)
    n = _header_length(blob[:8], len(blob), where)
    buffer = blob[8 + n:]
    entries, metadata = parse_header(blob[8:8 + n], len(buffer), where)
    arrays = {name: _to_array(buffer[begin:end], code, shape) for begin, end, name, code, shape in entries}
    return arrays, metadata


def _read_entry(fh, begin, end, code, shape, where):
    """One entry's array, read from the file straight into its own memory."""
    if code == BF16:
        raw = fh.read(end - begin)
        if len(raw) != end - begin:
            raise _bad(where, "the file ended early (changed while reading?)")
        return _to_array(raw, code, shape)
    array = np.empty(shape, dtype=DTYPES[code])
    view = array.reshape(-1).view(np.uint8)
    position = 0
    while position < view.size:
        got = fh.readinto(view[position:])
        if not got:
            raise _bad(where, "the file ended early (changed while reading?)")
        position += got
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def load_safetensors(path):
    """(arrays name -> NumPy array, metadata str -> str) from a .safetensors file.

    The header is checked against the file size before any array is allocated; each array is then
    read into its own memory, so a valid file costs its size and a rejected one little more than its header.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_safetensors: no such file: {path}")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        n = _header_length(fh.read(8), size, path)
        entries, metadata = parse_header(fh.read(n), size - 8 - n, path)
        arrays = {name: _read_entry(fh, begin, end, code, shape, path)
                  for begin, end, name, code, shape in entries}
    return arrays, metadata


def is_safetensors(path):
    """True when `path` starts like a safetensors file (a plausible header length, then '{')."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return n <= min(MAX_HEADER_BYTES, size - 8) and head[8:9] == b"{"
