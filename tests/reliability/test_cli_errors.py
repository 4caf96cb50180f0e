"""train.py user errors, run as a user would: one paragraph on stderr, no traceback, non-zero exit."""
import pytest

from tests.reliability._cli import TINY, assert_user_error, train


def _valid_names():
    import tasks
    from compressors import plugin
    from layers.models import MODELS
    return {"--task": sorted(tasks.TASKS), "--model": sorted(MODELS), "--compress": sorted(plugin.REGISTRY)}


@pytest.mark.parametrize("flag", ["--task", "--model", "--compress"])
def test_unknown_name_lists_the_valid_ones(tmp_path, flag):
    proc = train(*TINY, "--out", tmp_path / "run", flag, "no_such_thing")
    err = assert_user_error(proc, "no_such_thing")
    for name in _valid_names()[flag]:
        assert name in err, f"valid {flag} value {name!r} not listed: {err}"


@pytest.mark.parametrize("text, words", [
    ("epochs = 1\nno_such_key = 3\n", ["unknown key 'no_such_key'", "valid keys", "epochs"]),
    ("epochs = 'three'\n", ["'epochs'", "integer", "three"]),
    ("optimizer = 'sgdx'\n", ["'optimizer'", "sgd", "adam"]),
    ("[wavelet]\nlevels = 'x'\n", ["'wavelet_levels'", "integer"]),
    ("epochs = \n", ["not valid TOML"]),
])
def test_config_file_errors(tmp_path, text, words):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    proc = train(*TINY, "--out", tmp_path / "run", "--config", config)
    assert_user_error(proc, str(config), *words)


def test_missing_config_file(tmp_path):
    proc = train(*TINY, "--config", tmp_path / "absent.toml")
    assert_user_error(proc, "absent.toml")


@pytest.mark.parametrize("task, files", [
    ("mnist", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]),
    ("ptb", ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]),
])
def test_data_dir_without_the_files_names_them(tmp_path, task, files):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = train("--task", task, "--data-dir", empty, "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
    assert_user_error(proc, str(empty), *files)


def test_partial_data_dir_names_only_the_missing_files(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt"):
        (folder / name).write_text("a b c\n")
    proc = train("--task", "ptb", "--data-dir", folder, "--epochs", "1", "--out", tmp_path / "run")
    err = assert_user_error(proc, "ptb.test.txt")
    looked, missing, fix = err.splitlines()          # where it looked, what is missing, how to fix
    assert str(folder) in looked and missing == "missing: ptb.test.txt" and "--data-dir" in fix, err


@pytest.mark.parametrize("extra, words", [
    (["--compress", "tucker", "--hidden", "16", "--tucker-order", "2", "--tucker-ratio", "1e6"],
     ["--compress tucker", "too small", "lower ratio"]),
    (["--compress", "tucker", "--tucker-order", "5"], ["--compress tucker", "cannot be split into 5 mode sizes"]),
    (["--compress", "wavelet", "--wavelet-levels", "50"], ["--compress wavelet", "50 levels", "at most"]),
])
def test_compression_option_that_cannot_be_met(tmp_path, extra, words):
    proc = train(*TINY, "--out", tmp_path / "run", *extra)
    assert_user_error(proc, *words)


def test_resume_from_missing_or_corrupt_checkpoint(tmp_path):
    proc = train("--resume", tmp_path / "nothing.npz")
    assert_user_error(proc, "nothing.npz", "no such file")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    proc = train("--resume", bad)
    assert_user_error(proc, "bad.npz", "corrupted")


@pytest.fixture(scope="module")
def bad_flag_run(tmp_path_factory):
    return train(*TINY, "--out", tmp_path_factory.mktemp("flag") / "run", "--epochs", "-1")


def test_bad_flag_value_exits_non_zero_without_traceback(bad_flag_run):
    proc = bad_flag_run
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--epochs" in proc.stderr and "must be >= 0" in proc.stderr


def test_bad_flag_value_is_one_paragraph(bad_flag_run):
    """argparse's errors too: one paragraph, not the usage block of every flag."""
    err = assert_user_error(bad_flag_run, "--epochs", "--help")
    assert "usage:" not in err, err
