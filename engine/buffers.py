"""A small caching pool of large temporary arrays, keyed by (shape, dtype, device), reused across calls.

Why: a training step allocates the same large temporaries (im2col patch matrices, product and
gradient scratch) every time. glibc gives each block above its mmap threshold a fresh mapping and
returns it to the OS when freed, so every step pays page faults and zero-filling for all of them
unless the whole process retunes malloc (training/memory.py). The pool keeps those arrays itself.

The contract that keeps it correct: only the owner of a temporary whose lifetime ends inside an
operation (or inside one Function's forward-to-backward span) gives it back, and it gives it back
once, when nothing else can still see it. The pool never tracks arrays it has handed out, so an
array that is not given back is an ordinary array. Results that leave an operation (outputs,
gradients) are never handed out as pool arrays themselves: lend() wraps one in an owner object that
every view of the result keeps alive, and a finalizer gives the pool array back when the last of
them is gone. Arrays on the GPU pass straight through (CuPy pools device memory itself).

Switch: COMPACTNET_DISABLE_BUFFER_POOL=1 (read on every call, like COMPACTNET_DISABLE_NUMBA) makes
take() allocate afresh and give_back() a no-op.
"""
import collections
import math
import threading
import weakref

import numpy as np

from . import backend
from .kernels import env_flag

DISABLE_VARIABLE = "COMPACTNET_DISABLE_BUFFER_POOL"

# Bound on the bytes the pool holds between uses: LeNet-5 at batch 128 keeps about 40 MiB of
# temporaries; larger models get the least recently returned shapes evicted.
DEFAULT_MAX_BYTES = 256 << 20

# Results smaller than this come straight from the allocator: a loan costs a few microseconds, and
# glibc serves small blocks from its heap without fresh pages anyway.
LEND_MIN_BYTES = 1 << 20

# Arrays smaller than this are neither kept nor looked up: the pool's bookkeeping (a lock, a keyed
# lookup) costs a few microseconds a call, which a batch-1 convolution paid four times for patches
# and products of 13-128 KB, and glibc serves such blocks from its heap without fresh pages.
POOL_MIN_BYTES = 1 << 18

POOLED_DEVICES = ("cpu",)

# Bytes a CPU array from aligned_empty (and so from the pool) starts on: a cache line, and an AVX-512
# vector. glibc starts a large block 16 bytes into a line, so every other 32-byte vector a kernel loads
# crossed into the next line: a wavelet map at hidden 256, 128 lanes read 37 against 31 us a call.
ALIGNMENT = 64


