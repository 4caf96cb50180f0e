"""Whether mpiexec started this process, and its share of the cores; no NumPy (train.py runs it first)."""
import os

# Variables an MPI launcher sets in every process it starts: world size (and, where given, how many
# processes share this machine). Hydra (MPICH, Intel MPI), Open MPI's mpirun, and PMIx launchers.
WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_LOCAL_SIZE")


def _first_int(names, environ):
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def launched_by_mpi(environ=None):
    """True when an MPI launcher started this process (it set a rank or world-size variable)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in WORLD_SIZE_VARIABLES + RANK_VARIABLES)


def processes_on_this_machine(environ=None):
    """How many processes of the MPI job share this machine (1 outside mpiexec)."""
    environ = os.environ if environ is None else environ
    if not launched_by_mpi(environ):
        return 1
    return max(1, _first_int(LOCAL_SIZE_VARIABLES, environ) or _first_int(WORLD_SIZE_VARIABLES, environ) or 1)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


def share_cores(variables, environ=None):
    """Under mpiexec, give each process cores / (processes on this machine) threads, so N ranks do not
    oversubscribe the machine; a thread count already set (--threads, or one of `variables` in the
    environment) wins. Returns the count set, or None."""
    environ = os.environ if environ is None else environ
    local = processes_on_this_machine(environ)
    if local == 1 or any(name in environ for name in variables):
        return None
    cores = available_cores()
    bound = cores < (os.cpu_count() or cores)     # the launcher pinned this process to its own cores
    threads = str(cores if bound else max(1, cores // local))
    for name in variables:
        environ[name] = threads
    return int(threads)
