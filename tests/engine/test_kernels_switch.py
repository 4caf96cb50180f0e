"""COMPACTNET_DISABLE_NUMBA and the parallel threshold mean one thing for every kernel family."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import engine.kernels as kernels
from engine.kernels import elementwise, im2col, recurrent, tucker, wavelet
from engine.ops import pool
from tests.reliability._cli import ROOT, TINY, assert_user_error, child_env

VARIABLE = "COMPACTNET_DISABLE_NUMBA"
DISABLING = ["1", "true", "TRUE", "yes", "On", " on "]
ENABLING = ["0", "false", "False", "no", "OFF", ""]
INVALID = ["2", "enable", "y", "-1", "numba"]
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def family_reports():
    """family -> whether its Numba kernels would run now, asked through each family's own API."""
    return {
        "im2col": im2col.numba_enabled(),
        "max_pool": pool._pool_kernels(np.zeros((1, 1, 2, 2)), (2, 2), (2, 2)) is not None,
        "elementwise": elementwise.elementwise_kernels(np.zeros(2)) is not None,
        "recurrent": "numba" in recurrent.available_implementations(),
        "wavelet": wavelet.numba_available(),
        "tucker": tucker.numba_available(),
    }


@pytest.mark.parametrize("value", DISABLING)
def test_disabling_values_turn_numba_off_in_every_family(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    assert kernels.numba_disabled() is True
    assert family_reports() == dict.fromkeys(family_reports(), False)
    assert wavelet.implementation(np.zeros(3)) == "numpy"


@pytest.mark.parametrize("value", ENABLING + [None])
def test_enabling_values_leave_numba_on_in_every_family(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    assert kernels.numba_disabled() is False
    if not HAVE_NUMBA:
        pytest.skip("numba is not installed: no family can report it on")
    assert family_reports() == dict.fromkeys(family_reports(), True)


@pytest.mark.parametrize("value", INVALID)
def test_invalid_value_is_an_error_naming_variable_and_value(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    with pytest.raises(ValueError, match=f"{VARIABLE}={value!r}"):
        kernels.numba_disabled()
    for ask in (im2col.numba_enabled, wavelet.numba_available, tucker.numba_available,
                recurrent.available_implementations):
        with pytest.raises(ValueError, match=VARIABLE):
            ask()


def test_parallel_variable_is_read_the_same_way(monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 10)
    monkeypatch.setenv(kernels.PARALLEL_VARIABLE, "true")
    assert im2col._pays_to_thread(2, 5) and not im2col._pays_to_thread(2, 4)
    monkeypatch.setenv(kernels.PARALLEL_VARIABLE, "off")
    assert not im2col._pays_to_thread(2, 5)
    monkeypatch.setenv(kernels.PARALLEL_VARIABLE, "maybe")
    with pytest.raises(ValueError, match="COMPACTNET_NUMBA_PARALLEL='maybe'"):
        im2col._pays_to_thread(2, 5)


@pytest.mark.skipif(not wavelet.numba_available(), reason="numba not importable or disabled")
def test_every_family_reads_the_one_parallel_threshold(monkeypatch):
    monkeypatch.setenv(kernels.PARALLEL_VARIABLE, "1")
    for threshold in (10, 11):
        monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", threshold)
        threaded = threshold <= 10
        assert im2col._pays_to_thread(2, 5) == threaded
        expected = "analyze_parallel" if threaded else "analyze_serial"
        assert wavelet._numba_kernel("analyze", 10).__name__ == expected


def test_tucker_numba_kernel_comes_through_the_shared_loader(monkeypatch):
    if not tucker.numba_available():
        pytest.skip("numba not importable or disabled")
    assert kernels.load_numba_module("tucker_numba") is sys.modules["engine.kernels.tucker_numba"]
    monkeypatch.setenv(VARIABLE, "yes")
    with pytest.raises(ValueError, match="numba"):
        tucker.mode_product(np.ones((2, 3)), np.ones((4, 3)), 1, impl="numba")


def test_train_rejects_an_invalid_value_in_one_line(tmp_path):
    env = dict(child_env(), **{VARIABLE: "sometimes"})
    proc = subprocess.run([sys.executable, "train.py", *TINY, "--out", str(tmp_path / "run")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert_user_error(proc, VARIABLE, "sometimes")
    assert not os.path.exists(tmp_path / "run" / "checkpoint.npz")


@pytest.mark.parametrize("fast", [True, False])
def test_switches_see_every_change_made_through_os_environ(monkeypatch, fast):
    # the switches read os.environ's own dict (or, without it, os.environ.get): set, changed and
    # removed values are all seen on the next call
    if not fast:
        monkeypatch.setattr(kernels, "_environ_data", None)
    monkeypatch.delenv(VARIABLE, raising=False)
    assert kernels._environment_value(VARIABLE) == "" and kernels.numba_disabled() is False
    for value, disabled in (("1", True), ("off", False), (" Yes ", True)):
        monkeypatch.setenv(VARIABLE, value)
        assert kernels._environment_value(VARIABLE) == os.environ[VARIABLE] == value
        assert kernels.numba_disabled() is disabled
    monkeypatch.delenv(VARIABLE)
    assert kernels.numba_disabled() is False
