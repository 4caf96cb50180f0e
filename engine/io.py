"""Save and load named arrays plus JSON metadata as .npz, atomically, with a checksum."""
import contextlib
import hashlib
import json
import os
import re
import secrets
import traceback

import numpy as np

from . import backend
from .npz_reader import ALLOWED_DTYPES, allowed_dtype, read_npz
from .untrusted import FileFormatError, parse_json  # noqa: F401  (FileFormatError: part of io's API)

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
        h.update(a)   # the buffer itself: hashing makes no copy of the bytes
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
        if not allowed_dtype(a.dtype):
            raise TypeError(f"save: array {name!r} has dtype {a.dtype}; saved dtypes: "
                            f"{', '.join(str(d) for d in ALLOWED_DTYPES)}")
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


_TEMPORARY = re.compile(r"\.tmp-(\d+)-")   # .tmp-<pid of the writer>-<random><suffix>


def atomic_write(path, write, suffix=""):
    """Call ``write(fileobj)`` on a temporary file beside `path`, fsync it, then rename it over
    `path`: a crash or kill at any moment leaves either the old file or the new one, never half.
    The one atomic writer of the project (model and run checkpoints, config files, downloads).
    After a successful write, temporaries left beside it by killed writers are removed."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    # the name is known before the file exists, so an exception at any point (a KeyboardInterrupt
    # raised by a signal handler between two bytecodes included) still finds and removes it
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(8)}{suffix}")
    fh = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        fh = os.fdopen(fd, "wb")
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        if fh is not None and not fh.closed:
            _finish_interrupted_writer(e)
            with contextlib.suppress(Exception):
                fh.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
        interrupt = interrupt_behind(e)
        if interrupt is not None and interrupt is not e:
            raise interrupt from None
        if isinstance(e, OSError) and e.filename in (None, tmp):   # a full disk names the target, not tmp
            e.filename = path
        raise
    remove_stale_temporaries(directory)


def _finish_interrupted_writer(error):
    """Let go of what a failed writer left behind (a half-written zip archive of np.savez, say) while
    its file is still open: their finalizers then close them into the temporary, which is deleted,
    instead of writing to a closed file later and printing "Exception ignored" with a traceback."""
    for each in _context_chain(error):
        traceback.clear_frames(each.__traceback__)     # the frames of finished calls drop their locals


def interrupt_behind(error):
    """The KeyboardInterrupt that `error` is, or was raised while handling; None if there is none. A
    Ctrl-C landing inside a library's cleanup can surface as that library's own error (np.savez: the
    zip entry's close interrupted, then "Can't close the ZIP file while there is an open writing
    handle"), with the interrupt as its context: the caller should still see the interrupt."""
    return next((each for each in _context_chain(error) if isinstance(each, KeyboardInterrupt)), None)


def _context_chain(error):
    """error, the exception it was raised while handling, and so on (each once)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__context__


def remove_stale_temporaries(directory, own=False):
    """Remove the temporaries of atomic_write in `directory` whose writer process is gone (with `own`,
    this process's too: a caller that knows none of its writes is under way, e.g. while aborting).

    The rule: a file named ``.tmp-<pid>-...`` (our naming) whose <pid> is not a live process. A
    live writer, this process's other threads included, is never touched; a pid reused by an
    unrelated process only delays the removal. POSIX only (elsewhere a liveness probe could kill).
    Returns the names removed.
    """
    if os.name != "posix":
        return []
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        pid = int(match.group(1)) if match else None
        if match is None or (pid == os.getpid() and not own) or (pid != os.getpid() and process_alive(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except OSError:   # removed meanwhile by another writer's cleanup, or not ours to remove
            pass
    return removed


def process_alive(pid):
    """Whether `pid` is a live process (POSIX; another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):   # another user's process, or an odd pid
        return True
    return True


def load(path):
    """Read a file written by ``save``; returns (arrays, metadata).

    Raises FileFormatError (a ValueError) naming the file when it is truncated, corrupted, foreign,
    oversized, holds a dtype outside ALLOWED_DTYPES, or its checksum does not match. Sizes are
    checked against the file before anything is read (engine/npz_reader.py).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    arrays = read_npz(path, where=f"load: {path}")
    blob = arrays.pop(_META_KEY, None)
    if blob is None:
        raise FileFormatError(f"load: {path} is not a compactnet checkpoint (no metadata entry)")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise FileFormatError(f"load: {path}: the metadata entry is not a byte string")
    meta = parse_json(blob.tobytes(), f"load: {path}: metadata")
    if not isinstance(meta, dict):
        raise FileFormatError(f"load: {path}: the metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise FileFormatError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("sha256") != digest(arrays):
        raise FileFormatError(f"load: {path} is corrupted: checksum of its arrays does not match its metadata")
    return arrays, meta
