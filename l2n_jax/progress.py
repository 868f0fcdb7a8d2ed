"""Progress lines for people: what is training, how far it is, how long is left.

``l2n.fit`` and friends print one line per chunk of epochs to stderr by default
(``verbose=False`` silences them); ``l2n_train`` prints the same lines plus a
whole-run view. A line is plain text, so it reads the same in a terminal, a log
file or a notebook::

    [netalloc/eu/loss2net] epoch 20/60 (co-training 10/50) | 1,950 steps/s | ETA 9 s | train_cost 0.0463 valid_cost 0.0470
"""

import sys
import time
from typing import Callable

Report = Callable[[str], None]


_MUTED = False


def to_stderr(text: str) -> None:
    """Writes one progress line to stderr (nothing once ``mute`` was called)."""
    if not _MUTED:
        print(text, file=sys.stderr, flush=True)


def mute() -> None:
    """Silences ``to_stderr`` for the rest of the process (a multi-process run's
    other processes: the main one prints the lines)."""
    global _MUTED
    _MUTED = True


def silent(text: str) -> None:
    del text


def reporter(verbose: bool) -> Report:
    return to_stderr if verbose else silent


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds != seconds:  # nan
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Overall:
    """The whole-run view of a table: 'k of N' and an ETA from the pace so far."""

    def __init__(self, total: int, report: Report = to_stderr):
        self.total, self.done, self.report = total, 0, report
        self.t0 = time.perf_counter()

    def start(self, what: str) -> None:
        elapsed = time.perf_counter() - self.t0
        eta = (elapsed / self.done * (self.total - self.done) if self.done
               else float("nan"))
        self.report(f"== {self.done + 1} of {self.total}: {what} "
                    f"(elapsed {duration(elapsed)}, ETA {duration(eta)})")

    def finish(self) -> None:
        self.done += 1
