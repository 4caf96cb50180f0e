"""Data-set downloads: the user cache folder, mirror lists and checksum verification."""
import gzip
import hashlib
import os
import pathlib

from engine.io import atomic_write


def cache_dir(dataset):
    """Where downloads of `dataset` live: $COMPACTNET_DATA/<dataset>, else ~/.cache/compactnet/<dataset>."""
    root = os.environ.get("COMPACTNET_DATA")
    base = pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "compactnet"
    return base / dataset


def fetch_url(url, timeout=30):
    """The bytes at `url` (urllib, imported only when a download is needed)."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def decompressed(data):
    """`data` with one gzip layer removed when it has one."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def download_verified(filename, mirrors, md5_of_content, target_dir, fetch=None):
    """Download `filename` from the first mirror that serves bytes whose decompressed MD5 matches.

    Returns the saved path. Raises OSError listing every mirror's failure when none succeeds.
    `fetch` (url -> bytes) defaults to `fetch_url`; tests pass their own.
    """
    fetch = fetch or fetch_url
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            data = fetch(url)
        except Exception as exc:   # network errors of any kind: try the next mirror
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        try:
            digest = md5_hex(decompressed(data))
        except (OSError, EOFError) as exc:
            failures.append(f"{url}: not valid gzip data ({exc})")
            continue
        if digest != md5_of_content:
            failures.append(f"{url}: checksum mismatch (MD5 of content {digest}, "
                            f"expected {md5_of_content})")
            continue
        path = pathlib.Path(target_dir) / filename
        atomic_write(path, lambda fh: fh.write(data), suffix=".part")
        return path
    raise OSError(f"could not download {filename}:\n  " + "\n  ".join(failures))
