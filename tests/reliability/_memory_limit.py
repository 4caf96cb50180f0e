"""Run a call in a forked child under an address-space limit, so an allocation bomb fails a test, not the machine."""
import os
import pickle
import tracemalloc

import pytest

# issue 18: a rejected file may cost at most its own size plus 100 MB
BUDGET = 100_000_000


def _vm_size():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _child(fn, budget, write_end):
    import resource
    try:
        limit = _vm_size() + budget
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            fn()
            outcome = ("ok", "")
        except (ValueError, TypeError) as e:
            outcome = ("clear", f"{type(e).__name__}: {e}")
        except BaseException as e:   # MemoryError above all: what this runner exists to catch
            outcome = ("other", f"{type(e).__module__}.{type(e).__name__}: {e}")
        os.write(write_end, pickle.dumps(outcome))
    finally:
        os._exit(0)


def run_limited(fn, budget=BUDGET):
    """(outcome, message) of fn() run in a forked child that may grow by `budget` bytes:
    'ok', 'clear' (ValueError/TypeError), 'other' (any other exception, MemoryError included)."""
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/status"):
        pytest.skip("the memory-limited runner needs fork and /proc (Linux)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(fn, budget, write_end)
    os.close(write_end)
    chunks = []
    while True:
        data = os.read(read_end, 1 << 16)
        if not data:
            break
        chunks.append(data)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return "other", f"the child died (wait status {status})"
    return pickle.loads(b"".join(chunks))


def peak_bytes(fn):
    """(exception raised or None, peak bytes Python and NumPy allocated while running fn)."""
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as e:   # returned for the caller to check
        error = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak
