"""The host loop of a training run, and nothing else: chunks of epochs (each compiled
once per chunk length), a finite check after each, a progress line every
``log_every`` epochs and a checkpoint every ``checkpoint_every``.

Chunks end wherever a progress line or a checkpoint is due: one host sync per
chunk, never per step. A chunk that produced a non-finite value is reported
(``check`` raises) before it is saved, so the checkpoint on disk stays the last
good one.
"""

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l2n_jax import progress


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where and what was kept."""


class Chunks(NamedTuple):
    """What a run has produced so far."""

    state: Any
    histories: list  # per chunk: {name: [..., epochs, steps]}
    firsts: list  # first epoch of each chunk
    compile_s: float = 0.0
    run_s: float = 0.0
    steps: int = 0  # optimisation steps run by this process (per run)


def epoch_text(epoch: int, n_epochs: int, offset: int = 0) -> str:
    """'epoch 20/60 (co-training 10/50)' when ``offset`` epochs of pre-training
    count in the budget, else 'epoch 10/50'."""
    if not offset:
        return f"epoch {epoch}/{n_epochs}"
    return f"epoch {offset + epoch}/{offset + n_epochs} (co-training {epoch}/{n_epochs})"


def progress_line(tag, epoch, n_epochs, offset, rate, eta_s, history) -> str:
    parts = []
    for key in ("cost", "loss", "valid_cost", "valid_loss"):
        if key in history:  # last step of the chunk, averaged over runs
            value = np.asarray(history[key])[..., -1, -1].mean()
            parts.append(f"{'train_' + key if 'valid' not in key else key} {value:.5f}")
    return (f"{tag} {epoch_text(epoch, n_epochs, offset)} | {rate:,.0f} steps/s | "
            f"ETA {progress.duration(eta_s)} | {' '.join(parts)}")


def _next_stop(epoch: int, n_epochs: int, every: tuple[int, ...]) -> int:
    """The first epoch after ``epoch`` where one of ``every`` is due (or the end)."""
    return min([n_epochs] + [(epoch // e + 1) * e for e in every if e > 0])


def train_in_chunks(
    chunk: Callable[[int], Callable],
    args: tuple,
    done: Chunks,
    epoch: int,
    n_epochs: int,
    steps_per_epoch: int,
    tag: str,
    log_every: int,
    checkpoint_every: int = 0,
    check: Callable[[Any], None] = lambda state: None,
    save: Callable[[Chunks, int], None] | None = None,
    report: progress.Report = progress.silent,
    offset: int = 0,
    fetch: Callable[[Any], Any] | None = None,
) -> Chunks:
    """Runs epochs ``epoch .. n_epochs - 1``.

    Args:
      chunk: ``chunk(n) -> jitted fn(state, *args, first_epoch) -> (state,
        history)`` running ``n`` epochs (one compilation per distinct ``n``).
      args: the data arguments of the chunk function (keys, train, valid).
      done: the state and history so far (a fresh start or a checkpoint).
      epoch: epochs of the main phase already done.
      log_every: epochs between progress lines (and at the end).
      checkpoint_every: epochs between ``save`` calls (and at the end); 0: with
        every progress line.
      check: raises if the state holds a non-finite run.
      save: ``save(chunks, epoch)`` writes a checkpoint.
      report: where progress lines go (``progress.to_stderr``, or silent).
      offset: epochs of pre-training before this phase, for the lines' budget.
      fetch: applied to each chunk's history (e.g. gathering it to the host from
        every process); None keeps it as the chunk returns it.
    """
    compiled: dict[int, Any] = {}
    checkpoint_every = checkpoint_every or log_every
    stops = (log_every, checkpoint_every if save is not None else 0)
    saved_at = epoch if save is not None and epoch else None  # a resumed checkpoint
    try:
        while epoch < n_epochs:
            n = _next_stop(epoch, n_epochs, stops) - epoch
            first = jnp.asarray(epoch, jnp.int32)
            t0 = time.perf_counter()
            if n not in compiled:
                compiled[n] = chunk(n).lower(done.state, *args, first).compile()
                done = done._replace(compile_s=done.compile_s + time.perf_counter() - t0)
            t0 = time.perf_counter()
            state, history = compiled[n](done.state, *args, first)
            jax.block_until_ready(state)
            if fetch is not None:
                history = fetch(history)
            check(state)
            done = Chunks(state, done.histories + [history], done.firsts + [epoch],
                          done.compile_s, done.run_s + time.perf_counter() - t0,
                          done.steps + n * steps_per_epoch)
            epoch += n
            last = epoch == n_epochs
            if save is not None and (last or epoch % checkpoint_every == 0):
                save(done, epoch)
                saved_at = epoch
            if last or epoch % log_every == 0:
                rate = done.steps / done.run_s if done.run_s > 0 else float("nan")
                eta = (n_epochs - epoch) * steps_per_epoch / rate if rate > 0 else float("nan")
                report(progress_line(tag, epoch, n_epochs, offset, rate, eta, history))
    except KeyboardInterrupt:
        if save is None:
            kept = "no checkpoint was written (pass checkpoint= to resume)"
        elif saved_at is None:
            kept = "no checkpoint was written yet"
        else:
            kept = f"the checkpoint of {epoch_text(saved_at, n_epochs, offset)} is kept"
        raise Interrupted(f"{tag} interrupted after {epoch_text(epoch, n_epochs, offset)}; "
                          f"{kept}") from None
    return done
