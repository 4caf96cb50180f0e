"""Data-parallel training over MPI (mpi4py): ranks, batch slices, the gradient allreduce, split evaluation,
synchronised BatchNorm and fault handling. One process (--distributed none) is the size-1 case.

The design follows ChainerMN's: every rank holds the whole model, takes its slice of each global batch,
and after backward the gradients of all ranks are summed with one in-place Allreduce per dtype over a
flat buffer that is laid out once and reused, so clipping, proximal steps and every optimizer see the
same averaged gradient on every rank and the ranks stay bit-identical without ever sending weights.
GPU models stage their gradients through that host buffer; with COMPACTNET_MPI_CUDA_AWARE=1 (an MPI built
with CUDA support) the buffer lives on the device and MPI reads it there.
"""
import contextlib
import hashlib
import io
import os
import sys
import time
import traceback

import numpy as np

import engine.ops as F
from engine import backend
from engine.function import Function
from layers.norm import _BatchNorm
from tasks.base import sum_metrics
from training import mpi_env
from training.errors import Interrupted, NonFiniteLoss, UserError

MPI_EXTRA = "pip install 'compactnet[mpi]' (mpi4py >= 4 and the mpich runtime)"
CUDA_AWARE_VARIABLE = "COMPACTNET_MPI_CUDA_AWARE"
SCALARS = 3         # slots after the gradients of the first buffer: loss, extra loss, stop request


def start(mode):
    """The process group for --distributed `mode`: 'none' one process; 'mpi' this MPI job (a one-line
    error without mpi4py); 'auto' MPI when an MPI launcher started this process and mpi4py imports."""
    if mode == "none" or (mode == "auto" and not mpi_env.launched_by_mpi()):
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError as e:
        if mode == "mpi":
            raise UserError(f"--distributed mpi needs the extra 'mpi' ({e}): {MPI_EXTRA}") from None
        print(f"train.py: warning: started by an MPI launcher but mpi4py is missing, so this process trains "
              f"alone; for data-parallel training: {MPI_EXTRA}", file=sys.stderr, flush=True)
        return SingleProcess()
    return MPIGroup(MPI, MPI.COMM_WORLD)


def collective(error):
    """Mark `error` as raised by every rank at the same point of the run (no abort needed)."""
    error.collective = True
    return error


def is_collective(error):
    # the loop raises these only after the ranks agreed (reduced loss, agreed stop request)
    return isinstance(error, (NonFiniteLoss, Interrupted)) or getattr(error, "collective", False)


