"""Where data sets are found (the search order), the user cache downloads go to, mirrors and checksums.

Search order for a data set NAME (mnist, ptb): the folder given as data_dir (train.py --data-dir) and
only that one when it is given; otherwise $COMPACTNET_DATA/NAME, then the per-user cache
($XDG_CACHE_HOME or ~/.cache)/compactnet/NAME, where downloads also go.
"""
import gzip
import hashlib
import os
import pathlib

from engine.io import atomic_write


def cache_dir(dataset):
    """The per-user cache folder of `dataset`, where downloads go: ($XDG_CACHE_HOME or ~/.cache)/compactnet/NAME."""
    root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(root) / "compactnet" / dataset


def search_folders(dataset, data_dir=None):
    """[(label, folder)] in search order: data_dir alone when given, else $COMPACTNET_DATA/NAME (when
    set) and the per-user cache."""
    if data_dir is not None:
        return [("--data-dir", pathlib.Path(data_dir))]
    folders = []
    if os.environ.get("COMPACTNET_DATA"):
        folders.append(("$COMPACTNET_DATA", pathlib.Path(os.environ["COMPACTNET_DATA"]) / dataset))
    folders.append(("the user cache", cache_dir(dataset)))
    return folders


def first_complete(folders, has_file, stems):
    """The first folder of `folders` ([(label, folder)]) in which has_file(folder, stem) holds for every
    stem, or None."""
    for _, folder in folders:
        if all(has_file(folder, stem) for stem in stems):
            return folder
    return None


def missing_data_message(dataset, folders, missing, fix, failure=None):
    """Three lines: where it looked, what is missing (and why a download failed), how to fix it."""
    looked = "; ".join(f"{label} {folder}" for label, folder in folders)
    why = f" (download failed: {failure})" if failure else ""
    return (f"{dataset}: data not found; looked in {looked}\n"
            f"missing: {', '.join(missing)}{why}\n"
            f"fix: {fix}")


def short_failure(error):
    """The first mirror's failure of a download_verified OSError, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)


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
