"""Fuzzing checkpoint metadata under a memory limit: model files and run checkpoints load or fail clearly."""
import os

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis (the test extra)")
from hypothesis import given, settings, strategies as st  # noqa: E402

import compressors  # noqa: E402
from compressors import checkpoints  # noqa: E402
from engine import io  # noqa: E402
from layers import serialization  # noqa: E402
from layers.models import sequence_model  # noqa: E402
from tests.reliability._fuzz import EXAMPLES, FUZZ  # noqa: E402
from tests.reliability._memory_limit import run_limited  # noqa: E402

SIZES = st.integers(-2, 64) | st.sampled_from([2 ** 20, 10 ** 9, 2 ** 40, 2 ** 63, 10 ** 30])
JUNK = (st.none() | st.booleans() | SIZES | st.floats(allow_nan=True) | st.text(max_size=4)
        | st.lists(SIZES, max_size=3) | st.dictionaries(st.text(max_size=3), SIZES, max_size=2))
KWARGS = st.fixed_dictionaries({}, optional={"n_in": SIZES | JUNK, "hidden": SIZES | JUNK, "n_out": SIZES,
                                             "num_layers": SIZES, "kind": st.sampled_from(["gru", "lstm", "x"])})
DTYPES = st.sampled_from(["float32", "float64", "float16", "int8", "object", "<U3", "bool", "complex64"]) | JUNK
RUN_FIELDS = st.sampled_from(["phase", "epoch", "step_in_epoch", "global_step", "seconds", "threads", "history",
                              "train_rng", "engine_rng", "partial", "optimizer", "architecture", "compressor",
                              "config", "kind"])
SMALL = dict(n_in=2, hidden=4, n_out=1)
CONFIG_KEYS = st.sampled_from(["per_layer", "shared_core", "layout", "factored", "which", "ranks", "levels",
                               "filter_length", "conv_reshape", "bias", "replaced", "reshape", "fixed", "init"])
STEPS = st.lists(st.fixed_dictionaries({
    "method": st.sampled_from(["basis", "lowrank", "scada", "tucker", "wavelet", "none", "x"]),
    "config": st.dictionaries(CONFIG_KEYS, JUNK | st.dictionaries(st.sampled_from(["rnn.ih", "head", "x"]),
                                                                  JUNK, max_size=2), max_size=3)}), max_size=2)


def _assert_clear(outcome, message, what):
    assert outcome != "other", f"{what}: not a clear error: {message}"


@FUZZ
@given(name=st.sampled_from(["sequence_model", "gru", "lenet300", "language_model", "nope"]) | JUNK,
       kwargs=KWARGS | JUNK, dtype=DTYPES, steps=STEPS | JUNK)
def test_model_file_metadata_loads_or_fails_clearly(name, kwargs, dtype, steps, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("meta") / "model.npz")
    state = {k: np.asarray(v) for k, v in sequence_model(**SMALL).state_dict().items()}
    meta = {"kind": serialization.KIND, "version": 1, "arch": {"name": name, "kwargs": kwargs},
            "compression": steps, "dtype": dtype}
    io.save(path, state, meta)
    for load in (serialization.load_model, compressors.load_model):
        _assert_clear(*run_limited(lambda: load(path)), f"{load.__module__} {meta}")


