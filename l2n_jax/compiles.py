"""Counting XLA compilations: how many programs a table or a study compiles.

JAX reports every XLA compilation (``jax.monitoring``'s
``/jax/core/compile/backend_compile_duration`` event, with the jitted function's
name), a persistent-cache hit included, and none for a call that reuses a program
already compiled in this process. ``counting()`` collects them::

    with l2n_jax.compiles.counting() as seen:
        l2n.fit(...)
    training_programs(seen)  # 2: jit(start) and jit(epochs) (one chunk length)

A trainer's programs are ``jit(start)`` (init and pre-training) and one
``jit(epochs)`` per chunk length (``driver.vectorised``); every other name is a small
host-side program (an eager op, a prediction, a score).
"""

import collections
import contextlib
from typing import NamedTuple

import jax

EVENT = "/jax/core/compile/backend_compile_duration"
TRAINING = ("jit(start)", "jit(epochs)")

_active: list = []  # the Counters of the ``counting`` blocks now open
_total = {"count": 0, "seconds": 0.0}  # since this module was imported


def _listen(event, duration, **kwargs):
    if event == EVENT:
        _total["count"] += 1
        _total["seconds"] += duration
        for seen in _active:
            seen[kwargs.get("fun_name", "?")] += 1


# Registered once: jax.monitoring has no public way to remove a listener.
jax.monitoring.register_event_duration_secs_listener(_listen)


@contextlib.contextmanager
def counting():
    """A ``collections.Counter`` {jitted function name: compilations} of the block."""
    seen = collections.Counter()
    _active.append(seen)
    try:
        yield seen
    finally:
        _active.remove(seen)


class Total(NamedTuple):
    """Compilations and their seconds since l2n_jax was imported (``total()``)."""

    count: int
    seconds: float

    def __sub__(self, other: "Total") -> "Total":
        return Total(self.count - other.count, self.seconds - other.seconds)


def total() -> Total:
    return Total(_total["count"], _total["seconds"])


def training_programs(seen) -> int:
    """Compilations of trainers' programs among ``seen`` (``counting``'s Counter)."""
    return sum(n for name, n in seen.items() if name in TRAINING)
