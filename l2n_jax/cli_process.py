"""What ``l2n_train``'s process is, set before anything else touches JAX: how it
compiles (``--quick``: fast compilation; the persistent compilation cache), and
whether it is one process of many (``--distributed`` joins JAX's multi-controller
runtime, ``l2n_jax.distributed``; a run whose peer died ends with one line and exit
status 3 instead of JAX's abort).
"""

import os
import socket
import sys

import jax
from absl import app, flags

from l2n_jax import distributed

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Run as one process of a multi-process run (jax.distributed): the seeds of every "
    "training are sharded over the devices of all processes; process 0 writes the "
    "results and checkpoints. The cluster is auto-detected on TPU pods, Slurm, Open "
    "MPI and Kubernetes; elsewhere give --coordinator, --num_processes, --process_id "
    "(README: more than one machine).",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "--distributed: HOST:PORT of process 0 (it listens there; a "
    "127.0.0.1 or localhost address keeps the run on this machine).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "--distributed: number of processes.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "--distributed: this process's index, 0 .. num_processes-1.",
    lower_bound=0)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "--distributed: seconds after which a silent process is "
    "declared dead and the others stop with an error (rerun to resume).", lower_bound=1)


def quick_compiles() -> None:
    """--quick is a smoke run: compile fast (XLA's backend optimisations off, as the
    test suite does) rather than run fast. Must precede JAX's first compilation."""
    flag = "--xla_backend_optimization_level=0"
    if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


def compilation_cache(path: str) -> None:
    """JAX's persistent cache for every program, however fast it compiles (JAX's
    default keeps only those of 1 s and more; ours are mostly under a second)."""
    if not path:
        return
    path = os.path.expanduser(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise app.UsageError(f"--compilation_cache={path} is not writable: {e.strerror}") \
            from None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def join() -> None:
    """Joins a multi-process run when --distributed; must precede any JAX call."""
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if not _DISTRIBUTED.value:
        if any(v is not None for v in explicit):
            raise app.UsageError("--coordinator/--num_processes/--process_id need "
                                 "--distributed")
        return
    coordinator = _COORDINATOR.value
    host, _, port = (coordinator or "").rpartition(":")
    local = host in ("127.0.0.1", "localhost")
    if coordinator and _PROCESS_ID.value == 0:
        _check_free(host if local else "", port)
    try:
        distributed.initialize(coordinator, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               bind_address=coordinator if local else None,
                               heartbeat_timeout_s=_HEARTBEAT.value)
    except (RuntimeError, ValueError) as e:
        raise app.UsageError(f"--distributed: cannot join the run: {e}") from None


def _check_free(host: str, port: str) -> None:
    """A coordinator whose port is taken crashes the process (a segfault in jaxlib):
    say so first."""
    try:
        with socket.socket() as s:
            s.bind((host, int(port)))
    except ValueError:
        raise app.UsageError(f"--coordinator={_COORDINATOR.value}: expected HOST:PORT") \
            from None
    except OSError as e:
        raise app.UsageError(f"--coordinator={_COORDINATOR.value}: port {port} is not "
                             f"free here ({e.strerror}); pick another") from None


def exit_failed(error: Exception) -> None:
    """Ends this process of a failed multi-process run: one line, status 3."""
    # A peer died (gloo's connection reset) or the coordination service gave up.
    first = str(error).strip().splitlines()[0][:300]
    print(f"l2n_train: error: process {jax.process_index()}: the multi-process run "
          f"failed ({first}); the last checkpoints are kept: rerun the same command "
          "on every process to resume", file=sys.stderr, flush=True)
    # Skip JAX's exit handler: its shutdown barrier would wait for the dead peer and
    # then abort.
    os._exit(3)
