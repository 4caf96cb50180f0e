"""Command-line helpers: validated argparse types, TOML config files checked against a parser, TOML output."""
import argparse
import json
import math

from engine.io import atomic_write


MAX_CONFIG_BYTES = 1_000_000


class ConfigError(ValueError):
    """A config file or value that does not fit the command line's options."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def threads_value(text):
    """--threads: a positive count, or "auto" (the cores other work leaves free, re-checked during the run)."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or auto, got {text!r}")
    return int(text)


def nonnegative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def nonnegative_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def unit_float(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


INTEGER_TYPES = (int, positive_int, nonnegative_int)


class HelpFormatter(argparse.HelpFormatter):
    """Shows '(default: X)' only where an option has a default (None/False mean 'unset')."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or "(default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def option_actions(parser):
    """dest -> argparse action for every option except help."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def _is_flag(action):
    return action.nargs == 0 and isinstance(action.const, bool)


def explicit_dests(parser, argv):
    """The dests that `argv` sets explicitly (options typed on the command line)."""
    quiet = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
        if action.nargs == 0:
            kwargs["action"] = "store_true"
        elif isinstance(action, argparse._AppendAction):
            kwargs["action"] = "append"
        elif action.nargs is not None:
            kwargs["nargs"] = action.nargs
        quiet.add_argument(*action.option_strings, **kwargs)
    known, _ = quiet.parse_known_args(argv)
    return set(vars(known))


def load_toml(path, source="--config"):
    """The parsed TOML file; ConfigError naming the file when it is missing or not valid TOML."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(f"{source} {path}: reading TOML needs Python 3.11+ (tomllib) or the tomli "
                              "package") from None
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file: {path}") from None
    except OSError as e:   # a folder, no permission, an I/O error
        raise ConfigError(f"{source} {path}: cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source} {path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        # surrogateescape: a path that is not valid UTF-8 round-trips through write_toml (see there)
        return tomllib.loads(data.decode("utf-8", errors="surrogateescape"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source} {path}: not valid TOML ({e})") from None


def flatten_tables(data, prefix=""):
    """{'wavelet': {'levels': 3}, 'batch-size': 8} -> {'wavelet_levels': 3, 'batch_size': 8}."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict):
            flat.update(flatten_tables(value, name + "_"))
        else:
            flat[name] = value
    return flat


def check_values(values, parser, source, excluded=()):
    """Validate {dest: value} against the parser's options; returns the values converted.

    Unknown keys (or `excluded` ones) and values of the wrong type raise ConfigError
    naming the source, the key, what was expected and what was found.
    """
    actions = option_actions(parser)
    checked = {}
    for key, value in values.items():
        action = actions.get(key)
        if action is None or key in excluded:
            valid = sorted(k for k in actions if k not in excluded)
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        checked[key] = _check_value(action, key, value, source)
    return checked


def _check_value(action, key, value, source):
    def wrong(expected):
        return ConfigError(f"{source}: key {key!r} must be {expected}, got {type(value).__name__} {value!r}")

    if _is_flag(action):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(action, argparse._AppendAction) or action.nargs not in (None, "?"):
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise wrong("a list")
        return value
    kind = action.type
    if isinstance(value, (bool, list, dict)):
        raise wrong("a single " + ("string" if kind in (None, str) else "number"))
    if kind in (None, str):
        if not isinstance(value, str):
            raise wrong("a string")
    elif kind in INTEGER_TYPES:
        if not isinstance(value, int):
            raise wrong("an integer")
    elif not isinstance(value, (int, float, str)):
        raise wrong("a number")
    if kind not in (None, str):
        try:
            value = kind(value if kind in (int, float) else str(value))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise ConfigError(f"{source}: key {key!r}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{source}: key {key!r} must be one of {', '.join(map(str, action.choices))}, "
                          f"got {value!r}")
    return value


def toml_value(value):
    """A Python scalar or list as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # a JSON string is a TOML basic string; DEL is the one character JSON leaves raw and TOML refuses.
    # Raw non-ASCII is kept, so a path with undecodable bytes (surrogate escapes) is written back as those
    # bytes by write_toml and read back by load_toml unchanged
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def write_toml(path, values, header=""):
    """Write flat {key: value} as TOML (keys sorted, None values left out), atomically."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key} = {toml_value(value)}" for key, value in sorted(values.items()) if value is not None]
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8", errors="surrogateescape")), suffix=".toml")
