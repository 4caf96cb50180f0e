"""The ways a run ends early, their exit statuses, and the one-paragraph message for each."""
import signal
import sys

EXIT_USAGE, EXIT_NONFINITE = 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class UserError(Exception):
    """A mistake in the command line, config or data: reported in one paragraph, exit status 2."""


class NonFiniteLoss(Exception):
    """The loss became NaN or Inf: training stops, the last good checkpoint stays."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class Diverged(Exception):
    """The training loss stayed far above its starting value (--diverge-factor, --diverge-patience)."""


# MemoryError and OSError: what the machine refuses (memory, a full disk, a file-size limit, permissions)
ENDINGS = (UserError, NonFiniteLoss, Diverged, FloatingPointError, KeyboardInterrupt, Interrupted, MemoryError,
           OSError)


def resource_message(error):
    """The one line for a MemoryError or an OSError that reached the command line."""
    if isinstance(error, MemoryError):
        return ("train.py: error: out of memory: the settings (model sizes such as --hidden or --model-arg, "
                "--batch-size, --eval-batch-size) need more memory than this machine can give")
    name = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error) or type(error).__name__
    return (f"train.py: error: cannot read or write{name}: {reason}; files written before it "
            "(the last checkpoint) are intact")


def user_message(error):
    """The error's lines (a missing data set's where / what / how), each with its spacing collapsed."""
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    return "train.py: error: " + "\n".join(lines)


def report_ending(error, out, checkpoint):
    """Print the message for one of ENDINGS to stderr; returns the process exit status.

    out: the run folder (None before it exists); checkpoint: the resumable checkpoint's path."""
    if isinstance(error, UserError):
        message, status = user_message(error), EXIT_USAGE
    elif isinstance(error, NonFiniteLoss):
        message = (f"train.py: stopped: {error}. The last good checkpoint (if any) is kept in "
                   f"{out or 'the run folder'}; try a smaller --lr, --clip-grad, or --detect-anomaly to find the op.")
        status = EXIT_NONFINITE
    elif isinstance(error, Diverged):
        message = (f"train.py: stopped: {error}. The last checkpoint is kept in {out or 'the run folder'}; "
                   "try a smaller --lr or --clip-grad (or raise --diverge-factor / --diverge-patience)")
        status = EXIT_NONFINITE
    elif isinstance(error, (MemoryError, OSError)):
        message, status = resource_message(error), EXIT_USAGE
    elif isinstance(error, FloatingPointError):
        message, status = f"train.py: stopped by --detect-anomaly: {error}", EXIT_NONFINITE
    elif isinstance(error, KeyboardInterrupt):
        message = ("train.py: aborted (interrupted before training started, or a second time: nothing saved "
                   "beyond the last checkpoint)")
        status = EXIT_SIGNAL[signal.SIGINT]
    else:
        message = f"train.py: interrupted; resumable checkpoint saved: python train.py --resume {checkpoint}"
        status = EXIT_SIGNAL.get(error.signum, 130)
    print(message, file=sys.stderr)
    return status
