"""Reading untrusted files: FileFormatError (a ValueError naming the file) and size-bounded JSON."""
import json

# json.loads holds up to ~25x its input as Python objects (e.g. "[{},{},...]"): 4 MB of JSON stays
# within the 100 MB that a rejected file may cost
MAX_JSON_BYTES = 4_000_000


class FileFormatError(ValueError):
    """A file is truncated, corrupted, foreign or oversized; the message names it (one line)."""


def parse_json(data, where, limit=MAX_JSON_BYTES):
    """The JSON value in UTF-8 bytes `data`; FileFormatError naming `where` when too long or malformed."""
    if len(data) > limit:
        raise FileFormatError(f"{where}: {len(data)} bytes of JSON, more than the limit of {limit}")
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except RecursionError:
        raise FileFormatError(f"{where}: the JSON is nested too deeply") from None
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError, too many digits
        raise FileFormatError(f"{where}: not UTF-8 JSON ({e})") from None