def aligned_empty(shape, dtype, zeroed=False):
    """An uninitialised (or, with zeroed, zero) C-contiguous NumPy array of `shape` and `dtype` whose first
    byte starts an ALIGNMENT-byte line: a view into a byte buffer ALIGNMENT bytes longer (an empty one is
    a plain array: it has no bytes to place)."""
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if not size:
        return np.zeros(shape, dtype=dtype)
    raw = (np.zeros if zeroed else np.empty)(size + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def _whole(array):
    """Whether `array` is all of its memory: an array that owns it, or all of an aligned_empty buffer."""
    base = array.base
    if base is None:
        return True
    return (isinstance(base, np.ndarray) and base.base is None and base.dtype == np.uint8 and base.ndim == 1
            and array.nbytes + ALIGNMENT == base.nbytes and array.flags.c_contiguous
            and 0 <= array.ctypes.data - base.ctypes.data < ALIGNMENT)


def pool_disabled():
    """True when COMPACTNET_DISABLE_BUFFER_POOL is 1/true/yes/on: no array is kept or reused."""
    return env_flag(DISABLE_VARIABLE)


class BufferPool:
    """Free arrays by (shape, dtype, device), at most `max_bytes` in all; safe to share between
    threads (one lock around the bookkeeping, never around allocation or array work). The lock is
    re-entrant because a give_back may run from a finalizer that the garbage collector starts
    while this thread is inside the pool."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._free = collections.OrderedDict()   # key -> list of arrays; least recent first
        self._bytes = 0
        self._lock = threading.RLock()

    @property
    def held_bytes(self):
        """Bytes of the free arrays the pool holds now."""
        return self._bytes

    def take(self, shape, dtype, like):
        """An uninitialised C-contiguous array of `shape` and `dtype` on the device of `like`:
        one given back earlier when there is one, else a new one. The caller owns it."""
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        device = backend.device_of(like)
        if (device in POOLED_DEVICES and math.prod(shape) * dtype.itemsize >= POOL_MIN_BYTES
                and not pool_disabled()):
            key = (shape, dtype.str, device)
            with self._lock:
                free = self._free.get(key)
                if free:
                    array = free.pop()
                    if not free:     # no empty lists: eviction takes the oldest key's first array
                        del self._free[key]
                    self._bytes -= array.nbytes
                    return array
            # a new array the pool will keep starts a cache line (small ones skip the few microseconds
            # that costs: a batch-1 LeNet-300-100 forward is about 50 us)
            return aligned_empty(shape, dtype)
        return backend.xp_of(like).empty(shape, dtype=dtype)

    def give_back(self, array):
        """Keep `array` for a later take(). The caller promises that nothing still refers to it
        (no view, no result); arrays that cannot be reused whole (views, GPU arrays, arrays
        larger than the bound) are left alone."""
        if array is None or not isinstance(array, np.ndarray) or array.nbytes < POOL_MIN_BYTES \
                or pool_disabled():
            return
        if not _whole(array) or not array.flags.c_contiguous or array.nbytes > self.max_bytes:
            return
        key, fresh = (array.shape, array.dtype.str, "cpu"), []
        with self._lock:
            free = self._free.setdefault(key, fresh)
            for kept in free:
                if kept is array:
                    return   # given back twice: keeping it twice would hand it out twice
            free.append(array)
            self._free.move_to_end(key)
            self._bytes += array.nbytes
            self._evict_to(self.max_bytes)

    def clear(self):
        """Drop every free array (their memory goes back to the allocator)."""
        with self._lock:
            self._evict_to(0)

    def _evict_to(self, limit):
        while self._bytes > limit and self._free:
            key, free = next(iter(self._free.items()))
            if free:
                self._bytes -= free.pop(0).nbytes
            if not free:
                del self._free[key]


_default_pool = BufferPool()


def default_pool():
    """The process-wide pool the engine's kernels and ops use."""
    return _default_pool


def take(shape, dtype, like):
    """default_pool().take(shape, dtype, like)."""
    return _default_pool.take(shape, dtype, like)


def give_back(array):
    """default_pool().give_back(array)."""
    _default_pool.give_back(array)


def clear():
    """Empty the default pool (e.g. after training, to hand its memory back)."""
    _default_pool.clear()


class _Loan:
    """The owner NumPy sees of a result lent from the pool: the result and its views keep it alive."""
    __slots__ = ("__array_interface__", "__weakref__")


def lend(shape, dtype, like, pool=None):
    """An uninitialised C-contiguous array for a result that leaves its operation (an output, a
    gradient). Large CPU results come from the pool (`pool`, default the process-wide one) and go
    back to it by themselves once the result and every view of it are gone, so a training step
    does not fault in fresh pages for them each time; small, GPU or pool-disabled ones are plain
    new arrays. The result is an ordinary ndarray whose base is a private owner object."""
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    pool = _default_pool if pool is None else pool
    if (math.prod(shape) * dtype.itemsize < LEND_MIN_BYTES or backend.device_of(like) not in POOLED_DEVICES
            or pool_disabled()):
        return backend.xp_of(like).empty(shape, dtype=dtype)
    array = pool.take(shape, dtype, like)
    loan = _Loan()
    loan.__array_interface__ = array.__array_interface__
    weakref.finalize(loan, pool.give_back, array).atexit = False
    return np.asarray(loan)
