"""Builders of hostile files: .npz members with any .npy header and payload, safetensors blobs."""
import json
import struct
import zipfile

import numpy as np

from engine import io


def npy_header(descr, shape, fortran=False):
    """A version 1.0 .npy header declaring `descr` and `shape` (any values, unchecked)."""
    text = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, tuple(shape))
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def write_npz(path, members, deflate=False):
    """An .npz at `path` from `members`: name -> (header bytes, payload bytes or (chunk, count))."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, (header, payload) in members.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as fh:
                fh.write(header)
                chunk, count = payload if isinstance(payload, tuple) else (payload, 1)
                for _ in range(count):
                    fh.write(chunk)
    return path


def metadata_member(arrays, extra=None):
    """The __metadata__ member io.load expects for `arrays` (right format and checksum)."""
    meta = dict(extra or {}, format=io.FORMAT, sha256=io.digest(arrays))
    blob = json.dumps(meta).encode()
    return npy_header("|u1", (len(blob),)) , blob


def checkpoint_with(path, name, header, payload, deflate=False):
    """A compactnet .npz whose array `name` has the given raw header and payload."""
    return write_npz(path, {name: (header, payload), "__metadata__": metadata_member({})}, deflate)


def safetensors_blob(header, data=b"", length=None):
    """Safetensors bytes from a header (dict or raw bytes), the array bytes and an optional false length."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def array_bytes(shape, dtype=np.float32):
    return np.zeros(shape, dtype).tobytes()
