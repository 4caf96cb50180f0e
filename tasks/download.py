"""Where data sets are found (the search order), the user cache downloads go to, mirrors and checksums.

Search order for a data set NAME (mnist, ptb): the folder given as data_dir (train.py --data-dir) and
only that one when it is given; otherwise $COMPACTNET_DATA/NAME, then the per-user cache
($XDG_CACHE_HOME or ~/.cache)/compactnet/NAME, where downloads also go.
"""
import gzip
import hashlib
import io
import os
import pathlib
import zlib

from engine.io import atomic_write
from engine.untrusted import FileFormatError

# no file of ours inflates past this (MNIST's largest is 47 MB): a gzip bomb stops here
MAX_INFLATED_BYTES = 100_000_000
CHUNK = 1 << 20


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


def gunzip_chunks(stream, where, limit=None):
    """The decompressed bytes of the gzip `stream`, yielded in chunks of at most CHUNK bytes.

    Inflation is streamed and stops as soon as `limit` bytes are exceeded; that and a corrupted
    stream are FileFormatError (a ValueError) naming `where`. `limit` defaults to MAX_INFLATED_BYTES.
    """
    limit = MAX_INFLATED_BYTES if limit is None else limit
    total = 0
    try:
        with gzip.GzipFile(fileobj=stream) as unzipped:
            while True:
                data = unzipped.read(min(CHUNK, limit + 1 - total))
                if not data:
                    return
                total += len(data)
                if total > limit:
                    raise FileFormatError(f"{where}: decompresses to more than {limit} bytes "
                                          "(a decompression bomb, or not a data file of ours)")
                yield data
    except (OSError, EOFError, zlib.error) as exc:
        raise FileFormatError(f"{where}: corrupt gzip data ({exc})") from None


def decompressed(data, where="downloaded data", limit=None):
    """`data` with one gzip layer removed when it has one (bounded: see gunzip_chunks)."""
    if data[:2] != b"\x1f\x8b":
        return data
    return b"".join(gunzip_chunks(io.BytesIO(data), where, limit))


def content_md5(data, where="downloaded data"):
    """The MD5 of `data`'s content (gzip removed), hashed while inflating: nothing is held whole."""
    if data[:2] != b"\x1f\x8b":
        return md5_hex(data)
    digest = hashlib.md5()
    for chunk in gunzip_chunks(io.BytesIO(data), where):
        digest.update(chunk)
    return digest.hexdigest()


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
            digest = content_md5(data, url)
        except ValueError as exc:
            failures.append(f"not valid gzip data: {exc}")
            continue
        if digest != md5_of_content:
            failures.append(f"{url}: checksum mismatch (MD5 of content {digest}, "
                            f"expected {md5_of_content})")
            continue
        path = pathlib.Path(target_dir) / filename
        atomic_write(path, lambda fh: fh.write(data), suffix=".part")
        return path
    raise OSError(f"could not download {filename}:\n  " + "\n  ".join(failures))
