"""SignalGuard: SIGINT/SIGTERM end a run cleanly after the current step, with a resumable checkpoint."""
import signal
import sys

from training.errors import EXIT_SIGNAL, Interrupted


class SignalGuard:
    """First SIGINT/SIGTERM: remember it (training finishes the step, saves, exits); second: abort.

    Once the run is on its way out (checkpoint saved or abort begun), further signals are ignored
    until main() returns, so a late Ctrl-C cannot turn a clean exit into a traceback."""

    def __init__(self):
        self.received = None
        self.exiting = False
        self.announce = True        # under MPI only rank 0 says that a signal arrived
        self.previous = {}

    def __enter__(self):
        for signum in EXIT_SIGNAL:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:   # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.exiting:
            return
        if self.received is not None:
            self.exiting = True
            raise KeyboardInterrupt
        self.received = signum
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving a "
                  "checkpoint (send it again to abort without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.received is None:
            self.restore()
        else:
            self.exiting = True      # main() restores the handlers once the exit is reported
        return False

    def interrupted(self):
        """The Interrupted exception to raise once the interrupt checkpoint is saved (repeats now ignored)."""
        self.exiting = True
        return Interrupted(self.received)

    def restore(self, process_ending=False):
        """Put back the handlers found on entry. When the process is about to exit after a signal,
        ignore repeats instead: Python resets its own handlers to the default during shutdown, so a
        late Ctrl-C would otherwise kill the process (status -2) instead of letting it exit 130."""
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if process_ending and self.exiting else handler)
        self.previous = {}