@FUZZ
@given(fields=st.dictionaries(RUN_FIELDS, JUNK | KWARGS, max_size=4), kwargs=KWARGS)
def test_run_checkpoint_fields_load_or_fail_clearly(fields, kwargs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = sequence_model(**SMALL)
    meta = {"phase": "train", "epoch": 1, "step_in_epoch": 0, "global_step": 3, "seconds": 0.1,
            "architecture": {"model": "sequence_model", "kwargs": dict(SMALL, **kwargs)},
            "compressor": {"name": "none", "config": {}}, "config": {"dtype": "float32"}, "history": []}
    meta.update(fields)
    checkpoints.save_run_checkpoint(os.path.join(folder, checkpoints.RUN_CHECKPOINT), model, None, meta)
    _assert_clear(*run_limited(lambda: checkpoints.load_run_checkpoint(str(folder))), f"run meta {meta}")
    _assert_clear(*run_limited(lambda: compressors.load_model(str(folder))), f"load_model of run meta {meta}")


def test_a_crafted_size_is_refused_before_it_is_built(tmp_path):
    path = str(tmp_path / "model.npz")
    state = {k: np.asarray(v) for k, v in sequence_model(**SMALL).state_dict().items()}
    io.save(path, state, {"kind": serialization.KIND, "version": 1, "dtype": "float32",
                          "arch": {"name": "sequence_model", "kwargs": dict(SMALL, hidden=40_000)}})
    outcome, message = run_limited(lambda: serialization.load_model(path))
    assert outcome == "clear" and "parameter values" in message, message


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.reliability._cli import TINY, train
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = train(*TINY, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return str(out)


def _resume(folder, out):
    """train.py --resume in this (forked) process: an exit status, never an exception."""
    from training.cli import main
    status = main(["--resume", folder, "--out", out, "--epochs", "2", "--no-progress", "--log-every", "0"])
    assert status in (0, 2, 3), status


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))   # each case is a whole (tiny) resumed run
@given(fields=st.dictionaries(RUN_FIELDS | st.sampled_from(["best", "divergence", "scheduler_epoch"]),
                              JUNK | KWARGS, min_size=1, max_size=3),
       config=st.dictionaries(st.sampled_from(["hidden", "seq_len", "lr", "epochs", "batch_size", "optimizer",
                                               "model_arg", "select"]), JUNK, max_size=2))
def test_resume_from_crafted_run_fields_ends_in_a_status(fields, config, finished_run, tmp_path_factory):
    arrays, meta = io.load(os.path.join(finished_run, checkpoints.RUN_CHECKPOINT))
    meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
    meta["config"] = dict(meta["config"], **config)
    meta.update(fields)
    folder = tmp_path_factory.mktemp("crafted")
    io.save(os.path.join(folder, checkpoints.RUN_CHECKPOINT), arrays, meta)
    out = str(tmp_path_factory.mktemp("resumed") / "run")
    _assert_clear(*run_limited(lambda: _resume(str(folder), out)), f"--resume with {fields}, config {config}")


def test_integer_arrays_in_place_of_float_weights_are_refused(tmp_path):
    path = str(tmp_path / "model.npz")
    state = {k: np.asarray(v).astype(np.int64) for k, v in sequence_model(**SMALL).state_dict().items()}
    io.save(path, state, {"kind": serialization.KIND, "version": 1, "dtype": "float32",
                          "arch": {"name": "sequence_model", "kwargs": SMALL}})
    for load in (serialization.load_model, compressors.load_model):
        with pytest.raises(ValueError, match="float weights stored as"):
            load(path)


def test_build_budget_counts_the_parameters_alive():
    from layers import init
    from layers.module import Parameter
    with init.build_budget(100):
        first = Parameter(np.zeros(60, np.float32))
        with pytest.raises(init.BuildTooLarge):
            init.uniform((50,), 1.0)                   # refused before it allocates
        with pytest.raises(init.BuildTooLarge):
            Parameter(np.zeros(50, np.float32))
        del first                                      # a replaced weight stops counting once freed
        Parameter(np.zeros(90, np.float32))
    Parameter(np.zeros(1000, np.float32))              # no budget outside the context


@pytest.mark.parametrize("text, words", [("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                                          ('"a string"', "not a JSON object"), ("{,}", "not UTF-8 JSON")])
def test_safetensors_compactnet_metadata_is_parsed_as_untrusted(tmp_path, text, words):
    from engine import safetensors
    path = str(tmp_path / "model.safetensors")
    state = {k: np.asarray(v) for k, v in sequence_model(**SMALL).state_dict().items()}
    safetensors.save_safetensors(path, state, {serialization.SAFETENSORS_KEY: text, "format": "np"})
    for load in (serialization.load_model, compressors.load_model):
        outcome, message = run_limited(lambda: load(path))
        assert outcome == "clear" and words in message and path in message, message
