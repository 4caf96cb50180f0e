"""Save and load named arrays plus JSON metadata as .npz, atomically, with a checksum."""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from . import backend

_META_KEY = "__metadata__"
FORMAT = "compactnet-npz-1"


def digest(arrays):
    """SHA-256 over the names, dtypes, shapes and bytes of `arrays` (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path, arrays, metadata=None):
    """Write ``arrays`` (name -> array) and ``metadata`` (JSON-able dict) to ``path``.

    The file is written beside the target under a temporary name, flushed to
    disk and renamed over it, so an interrupted save never corrupts an existing
    file. A SHA-256 of the arrays goes into the metadata and is checked on load.
    """
    arrays = {name: backend.to_numpy(a) for name, a in arrays.items()}
    if _META_KEY in arrays:
        raise ValueError(f"save: array name {_META_KEY!r} is reserved")
    for name, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"save: array {name!r} has dtype object; only numeric arrays are saved")
    meta = dict(metadata or {})
    meta["format"] = FORMAT
    meta["sha256"] = digest(arrays)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays, **{_META_KEY: blob}), suffix=".npz")


def _new_file_mode():
    """The permissions open() would give a new file (0o666 less the umask); mkstemp's are 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write, suffix=""):
    """Call ``write(fileobj)`` on a temporary file beside `path`, fsync it, then rename it over
    `path`: a crash or kill at any moment leaves either the old file or the new one, never half.
    The one atomic writer of the project (model and run checkpoints, config files, downloads)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """Read a file written by ``save``; returns (arrays, metadata).

    Raises ValueError naming the file when it is truncated, corrupted, foreign,
    or its checksum does not match.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as e:  # NumPy's words for "not an array file" (e.g. pickled data)
        raise ValueError(f"load: {path} is not a compactnet checkpoint ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"load: {path} is truncated or corrupted ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"load: {path} is a single .npy array, not a compactnet .npz checkpoint")
    try:
        with archive as z:
            names = list(z.files)
            if _META_KEY not in names:
                raise ValueError(f"load: {path} is not a compactnet checkpoint (no metadata entry)")
            meta = json.loads(bytes(z[_META_KEY]).decode("utf-8"))
            arrays = {n: z[n] for n in names if n != _META_KEY}
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"load: {path} is truncated or corrupted ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("sha256") != digest(arrays):
        raise ValueError(f"load: {path} is corrupted: checksum of its arrays does not match its metadata")
    return arrays, meta
