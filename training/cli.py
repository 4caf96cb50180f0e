"""main(): one train.py run from its command line to its exit status."""
import contextlib
import functools
import os

import engine
from engine.io import interrupt_behind, remove_stale_temporaries
from engine.kernels import numba_disabled
from training import distributed
from training.checkpoint import CHECKPOINT
from training.errors import ENDINGS, EXIT_USAGE, UserError, report_ending
from training.loop import Run
from training.memory import retain_freed_memory
from training.options import parse_args
from training.run_folder import release
from training.signals import SignalGuard
from training.threads import restore_threads


def main(argv=None):
    """Run train.py; returns the process exit status. argv None means the command line (train.py or the
    compactnet-train script): main() then owns the process, which exits when it returns."""
    debug = os.environ.get("COMPACTNET_TRACEBACK") == "1"
    run = guard = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as e:       # argparse: --help (0) or a usage error (2), already printed
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        restore_threads(args, owns_process=argv is None)
        retain_freed_memory()   # large per-step temporaries reuse heap pages (training/memory.py)
        run = Run(args)
        run.guard = guard = SignalGuard()
        run.dist = distributed.start(args.distributed)
        guard.announce = run.dist.is_root
        run.dist.run_collectively(lambda: _setup(run, debug))   # under MPI: a failed set-up ends every rank
        run.out = run.dist.root_value(run.out)
        with engine.detect_anomaly() if args.detect_anomaly else contextlib.nullcontext():
            run.execute()
        return 0
    except ENDINGS as e:
        if debug and isinstance(e, UserError):
            raise
        return _end(run, e)
    except Exception as e:
        interrupt = interrupt_behind(e)     # an abort's Ctrl-C that a library's cleanup turned into its own error
        if interrupt is not None:
            return _end(run, interrupt)
        if run is None or not run.dist.active:
            raise
        run.dist.abort_on_exception()   # under MPI a rank that dies alone must end the job, not leave it hanging
    finally:
        if run is not None:
            release(run.lock)
        if guard is not None:
            guard.restore(process_ending=argv is None)
        if run is not None:
            run.dist.close()
            if run.auto_threads is not None:
                run.auto_threads.close()


def _end(run, error):
    """Report one of ENDINGS (message, exit status; under MPI agreed by every rank)."""
    out = run.out if run is not None else None
    if isinstance(error, KeyboardInterrupt) and out:   # an abort can land between a temporary's creation
        remove_stale_temporaries(out, own=True)        # and its cleanup
    report = functools.partial(report_ending, error, out, os.path.join(out or "", CHECKPOINT))
    return run.dist.end(error, report) if run is not None else report()


def _setup(run, debug):
    try:
        numba_disabled()   # a bad COMPACTNET_DISABLE_NUMBA value is a usage error, before any kernel runs
        run.setup()
    except (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError) as e:
        if debug:
            raise
        raise UserError(str(e)) from None
