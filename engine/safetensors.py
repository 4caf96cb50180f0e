"""A small reader/writer of the safetensors format: named little-endian arrays plus string metadata.

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of UTF-8 JSON, then the raw array bytes. The JSON maps each array name
to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} (offsets relative to the
start of the byte buffer) and may hold "__metadata__": {string: string}. The buffer must be
covered by the arrays with no holes or overlaps. BF16 arrays (common in PyTorch exports) are
read as float32; NumPy has no bfloat16 to write them back.
"""
import json
import os
import struct

import numpy as np

from . import backend
from .io import atomic_write

METADATA_KEY = "__metadata__"
MAX_HEADER_BYTES = 100_000_000          # the reference implementation's limit
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
    return ValueError(f"load_safetensors: {where} is not a valid safetensors file: {why}")


def decode(blob, where="<bytes>"):
    """(arrays, metadata) from safetensors bytes; ValueError naming `where` for truncated or foreign data."""
    blob = memoryview(blob)
    if len(blob) < 8:
        raise _bad(where, f"{len(blob)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER_BYTES or n > len(blob) - 8:
        raise _bad(where, f"header length {n} does not fit a file of {len(blob)} bytes "
                          "(truncated, or not a safetensors file)")
    try:
        header = json.loads(bytes(blob[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(where, f"the header is not UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(where, f"the header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise _bad(where, "__metadata__ must map strings to strings")
    buffer = blob[8 + n:]
    arrays, spans = {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) < {"dtype", "shape", "data_offsets"}:
            raise _bad(where, f"entry {name!r} lacks dtype, shape or data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in DTYPES and code != BF16:
            raise _bad(where, f"entry {name!r} has unsupported dtype {code!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _bad(where, f"entry {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise _bad(where, f"entry {name!r} has invalid data_offsets {offsets!r}")
        itemsize = 2 if code == BF16 else np.dtype(DTYPES[code]).itemsize
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        begin, end = offsets
        if end - begin != expected:
            raise _bad(where, f"entry {name!r} spans {end - begin} bytes, its shape {shape} and dtype "
                              f"{code} need {expected}")
        if end > len(buffer):
            raise _bad(where, f"entry {name!r} ends at byte {end} of a {len(buffer)}-byte buffer "
                              "(the file is truncated)")
        raw = buffer[begin:end]
        if code == BF16:   # bfloat16 is the top half of a float32
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32).reshape(shape)
        else:
            array = np.frombuffer(raw, dtype=DTYPES[code]).reshape(shape)
            array = array.astype(array.dtype.newbyteorder("="), copy=True)
        arrays[name] = array
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise _bad(where, f"entry {name!r} starts at byte {begin}, expected {position} "
                              "(arrays overlap or leave a hole)")
        position = end
    if position != len(buffer):
        raise _bad(where, f"{len(buffer) - position} bytes after the last array (not covered by any entry)")
    return arrays, dict(metadata)


def load_safetensors(path):
    """(arrays name -> NumPy array, metadata str -> str) from a .safetensors file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_safetensors: no such file: {path}")
    with open(path, "rb") as fh:
        blob = fh.read()
    return decode(blob, path)


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
