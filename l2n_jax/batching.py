"""How an epoch's batches are drawn: a ``Layout``, chosen once from the data.

* ``shuffled``: a random order of the training windows every epoch, in
  ``n // batch_size`` batches (the last incomplete batch is dropped). For a padded
  split (``Split.n`` traced, a site batched with longer ones) the order covers the
  first ``n`` windows only, drawn with one key per index so that it does not depend
  on the padded length; the steps past the site's own ``n // batch_size`` are dead,
  and ``Layout.keep`` turns them into no-ops. A padded site therefore runs exactly as
  alone (through the same path), and padded rows are never read by a live step.
* ``segmented``: stateful metrics. The split is cut into ``segments`` equal
  stretches; step ``i`` takes the ``i``-th contiguous run of ``batch_size //
  segments`` windows of every stretch, so a batch is ``segments`` contiguous time
  segments, one after another, the same in every epoch.

Every permutation key is ``fold_in(fold_in(run_key, PERM), epoch)``, so an epoch's
batches do not depend on how the run is chunked.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l2n_jax.data import Split

PERM = 2  # fold_in tag of the permutation stream (see engine.py for the others)


class Layout(NamedTuple):
    """The batches of one epoch.

    Attributes:
      steps: steps per epoch of the program (of the longest site when padded).
      live_steps: this site's own steps per epoch (a Python int, or traced).
      batches: ``(run_key, epoch) -> (idx [steps, batch_size], live)``; ``live`` is
        a [steps] bool array when padded, else None.
      keep: ``(live, new_state, old_state) -> state`` after a step: the new state,
        or, on a dead step of a padded site, the old one.
    """

    steps: int
    live_steps: Any
    batches: Callable
    keep: Callable


def gate(active, new, old):
    """``new`` where ``active`` else ``old``, leaf by leaf (branch-free)."""
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)


def _take_new(live, new, old):
    del live, old
    return new


def _steps(batch_size: int, n_rows: int) -> int:
    steps = n_rows // batch_size
    if steps < 1:
        raise ValueError(
            f"Config.batch_size ({batch_size}) exceeds the {n_rows} training "
            "windows: lower batch_size or bring more data"
        )
    return steps


def _perm_key(key, epoch):
    return jax.random.fold_in(jax.random.fold_in(key, PERM), epoch)


def for_split(batch_size: int, train: Split, segments: int | None = None) -> Layout:
    """``shuffled`` (``segments`` None) or ``segmented`` batches of ``train``."""
    if segments is None:
        return shuffled(batch_size, len(train.windows), train.n)
    if train.padded:
        raise ValueError(
            "a StatefulMetric is scanned over the whole split in time order, which "
            "padding would break; truncate the sites to a common length"
        )
    return segmented(batch_size, len(train.windows), segments)


def shuffled(batch_size: int, n_rows: int, n_live=None) -> Layout:
    """A fresh random order of the training windows every epoch.

    ``n_live``: None (every row is live), or the traced number of live rows of a
    padded split of ``n_rows``.
    """
    steps = _steps(batch_size, n_rows)
    if n_live is None:
        def batches(key, epoch):
            perm = jax.random.permutation(_perm_key(key, epoch), n_rows)
            return perm[: steps * batch_size].reshape(steps, batch_size), None

        return Layout(steps, steps, batches, _take_new)

    def padded_batches(key, epoch):
        perm_key = _perm_key(key, epoch)
        # One key per index: the order of the live windows is the same whatever
        # the padded length (a site batched with longer ones runs as alone).
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(perm_key, i)))(
            jnp.arange(n_rows)
        )
        perm = jnp.argsort(jnp.where(jnp.arange(n_rows) < n_live, u, 2.0))
        # Dead steps read live rows too (mod n), so padding is never computed on.
        pos = jnp.arange(steps * batch_size) % n_live
        idx = perm[pos].reshape(steps, batch_size)
        return idx, jnp.arange(steps) < n_live // batch_size

    return Layout(steps, n_live // batch_size, padded_batches, gate)


def segmented(batch_size: int, n_rows: int, segments: int) -> Layout:
    """``segments`` contiguous time segments per batch, in time order (stateful)."""
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments must be a positive int, got {segments!r}")
    if batch_size % segments:
        raise ValueError(
            f"Config.batch_size ({batch_size}) must be a multiple of segments "
            f"({segments}): a batch is segments contiguous runs of equal length"
        )
    seg_len = batch_size // segments
    stretch = n_rows // segments
    steps = stretch // seg_len
    if steps < 1:
        raise ValueError(
            f"{segments} segments of {seg_len} windows do not fit in the {n_rows} "
            "training windows: lower batch_size or segments, or bring more data"
        )
    # [steps, segments * seg_len]: step i holds segment i of every stretch, in time
    # order, the stretches one after another.
    idx = (
        np.arange(segments)[None, :, None] * stretch
        + np.arange(steps)[:, None, None] * seg_len
        + np.arange(seg_len)[None, None, :]
    ).astype(np.int32).reshape(steps, batch_size)

    def batches(key, epoch):
        del key, epoch
        return jnp.asarray(idx), None

    return Layout(steps, steps, batches, _take_new)
