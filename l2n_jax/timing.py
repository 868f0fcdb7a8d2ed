"""The ``timing.json`` that ``l2n_train`` writes beside its results: one entry per
site group x method (wall seconds, XLA compilations and their seconds, counted by
``l2n_jax.compiles``; a persistent-cache hit counts as one), which
``benchmarks/scaling.py`` reads.
"""

import json

import jax

from l2n_jax.compiles import Total


def entry(method: str, sites, wall_s: float, spent: Total) -> dict:
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
