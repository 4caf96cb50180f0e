"""Keep freed heap memory for reuse: large temporaries then cost no fresh page faults each step."""
import ctypes
import ctypes.util
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks above this size still get their own mapping (returned to the OS when freed); older
# glibc versions refuse thresholds above 32 MiB, so that is the fallback.
RETAIN_UP_TO_BYTES = (1 << 30, 32 << 20)

_state = {"retaining": False}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (musl and others lack it)
        libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(enabled=True):
    """Ask glibc's allocator to keep freed blocks (up to 1 GiB each) for reuse. True if it applied.

    By default glibc gives every block above a threshold (128 KiB, rising to at most 32 MiB)
    its own mapping and hands freed memory back to the OS, so a training step that allocates
    the same large patch and gradient arrays again pays page faults and zero-filling for all of
    them: at LeNet-5's shapes im2col took 4.5 ms instead of 1.2 ms and the whole step
    49-74 ms instead of 41-46 ms (one thread). The price: the process keeps its peak heap size.
    `enabled=False` restores glibc's default values. Not glibc (macOS, Windows, musl): a no-op, False.
    Called by train.py and bench/speed.py; the engine never calls it on import.
    """
    libc = _glibc()
    if libc is None:
        return False
    if enabled:
        ok = False
        for limit in RETAIN_UP_TO_BYTES:
            if libc.mallopt(_M_MMAP_THRESHOLD, limit):
                ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * limit))
                break
    else:   # glibc's documented default values (its dynamic threshold stays off once set)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024))
    _state["retaining"] = bool(ok) and enabled
    return bool(ok)


def retaining_freed_memory():
    """Whether retain_freed_memory(True) is in effect in this process."""
    return _state["retaining"]
