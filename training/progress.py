"""Progress reporting for loops: tqdm when installed, a small built-in bar otherwise, or periodic lines."""
import sys
import time


def _format_seconds(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Bar:
    """One-line bar redrawn in place: count/total, rate, elapsed and ETA, and a postfix."""

    def __init__(self, total, desc, stream, min_interval=0.2):
        self.total, self.desc, self.stream = total, desc, stream
        self.count, self.start, self.last_draw = 0, time.perf_counter(), 0.0
        self.min_interval = min_interval
        self.postfix = ""

    def update(self, n=1, postfix=None):
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if now - self.last_draw >= self.min_interval or self.count >= self.total:
            self.last_draw = now
            self._draw(now)

    def _draw(self, now):
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.count / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.desc} [{bar}] {self.count}/{self.total} {rate:.1f} it/s "
                          f"{_format_seconds(elapsed)}<{_format_seconds(eta)} {self.postfix}\033[K")
        self.stream.flush()

    def close(self):
        self._draw(time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()


class _Tqdm:
    def __init__(self, tqdm, total, desc, stream):
        self.bar = tqdm(total=total, desc=desc, file=stream, leave=False, dynamic_ncols=True)

    def update(self, n=1, postfix=None):
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()


class _Lines:
    """No bar (no TTY or disabled): a plain line every `every` steps with rate and ETA."""

    def __init__(self, total, desc, stream, every):
        self.total, self.desc, self.stream, self.every = total, desc, stream, every
        self.count, self.start = 0, time.perf_counter()

    def update(self, n=1, postfix=None):
        self.count += n
        if self.every and (self.count % self.every == 0 or self.count == self.total):
            elapsed = time.perf_counter() - self.start
            rate = self.count / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            self.stream.write(f"{self.desc} {self.count}/{self.total} {rate:.1f} it/s "
                              f"elapsed {_format_seconds(elapsed)} eta {_format_seconds(eta)}"
                              f"{' ' + postfix if postfix else ''}\n")
            self.stream.flush()

    def close(self):
        pass


def progress(total, desc="", enabled=True, every=50, stream=None, use_tqdm=True):
    """An object with ``update(n=1, postfix=None)`` and ``close()`` for a loop of `total` steps.

    With `enabled` and a terminal on `stream`: tqdm if it imports (and `use_tqdm`),
    else a built-in bar; otherwise a plain line every `every` steps (none when every=0).
    """
    stream = sys.stdout if stream is None else stream
    interactive = enabled and hasattr(stream, "isatty") and stream.isatty()
    if not interactive:
        return _Lines(total, desc, stream, every)
    try:
        if not use_tqdm:
            raise ImportError("tqdm not wanted")
        from tqdm import tqdm
    except ImportError:
        return _Bar(total, desc, stream)
    return _Tqdm(tqdm, total, desc, stream)
