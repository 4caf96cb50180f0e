"""What the benchmark scripts share for their outputs: a package's version, and one report as Markdown + JSON."""
import json
import os


def package_version(name):
    """The installed version of `name`, or "absent" (not installed, or installed without metadata)."""
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "absent"


def write_report(out, stem, title, text, payload):
    """<out>/<stem>.md (a heading and the Markdown text) and <stem>.json (the payload), each written atomically."""
    from engine.io import atomic_write
    atomic_write(os.path.join(out, f"{stem}.md"), lambda fh: fh.write(f"# {title}\n\n{text}".encode()))
    atomic_write(os.path.join(out, f"{stem}.json"), lambda fh: fh.write(json.dumps(payload, indent=1).encode()))
