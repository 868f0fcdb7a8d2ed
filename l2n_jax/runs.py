"""Vectorisation from outside: a per-run function over seeds and sites.

The engine's functions train ONE run (one seed, one site). ``over_runs`` turns such a
function into one over every seed (``jax.vmap``, or ``lax.map``: one seed after
another in the same compiled loop, each bitwise as alone) and, optionally, every
site (``jax.vmap``), the purejaxrl shape::

    train_all = jax.jit(l2n.over_runs(program.run, seed_axes=(0, None, None)))
    states, history = train_all(keys, train, valid)

With several devices, ``seed_sharding`` splits the seed axis over them: put the keys
and states there and ``jit`` partitions the same program (GSPMD).
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCHINGS = ("vmap", "map")


def map_over(fn: Callable, in_axes: Sequence) -> Callable:
    """``jax.vmap(fn, in_axes)`` semantics (axes 0 or None), computed by ``lax.map``.

    Each element runs the unbatched program, one after another in the same compiled
    loop, so its result is bitwise the one a separate call gives.
    """

    def mapped(*args):
        mapped_args = [a for a, ax in zip(args, in_axes) if ax == 0]

        def one(xs):
            it = iter(xs)
            return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])

        return jax.lax.map(one, mapped_args)

    return mapped


def over_runs(fn: Callable, seed_axes: Sequence, site_axes: Sequence | None = None,
              batching: str = "vmap") -> Callable:
    """``fn`` of one run -> the same over seeds (and sites).

    Args:
      fn: a function of one run (e.g. ``Program.run`` or ``Program.epochs`` with
        its static arguments bound).
      seed_axes: ``in_axes`` over seeds (0: one per seed, None: shared).
      site_axes: ``in_axes`` over sites of the seed-batched function, or None for a
        single site. Sites share the seed keys, so a site's runs are its runs alone.
      batching: 'vmap' (batched) or 'map' (``map_over``).
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
    per_seed = map_over if batching == "map" else jax.vmap
    fn = per_seed(fn, seed_axes)
    return fn if site_axes is None else jax.vmap(fn, in_axes=site_axes)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One PRNG key per seed; seeds must be distinct."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def seed_sharding(n_seeds: int, axis: int, tag: str = "") -> NamedSharding | None:
    """A NamedSharding splitting the seed axis over the devices, or None.

    Uses the largest number of local devices that divides the number of seeds;
    None on a single device. Under several processes (``l2n_jax.distributed``) the
    mesh spans every device of every process, and the seeds are padded to fill it
    (``seed_padding``).
    """
    if jax.process_count() > 1:
        devices = _global_devices(n_seeds, tag)
    else:
        devices = jax.local_devices()
        n = max(d for d in range(1, len(devices) + 1) if n_seeds % d == 0)
        if n < len(devices):
            logging.info("%s %d seeds over %d of %d devices (use a multiple of %d seeds "
                         "to use them all)", tag, n_seeds, n, len(devices), len(devices))
        devices = devices[:n]
    if len(devices) < 2:
        return None
    mesh = Mesh(np.asarray(devices), ("runs",))
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), "runs"))


def _global_devices(n_seeds: int, tag: str) -> list:
    """Every process's devices (as many from each, process-major). The seeds are
    padded to a multiple of their number (``seed_padding``)."""
    n_proc = jax.process_count()
    by_process = [[d for d in jax.devices() if d.process_index == p] for p in range(n_proc)]
    n_local = min(len(ds) for ds in by_process)
    devices = [d for ds in by_process for d in ds[:n_local]]
    extra = -n_seeds % len(devices)
    if extra:
        logging.info("%s %d seeds padded with %d discarded runs to fill %d devices",
                     tag, n_seeds, extra, len(devices))
    return devices


def seed_padding(n_seeds: int, sharding: NamedSharding | None) -> int:
    """Runs to add so the seeds fill the mesh (0 but under several processes, whose
    mesh takes every device: one process's seeds always divide its devices)."""
    return 0 if sharding is None else -n_seeds % sharding.mesh.devices.size


def pad_seeds(tree, axis: int, extra: int):
    """Repeats the last seed ``extra`` times along ``axis``: runs computed for the
    mesh's sake and dropped by ``trim_seeds``."""
    if not extra:
        return tree

    def one(x):
        last = jax.lax.slice_in_dim(x, x.shape[axis] - 1, x.shape[axis], axis=axis)
        return jnp.concatenate([x, jnp.repeat(last, extra, axis=axis)], axis=axis)

    return jax.tree.map(one, tree)


def trim_seeds(tree, axis: int, n_seeds: int):
    """The first ``n_seeds`` runs along ``axis`` of every (host) leaf."""
    index = (slice(None),) * axis + (slice(0, n_seeds),)
    return jax.tree.map(lambda x: x[index], tree)
