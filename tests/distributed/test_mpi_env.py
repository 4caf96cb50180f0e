"""Launcher detection and each rank's share of the cores (training/mpi_env.py; no MPI needed)."""
from training import mpi_env

THREADS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")


def test_launchers_are_recognised_by_their_variables():
    assert not mpi_env.launched_by_mpi({"HOME": "/root"})
    for variable in ("PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        assert mpi_env.launched_by_mpi({variable: "0"})


def test_processes_on_this_machine_prefer_the_local_count():
    assert mpi_env.processes_on_this_machine({}) == 1
    assert mpi_env.processes_on_this_machine({"PMI_SIZE": "8", "MPI_LOCALNRANKS": "2"}) == 2
    assert mpi_env.processes_on_this_machine({"OMPI_COMM_WORLD_SIZE": "4"}) == 4


def test_each_rank_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(mpi_env, "available_cores", lambda: 16)
    monkeypatch.setattr(mpi_env.os, "cpu_count", lambda: 16)
    environ = {"PMI_SIZE": "4", "MPI_LOCALNRANKS": "4"}
    assert mpi_env.share_cores(THREADS, environ) == 4
    assert environ["OMP_NUM_THREADS"] == environ["NUMBA_NUM_THREADS"] == "4"


def test_a_thread_count_already_set_or_a_single_process_is_left_alone(monkeypatch):
    monkeypatch.setattr(mpi_env, "available_cores", lambda: 16)
    environ = {"PMI_SIZE": "4", "OMP_NUM_THREADS": "3"}
    assert mpi_env.share_cores(THREADS, environ) is None and environ["OMP_NUM_THREADS"] == "3"
    alone = {}
    assert mpi_env.share_cores(THREADS, alone) is None and alone == {}


def test_a_pinned_rank_keeps_its_own_cores(monkeypatch):
    monkeypatch.setattr(mpi_env, "available_cores", lambda: 2)     # the launcher bound it to 2 of 16
    monkeypatch.setattr(mpi_env.os, "cpu_count", lambda: 16)
    assert mpi_env.share_cores(THREADS, {"PMI_SIZE": "8"}) == 2
