"""The run folder: created new or refused when in use, cleared only by --overwrite, locked while a run writes it.

Rules (README "train.py", "Run folders"):
- A run folder that does not exist, or exists and is empty, is used as it is. A default name
  (runs/<task>-<model>-<compress>-<time>) is created with os.mkdir, which fails when the name exists:
  two runs started in the same second get -2, -3 ... and never share a folder.
- Any other existing folder is refused unless --resume continues the run in it or --overwrite is
  given: a non-empty folder may hold a run (or anything else) that the new run would mix with.
- --overwrite removes only the files train.py writes (OUR_FILES, and engine.io temporaries) and
  leaves every other file: a mistyped --out (say, a home folder) then loses nothing but run outputs.
- While a run writes its folder it holds LOCK_NAME (pid and host). A second run on the folder stops
  with exit 2 while that pid lives on this host; a lock whose pid is gone is stale and taken over.
  A lock from another host cannot be checked and is honoured until removed by hand.
"""
import fnmatch
import os
import socket
import tempfile

from engine.io import process_alive
from training.errors import UserError

LOCK_NAME = "run.lock"
# every name train.py (and the plots and the ONNX export it can run) writes into a run folder
OUR_FILES = ("checkpoint.npz", "trained.npz", "config.toml", "log.csv", "metrics.json", "summary.md",
             "quantized.npz", "model.onnx", "model_q*.onnx", "training_curves.png", "wavelet_filters.png",
             "lowrank_spectra.png", "tucker_cores.png", "basis_energy.png", ".tmp-*", LOCK_NAME)


def is_ours(name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OUR_FILES)


def create_unique(base):
    """Create and return a new folder named `base`, or `base`-2, -3, ... (the first that does not exist)."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    candidate, n = base, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{base}-{n}"


def prepare(out, overwrite=False, resuming=False):
    """Make `out` usable for a run: create it, or check and (with --overwrite) clear it, then lock it.

    resuming: `out` is the folder of the checkpoint being resumed (its files are the run's own).
    Returns the lock's path (release() it when the run ends). UserError (exit 2) when refused."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None
    lock = acquire(out)
    try:
        if overwrite and resuming:
            raise UserError(f"--overwrite with --resume {out}: clearing the folder would delete the checkpoint "
                            "being resumed; give --out a new folder, or drop --overwrite")
        present = sorted(name for name in os.listdir(out) if name != LOCK_NAME)
        if overwrite:
            clear(out)
        elif present and not resuming:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise UserError(f"--out {out}: the folder is not empty ({shown}); a run never overwrites one: "
                            "--resume it to continue that run, give a new --out, or --overwrite to delete "
                            "train.py's files in it first")
    except BaseException:
        release(lock)
        raise
    return lock


def clear(out):
    """--overwrite: remove train.py's own files from `out` (every other file stays)."""
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name != LOCK_NAME and is_ours(name) and os.path.isfile(path):
            os.unlink(path)


def _lock_holder(path):
    """(pid, host) written in the lock at `path`, or None when it is unreadable or malformed."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            pid, host = fh.read(200).split(None, 1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def acquire(out):
    """Take `out`'s lock (a file holding "<pid> <host>", created whole by a hard link); returns its path.

    A lock of a live process on this host, or of any process on another host, is a UserError."""
    path = os.path.join(out, LOCK_NAME)
    host = socket.gethostname()
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=".lock", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {host}\n")
        for _ in range(3):
            try:
                os.link(tmp, path)   # fails when a lock exists; never leaves a half-written one
                return path
            except FileExistsError:
                holder = _lock_holder(path)
                if holder is not None and (holder[1] != host or process_alive(holder[0])):
                    where = "this machine" if holder[1] == host else f"host {holder[1]}"
                    raise UserError(f"--out {out}: another run (pid {holder[0]} on {where}) is using this "
                                    f"folder; wait for it to end (or delete {path} if no run uses it)") from None
                _remove(path)        # stale: its process is gone (or the lock is unreadable)
        raise UserError(f"--out {out}: cannot take the run lock {path}; other runs keep starting on this folder")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in the run folder ({e.strerror or e})") from None
    finally:
        _remove(tmp)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def release(lock):
    """Remove the lock at `lock` when this process holds it (None: nothing to release)."""
    if lock is not None:
        holder = _lock_holder(lock)
        if holder is not None and holder == (os.getpid(), socket.gethostname()):
            _remove(lock)
