"""Driving a run: the program vectorised over seeds (and sites), started or resumed
from its checkpoint, run chunk by chunk (``l2n_jax.loop``), its seeds sharded over
the devices (of every process, ``l2n_jax.distributed``), and brought back to the
host. ``l2n_jax.fit`` builds the program and makes a FitResult of what this returns.
"""

import time

import jax
from jax.sharding import NamedSharding, PartitionSpec

from l2n_jax import checkpoint as ckpt_lib
from l2n_jax import distributed, loop, progress, runs


class NonFiniteError(FloatingPointError):
    """A run produced a NaN/inf cost, loss or parameter and was stopped."""


def raise_if_nonfinite(bad, seeds, tag, checkpoint=None, sites=None):
    """Raises NonFiniteError if a run's ``bad_step`` (host array) is set."""
    if (bad >= 0).any():
        if sites is None:
            which = ", ".join(
                f"seed {s} at step {int(b)}" for s, b in zip(seeds, bad) if b >= 0
            )
        else:
            which = ", ".join(
                f"site {site} seed {s} at step {int(b)}"
                for site, row in zip(sites, bad) for s, b in zip(seeds, row) if b >= 0
            )
        kept = f" The last good checkpoint is kept in {checkpoint}." if checkpoint else ""
        raise NonFiniteError(
            f"{tag} non-finite cost, loss or parameters ({which}); the run was frozen "
            "at its last finite step. Check the metric for NaN/inf outputs, or lower "
            f"lr_max / shaper_lr.{kept}"
        )


def vectorised(program, config, n_seeds, sites, tag, start_params):
    """(start, chunk, seed sharding): the program's start and epoch functions over
    seeds and sites, jitted; ``chunk(n)`` runs ``n`` epochs."""
    sharding = runs.seed_sharding(n_seeds, 0 if sites is None else 1, tag)
    batching = config.seed_batching
    if batching == "map" and sharding is not None:
        # lax.map keeps the seeds on one device; vmap lets jit split them.
        batching = "vmap"
    on_sites = sites is not None
    # A start shaper is one per seed; hyper-parameters are shared by the seeds.
    seed_sp = None if start_params is None else {
        k: (0 if k == "shaper" else None) for k in start_params}
    site_sp = None if start_params is None else {k: 0 for k in start_params}
    # Data go in as arguments (not closed over), so XLA does not embed them as
    # constants in the compiled program.
    start = jax.jit(runs.over_runs(
        program.start, (0, None, seed_sp), (None, 0, site_sp) if on_sites else None,
        batching))

    def chunk(n):
        # Named (not a lambda) so that a compile counter can tell the training
        # programs (jit(start), jit(epochs)) from small host-side ones.
        def epochs(s, k, tr, va, e0):
            return program.epochs(k, s, tr, va, e0, n)

        return jax.jit(runs.over_runs(
            epochs, (0, 0, None, None, None), (0, None, 0, 0, None) if on_sites else None,
            batching))

    return start, chunk, sharding


def drive(program, config, keys, train, valid, start_params, tag, checkpoint,
           fingerprint, sites, seeds, report):
    """Starts (or resumes) and runs every chunk; returns (Chunks, {'pretrain_s',
    'devices'}): the seconds before the first chunk and the devices the seeds ran on.

    With the seeds sharded (several devices, or processes), the finished state comes
    back to the host whole, so what follows (evaluation, tuning) runs the same on
    one device as on many, and the same on every process. Seeds padded to fill a
    multi-process mesh are dropped from everything that leaves the device:
    checkpoints, histories, the result."""
    start, chunk, sharding = vectorised(program, config, len(keys), sites, tag,
                                         start_params)
    axis, n = (0 if sites is None else 1), len(keys)
    extra = runs.seed_padding(n, sharding)

    def host(tree):  # a collective under several processes: every process calls it
        return runs.trim_seeds(distributed.to_host(tree), axis, n)

    restored = None
    if checkpoint is not None:
        template = jax.eval_shape(start, keys, train, start_params)
        restored = ckpt_lib.restore(checkpoint, template, fingerprint)
    keys = runs.pad_seeds(keys, 0, extra)
    if extra and start_params is not None and "shaper" in start_params:
        start_params = {**start_params,
                        "shaper": runs.pad_seeds(start_params["shaper"], axis, extra)}
    if sharding is not None:  # data stay replicated; jit partitions the seed axis
        keys = distributed.put(keys, NamedSharding(sharding.mesh, PartitionSpec("runs")))
    t0 = time.perf_counter()
    offset = program.pretrain_epochs
    if restored is None:
        done, epoch = loop.Chunks(jax.block_until_ready(start(keys, train, start_params)),
                                  [], []), 0
        what = (f"pre-trained {offset} epoch{'s' * (offset > 1)} (MSE)" if offset
                else "initialised")
        report(f"{tag} {n} seed(s){'' if sites is None else f' x {len(sites)} sites'}"
               f" compiled and {what} in {progress.duration(time.perf_counter() - t0)}")
    else:
        done, epoch = loop.Chunks(runs.pad_seeds(restored.state, axis, extra),
                                  restored.chunks, restored.firsts), restored.epoch
        report(f"{tag} resuming from {checkpoint} at "
               f"{loop.epoch_text(epoch, program.n_epochs, offset)}")
    # Every process must restore the same checkpoint (a shared filesystem).
    distributed.agree(epoch, f"{tag}: the epoch to resume from ({checkpoint})")
    if sharding is not None:
        done = done._replace(state=distributed.put(done.state, sharding))
    t_pre = time.perf_counter() - t0

    def save(chunks, epoch):
        state = host(chunks.state)
        if distributed.is_main():
            ckpt_lib.save(checkpoint, state, epoch, chunks.histories, chunks.firsts,
                          fingerprint)

    done = loop.train_in_chunks(
        chunk, (keys, train, valid), done, epoch, program.n_epochs,
        program.steps_per_epoch, tag, config.log_every, config.checkpoint_every,
        check=lambda state: raise_if_nonfinite(host(state.bad_step), seeds, tag,
                                               checkpoint, sites),
        save=save if checkpoint is not None else None,
        report=report, offset=offset, fetch=host if distributed.multi() else None,
    )
    if sharding is None:
        return done, {"pretrain_s": t_pre, "devices": 1}
    return (done._replace(state=host(done.state)),
            {"pretrain_s": t_pre, "devices": sharding.mesh.devices.size})