def parameter_digest(model):
    """SHA-256 of every parameter's bytes in order: equal digests mean bit-identical replicas."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(backend.to_numpy(p.data)).tobytes())
    return digest.hexdigest()


ABORT_GRACE_SECONDS = 0.5


class SingleProcess:
    """One process: every hook of the loop is the identity."""

    size, rank, is_root, active = 1, 0, True, False

    def check_global_batch(self, batch_size):
        pass

    def local_batch(self, inputs, targets):
        return inputs, targets

    def average_gradients(self, optimizer, loss, extra, stop):
        return loss, extra

    def stop_agreed(self, local):
        return local

    def shard_task(self, task):
        return task

    def prepare_model(self, model):
        return model

    def run_collectively(self, setup):
        return setup()

    def root_value(self, value):
        return value

    def end(self, error, report):
        """Exit status for one of training.errors.ENDINGS; `report()` prints its message."""
        return report()

    def close(self):
        pass


class MPIGroup(SingleProcess):
    """The ranks of one MPI communicator training one model together."""

    active = True

    def __init__(self, MPI, comm):
        self.MPI, self.comm = MPI, comm
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        self.is_root = self.rank == 0
        self.device_buffers = os.environ.get(CUDA_AWARE_VARIABLE) == "1"
        self._weight = 1.0 / self.size
        self._flat = None
        self._step_stop = None
        self._stdout = None
        if not self.is_root:        # rank 0 alone speaks; errors still reach stderr from any rank
            self._stdout, sys.stdout = sys.stdout, open(os.devnull, "w")

    # ---- batches and gradients -----------------------------------------
    def check_global_batch(self, batch_size):
        if batch_size % self.size:
            raise UserError(f"--batch-size {batch_size} is the global batch and must divide evenly over the "
                            f"{self.size} processes (each takes batch / {self.size})")

    def local_batch(self, inputs, targets):
        """This rank's rows of a global batch; its share of the examples weights its gradient."""
        n = len(targets)
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        if hi == lo:
            raise collective(UserError(f"a training batch of {n} examples cannot be split over {self.size} "
                                       "processes (each needs one); choose a --subset or --batch-size whose "
                                       "last batch has at least that many"))
        self._weight = (hi - lo) / n
        return inputs[lo:hi], targets[lo:hi]

    def average_gradients(self, optimizer, loss, extra, stop):
        """Sum weight x gradient over the ranks in place (one Allreduce per dtype); returns the global
        (loss, extra loss) and records whether any rank asked to stop (see stop_agreed)."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self._flat is None or not self._flat.fits(params):
            self._flat = FlatGradients(params, self.device_buffers)
        scalars = self._flat.pack(self._weight, (loss * self._weight, extra * self._weight, float(stop)))
        for flat in self._flat.buffers:
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        self._flat.unpack()
        self._step_stop = bool(scalars[2] > 0)
        return float(scalars[0]), float(scalars[1])

    def stop_agreed(self, local):
        """Whether any rank received SIGINT/SIGTERM: the flag sent with the last step's gradients, or
        (between epochs) a small allreduce of `local`. Every rank gets the same answer."""
        if self._step_stop is not None:
            agreed, self._step_stop = self._step_stop, None
            return agreed
        return self.comm.allreduce(int(bool(local)), op=self.MPI.SUM) > 0

    def sum_array(self, array):
        """The element-wise sum of `array` over the ranks (a new array on its device)."""
        if self.device_buffers and backend.is_gpu_array(array):
            total = array.copy()
            backend.xp_of(total).cuda.get_current_stream().synchronize()
        else:
            total = np.array(backend.to_numpy(array), copy=True, order="C")
        self.comm.Allreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)
        return backend.to_device(total, backend.device_of(array))

    # ---- evaluation, models, set-up --------------------------------------
    def shard_task(self, task):
        return ShardedTask(task, self)

    def prepare_model(self, model):
        """BatchNorm layers take their batch statistics over every rank's batch (synchronised)."""
        for module in model.modules():
            if isinstance(module, _BatchNorm) and getattr(type(module), "group", None) is not self:
                module.__class__ = synced_batch_norm(type(module), self)
        return model

    def run_collectively(self, setup):
        """setup() on every rank, returning its value; when it fails with a UserError on any rank, every
        rank raises the first failing rank's message (rank 0 prints it), so no rank waits for one that gave up."""
        error = result = None
        try:
            result = setup()
        except UserError as e:
            error = " ".join(str(e).split())
        messages = self.comm.allgather(error)
        failed = [(rank, text) for rank, text in enumerate(messages) if text is not None]
        if failed:
            rank, text = failed[0]
            where = "" if len(failed) == self.size else f" (on rank {rank} of {self.size})"
            raise collective(UserError(text + where))
        return result

    def root_value(self, value):
        return self.comm.bcast(value, root=0)

    # ---- endings ---------------------------------------------------------
    def end(self, error, report):
        """A collective ending (every rank at the same point): all ranks wait for rank 0 to finish its
        writing, rank 0 reports. Anything else happened on this rank alone: report it here and abort the
        whole job, since the other ranks would wait for this one forever."""
        if is_collective(error):
            self.comm.Barrier()
            if self.is_root:
                return report()
            with contextlib.redirect_stderr(io.StringIO()):
                return report()
        status = report()
        self._abort(status)
        return status

    def abort_on_exception(self):
        """Inside an except block: print the traceback, then end the whole job."""
        self._abort(1, traceback.format_exc())

    def _abort(self, status, details=""):
        # one write, then a moment for the launcher to forward it: MPI_Abort kills every process at
        # once, and output still in the launcher's pipes may be lost with them
        sys.stderr.write(f"{details}train.py: rank {self.rank} of {self.size} failed; ending the whole MPI "
                         f"job (MPI_Abort)\n")
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(status or 1)

    def close(self):
        if self._stdout is not None:
            sys.stdout.close()
            sys.stdout, self._stdout = self._stdout, None
        self._flat = None


