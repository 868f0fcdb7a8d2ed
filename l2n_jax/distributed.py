"""More than one process: JAX's multi-controller runtime over the run axis.

``initialize`` starts ``jax.distributed`` (auto-detected on TPU pods, Slurm, Open MPI
and Kubernetes; explicit coordinator / process count / id elsewhere). Every process
then runs the same program: ``runs.seed_sharding`` builds one global ``Mesh`` over
every process's devices and shards the seed axis on it, so each device trains its
own seeds; the runs never communicate. What crosses processes is gathered by
``to_host``: each chunk's history, and the state at checkpoints and at the end, as
host arrays on every process, so evaluation, tuning and tables run the same
everywhere; only the main process (index 0) writes files (``is_main``).

A single process is the special case: ``to_host`` is ``np.asarray`` and ``put`` is
``jax.device_put``.
"""

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from l2n_jax import progress


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, bind_address: str | None = None,
               heartbeat_timeout_s: int = 100, initialization_timeout_s: int = 300) -> None:
    """Joins this process to a multi-process run; must precede any other JAX call.

    Args:
      coordinator: 'HOST:PORT' of process 0 (None: auto-detected from the cluster's
        environment: TPU pod, Slurm, Open MPI, Kubernetes).
      num_processes, process_id: this run's size and this process's index (None:
        auto-detected).
      bind_address: the address the coordinator listens on (default: every
        interface); '127.0.0.1:PORT' keeps a one-machine run off the network.
      heartbeat_timeout_s: a process silent this long is declared dead and the
        others stop (a killed peer ends the run in about this time, not a hang).
      initialization_timeout_s: how long to wait for every process to join.
    """
    # CPU collectives (the seed axis' gathers) need a transport; gloo is in jaxlib.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator, num_processes, process_id,
        coordinator_bind_address=bind_address,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        initialization_timeout=initialization_timeout_s,
    )
    if not is_main():
        progress.mute()  # one set of progress lines, the main process's


def is_main() -> bool:
    """True in the process that writes results and checkpoints (index 0)."""
    return jax.process_index() == 0


def multi() -> bool:
    return jax.process_count() > 1


def to_host(tree):
    """Every leaf as a NumPy array holding the whole (global) value, on every
    process; a collective under several processes, so every process must call it.

    The leaves spread over processes are replicated by ONE jitted identity per
    mesh (cached: a gather per leaf would compile a program per leaf shape and call).
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [i for i, x in enumerate(leaves)
              if isinstance(x, jax.Array) and not x.is_fully_addressable]
    if spread:
        mesh = leaves[spread[0]].sharding.mesh
        whole = _onto(NamedSharding(mesh, PartitionSpec()))(
            [leaves[i] for i in spread])
        for i, x in zip(spread, whole):
            leaves[i] = x.addressable_data(0)  # this process's full copy
    return jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])


@functools.lru_cache(maxsize=None)
def _onto(sharding):
    """An identity jitted onto ``sharding``, one per sharding, so its compilations
    are cached by shape like any jitted function's."""
    return jax.jit(_identity, out_shardings=sharding)


def _identity(tree):
    return tree


def put(tree, sharding):
    """Arrays (host or local, identical on every process) onto ``sharding``."""
    if not multi():
        return jax.device_put(tree, sharding)

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global
            return x if x.sharding == sharding else _reshard(x, sharding)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def _reshard(x, sharding):
    return _onto(sharding)(x)


def barrier(name: str) -> None:
    """Waits until every process reaches ``name`` (nothing under one process)."""
    if multi():
        multihost_utils.sync_global_devices(name)


def agree(value, what: str) -> None:
    """Raises unless ``value`` (a number or array) is the same on every process:
    e.g. the epoch a run resumes from, when a process sees another filesystem."""
    if multi():
        multihost_utils.assert_equal(np.asarray(value), f"processes disagree on {what}")
