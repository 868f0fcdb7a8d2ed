"""Where a run's time goes: XLA compilations counted and timed as they happen
(``jax.monitoring``), and the ``timing.json`` that ``l2n_train`` writes beside its
results (one entry per site group x method: wall seconds, compilations, compile
seconds), which ``benchmarks/scaling.py`` reads.
"""

import json
import threading
from typing import NamedTuple

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"  # one per XLA compilation
_LOCK = threading.Lock()
_TOTAL = {"count": 0, "seconds": 0.0, "listening": False}


class Compiles(NamedTuple):
    """XLA compilations since the process started listening (``compiles()``)."""

    count: int
    seconds: float

    def __sub__(self, other: "Compiles") -> "Compiles":
        return Compiles(self.count - other.count, self.seconds - other.seconds)


def _listen(event: str, seconds: float, **_) -> None:
    if event == _EVENT:
        with _LOCK:
            _TOTAL["count"] += 1
            _TOTAL["seconds"] += seconds


def compiles() -> Compiles:
    """Compilations so far; the first call starts counting (a program loaded from the
    persistent compilation cache is not a compilation)."""
    with _LOCK:
        if not _TOTAL["listening"]:
            jax.monitoring.register_event_duration_secs_listener(_listen)
            _TOTAL["listening"] = True
        return Compiles(_TOTAL["count"], _TOTAL["seconds"])


def entry(method: str, sites, wall_s: float, spent: Compiles) -> dict:
    """One timing.json row."""
    return {"method": method, "sites": list(sites), "wall_s": round(wall_s, 3),
            "xla_compiles": spent.count, "compile_s": round(spent.seconds, 3)}


def write(path, entries: list[dict]) -> None:
    """timing.json: this invocation's rows, their totals and where they ran."""
    total = {k: round(sum(e[k] for e in entries), 3)
             for k in ("wall_s", "xla_compiles", "compile_s")}
    blob = {"processes": jax.process_count(), "devices": jax.device_count(),
            "platform": jax.devices()[0].platform, "total": total, "entries": entries}
    path.write_text(json.dumps(blob, indent=2))
