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


def run_stamp(script, argv):
    """{"date", "command"} of this run of bench/<script> (argv: the arguments given, None for sys.argv's)."""
    import datetime
    import sys
    arguments = argv if argv is not None else sys.argv[1:]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": f"python bench/{script} " + " ".join(arguments)}


def report_folder(args, root):
    """Where a report goes: --out, else nothing for a --quick smoke run, else <root>/bench/results."""
    return args.out or (None if args.quick else os.path.join(root, "bench", "results"))


def publish(args, root, stem, title, text, payload):
    """Print the Markdown text, then write it and the payload where report_folder puts this run's report."""
    print(text)
    out = report_folder(args, root)
    if out:
        write_report(out, stem, title, text, payload)
