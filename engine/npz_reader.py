"""Bounded .npz reading: zip and .npy header sizes are checked against the file before anything is read.

np.load believes an archive's headers: a crafted shape allocates gigabytes and a deflated member is
inflated whole before any check. Here the zip central directory is sized from its end record, every
member's declared size must match its .npy header and fit the file, the declared total may exceed the
file size by at most MAX_EXTRA_BYTES, and members are read (inflated) in chunks up to that size only.
A rejected file therefore costs at most its own size plus MAX_EXTRA_BYTES (plus small headers).
"""
import math
import struct
import zipfile

import numpy as np

from .untrusted import FileFormatError

MAX_DIRECTORY_BYTES = 4_000_000   # zipfile keeps ~12x the central directory's size as ZipInfo objects
MAX_EXTRA_BYTES = 100_000_000     # arrays may hold at most the file size plus this many bytes
MAX_NPY_HEADER = 10_000           # NumPy's own default limit for a .npy header
MAX_DIMS = 32
CHUNK = 1 << 20
# the dtypes compactnet's writers store: float weights, int64 (optimizer step counts, permutations),
# uint8 (quantized codes, the metadata blob); int32 and bool are harmless numeric kinds
ALLOWED_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32,
                                              np.int64, np.uint8, np.bool_))
_END = b"PK\x05\x06"
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error, NotImplementedError,
               KeyError, RuntimeError, OverflowError)


def allowed_dtype(dtype):
    """True for the numeric dtypes an .npz of ours may hold (either byte order)."""
    dtype = np.dtype(dtype)
    return dtype.fields is None and dtype.subdtype is None and dtype.newbyteorder("=") in ALLOWED_DTYPES


def _check_directory_size(fh, size, bad):
    """The central directory's size from the end record (and its zip64 form), as zipfile finds it."""
    tail_len = min(size, 22 + 65536)   # the end record and the longest comment, as zipfile searches
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    end = len(tail) - 22
    if not (end >= 0 and tail[end:end + 4] == _END and tail[-2:] == b"\0\0"):
        end = tail.rfind(_END)
    if end < 0 or len(tail) - end < 22:
        raise bad("no zip end record (truncated or corrupted)")
    (directory,) = struct.unpack("<I", tail[end + 12:end + 16])
    if end >= 20 and tail[end - 20:end - 16] == _END64_LOCATOR:
        start = size - len(tail) + end - 20 - 56
        fh.seek(max(start, 0))
        record = fh.read(56)
        if start < 0 or record[:4] != _END64:
            raise bad("a broken zip64 end record (truncated or corrupted)")
        (directory,) = struct.unpack("<Q", record[40:48])
    if directory > min(size, MAX_DIRECTORY_BYTES):
        raise bad(f"its zip directory claims {directory} bytes (the file has {size}; "
                  f"the limit is {MAX_DIRECTORY_BYTES})")


def _check_members(infos, size, bad):
    """Names, methods and declared sizes of the members, all before any member is read."""
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise bad("it holds two members of the same name")
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise bad(f"member {info.filename!r} is not an .npy array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
            raise bad(f"member {info.filename!r} is encrypted or uses compression method "
                      f"{info.compress_type} (only stored and deflated are read)")
        if info.header_offset + info.compress_size > size:
            raise bad(f"member {info.filename!r} claims {info.compress_size} bytes at offset "
                      f"{info.header_offset}, past the end of the {size}-byte file (truncated?)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise bad(f"stored member {info.filename!r} has inconsistent sizes")
        total += info.file_size
    if total > size + MAX_EXTRA_BYTES:
        raise bad(f"its members expand to {total} bytes, more than the file's {size} bytes plus "
                  f"{MAX_EXTRA_BYTES} (a decompression bomb, or not one of ours)")


def _array_header(stream, info, bad):
    """(shape, fortran_order, dtype, header length) of the .npy member open in `stream`."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f".npy format version {version} is not read")
    except (ValueError, TypeError, SyntaxError) as e:
        raise bad(f"member {info.filename!r} has a broken .npy header ({e})") from None
    if not allowed_dtype(dtype):
        raise bad(f"member {info.filename!r} has dtype {dtype}; allowed: "
                  f"{', '.join(str(d) for d in ALLOWED_DTYPES)}")
    if len(shape) > MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"member {info.filename!r} has an invalid shape {shape!r}")
    return shape, fortran, dtype, stream.tell()


def _read_member(archive, info, bad):
    """The array of one member, read in chunks into an array of exactly its declared size."""
    with archive.open(info) as stream:
        shape, fortran, dtype, header = _array_header(stream, info, bad)
        count = math.prod(shape)
        if header + count * dtype.itemsize != info.file_size:
            raise bad(f"member {info.filename!r}: shape {shape} of {dtype} needs "
                      f"{count * dtype.itemsize} bytes, the archive declares {info.file_size - header}")
        array = np.empty(count, dtype)
        view = array.view(np.uint8)
        position = 0
        while position < view.size:
            data = stream.read(min(CHUNK, view.size - position))
            if not data:
                raise bad(f"member {info.filename!r} ends early (truncated)")
            view[position:position + len(data)] = np.frombuffer(data, np.uint8)
            position += len(data)
        if stream.read(1):   # also where zipfile checks the member's CRC
            raise bad(f"member {info.filename!r} holds more data than its header declares")
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_npz(path, where=None):
    """name -> array for every member of the .npz at `path`; FileFormatError naming it otherwise."""
    where = where or f"{path}"

    def bad(why):
        return FileFormatError(f"{where}: {why}")

    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        magic = fh.read(6)
        if magic == b"\x93NUMPY":
            raise bad("is a single .npy array, not an .npz archive")
        if magic[:4] not in (b"PK\x03\x04", _END):
            raise bad("is truncated or corrupted, or not an .npz archive (no zip signature)")
        try:
            _check_directory_size(fh, size, bad)
            with zipfile.ZipFile(fh) as archive:
                infos = archive.infolist()
                _check_members(infos, size, bad)
                return {info.filename[:-4]: _read_member(archive, info, bad) for info in infos}
        except FileFormatError:
            raise
        except _ZIP_ERRORS as e:
            raise bad(f"is truncated or corrupted ({type(e).__name__}: {e})") from None