class FlatGradients:
    """One flat buffer per gradient dtype, laid out once for a parameter list and reused every step; the
    first buffer ends with SCALARS extra slots. Gradients are views into it after unpack."""

    def __init__(self, params, on_device=False):
        self.params = list(params)
        self.ids = [id(p) for p in self.params]
        by_dtype = {}
        for p in self.params:
            by_dtype.setdefault(np.dtype(p.data.dtype), []).append(p)
        gpu = on_device and any(backend.is_gpu_array(p.data) for p in self.params)
        xp = backend.xp_for("gpu") if gpu else np
        self.layout, self.buffers = [], []
        for i, dtype in enumerate(sorted(by_dtype, key=lambda d: d.str)):
            members = by_dtype[dtype]
            ends = np.cumsum([0] + [int(p.data.size) for p in members])
            self.buffers.append(xp.zeros(int(ends[-1]) + (SCALARS if i == 0 else 0), dtype))
            self.layout.append((self.buffers[-1], members, ends))
        self.had_grad = {}

    def fits(self, params):
        return [id(p) for p in params] == self.ids

    def pack(self, weight, scalars):
        """weight x each gradient (zeros where a parameter has none) and the scalars, into the buffers;
        returns the scalar slots (read them after the Allreduce)."""
        for flat, members, ends in self.layout:
            scale = flat.dtype.type(weight)
            for p, lo, hi in zip(members, ends[:-1], ends[1:]):
                self.had_grad[id(p)] = p.grad is not None
                if p.grad is None:
                    flat[lo:hi] = 0
                elif backend.xp_of(flat) is backend.xp_of(p.grad):
                    backend.xp_of(flat).multiply(p.grad.reshape(-1), scale, out=flat[lo:hi])
                else:                # staged through host memory
                    np.multiply(backend.to_numpy(p.grad).reshape(-1), scale, out=flat[lo:hi])
        first = self.buffers[0]
        first[-SCALARS:] = backend.xp_of(first).asarray(scalars, dtype=first.dtype)
        if backend.is_gpu_array(first):
            backend.xp_of(first).cuda.get_current_stream().synchronize()
        return first[-SCALARS:]

    def unpack(self):
        """Each parameter's gradient becomes its slice of the summed buffer (parameters that had no
        gradient on this rank keep none: such parameters are unused by the model on every rank)."""
        for flat, members, ends in self.layout:
            for p, lo, hi in zip(members, ends[:-1], ends[1:]):
                if self.had_grad[id(p)]:
                    view = flat[lo:hi].reshape(p.data.shape)
                    p.grad = view if backend.xp_of(view) is backend.xp_of(p.data) else \
                        backend.to_device(view, p.device)


class ShardedTask:
    """A task whose evaluation is split over the ranks: each scores every size-th batch; the per-batch
    metrics are gathered and summed in batch order, so every rank gets exactly the single-process numbers.
    Everything else is the wrapped task's own."""

    def __init__(self, task, group):
        self._task, self._group = task, group

    def __getattr__(self, name):
        return getattr(self._task, name)

    def evaluate(self, model, batch_size=256, split="test"):
        group = self._group
        mine = self._task.batch_metrics(model, batch_size, split, keep=lambda i: i % group.size == group.rank)
        scored = sorted((pair for part in group.comm.allgather(mine) for pair in part), key=lambda pair: pair[0])
        totals = sum_metrics(metrics for _, metrics in scored)
        if not totals:
            raise ValueError(f"{self._task.name} task: split {split!r} yielded no batches")
        return self._task.summarize(totals)

    def __repr__(self):
        return f"{self._task!r} (evaluation split over {self._group.size} processes)"


class AllreduceSum(Function):
    """y = the sum of x over the ranks. Every rank's loss depends on y, so the gradient reaching each
    rank's x is the sum of the ranks' gradients of y: the backward is the same allreduce."""

    def __init__(self, group):
        self.group = group

    def forward(self, x):
        return self.group.sum_array(x)

    def backward(self, gy):
        return self.group.sum_array(gy)


def _synced_statistics(self, x, axes):
    """BatchNorm statistics over the union of the ranks' batches (the running statistics are then
    those of a single process with the global batch: global mean, unbiased global variance)."""
    group = type(self).group
    count = group.comm.allreduce(x.size // self.num_features, op=group.MPI.SUM)
    mean = AllreduceSum(group)(F.sum(x, axis=axes, keepdims=True)) / count
    centred = x - mean
    var = AllreduceSum(group)(F.sum(centred * centred, axis=axes, keepdims=True)) / count
    return mean, centred, var, count


_SYNCED = {}


def synced_batch_norm(cls, group):
    """A subclass of BatchNorm class `cls` (same name) whose batch statistics span `group`'s ranks."""
    key = (cls, id(group))
    if key not in _SYNCED:
        _SYNCED[key] = type(cls.__name__, (cls,), {"group": group, "batch_statistics": _synced_statistics,
                                                   "__module__": cls.__module__,
                                                   "__doc__": f"{cls.__doc__} Statistics over all ranks."})
    return _SYNCED[key]

