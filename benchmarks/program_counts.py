"""Programs compiled per table, before and after grids moved onto the run axis.

    python benchmarks/program_counts.py [--out=benchmarks/results/program_counts.json]

Counts, for (a) the pinball tau grid (``pinball_tuned``: a 7-tau grid, then a
7-tau zoom around the best) and (b) the noise-sensitivity study (no noise, 10
fixed stds, the decay), the training programs built (``make_program`` calls), the
trainers' XLA compilations (``jit(start)`` + ``jit(epochs)``,
``l2n_jax.compiles``) and every XLA compilation of the run. "Before" is what one
program per value gives: ``methods.tuned`` over ``trained(pinball(tau))`` for each
grid, and one ``train_sites`` per noise setting (the study's old loop); "after" is
``tuned_loss`` and ``studies.noise_sensitivity`` (``fit_grid_sites``). A tiny
synthetic task (2 epochs, 1 of them MSE pre-training, tiny networks), one site,
two seeds: the counts do not depend on the budget.
"""

import importlib
import importlib.metadata
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import l2n_jax as l2n  # noqa: E402
from l2n_jax import combinators, compiles, losses, methods, studies  # noqa: E402

fit_lib = importlib.import_module("l2n_jax.fit")  # the module, not l2n.fit
OUT = pathlib.Path(__file__).resolve().parent / "results" / "program_counts.json"
CONFIG = l2n.Config(epochs=2, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                    assembler=(8,), shaper_hidden=(16, 16), log_every=1)


def _metric(decision, obs):
    x = decision - obs  # under-provisioning 4x dearer than over-provisioning
    return jnp.sum(4.0 * jnp.maximum(-x, 0.0) + jnp.maximum(x, 0.0))


def _task() -> methods.Task:
    t = np.arange(400)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"load": np.sin(2 * np.pi * t / 24) + 0.3 * rng.normal(size=400)})
    ws = l2n.make_windows(frame, ["load"], lookback=8)
    return methods.Task(CONFIG, {"s": ws}, _metric, (0, 1), verbose=False)


def _counted(run):
    """{programs built, trainer compilations, all XLA compilations, seconds}."""
    built = []
    real = fit_lib.make_program
    fit_lib.make_program = lambda *a, **k: built.append(1) or real(*a, **k)
    t0 = time.perf_counter()
    try:
        with compiles.counting() as seen:
            run()
    finally:
        fit_lib.make_program = real
    return {"programs_built": len(built), "training_compiles": compiles.training_programs(seen),
            "all_compiles": sum(seen.values()), "seconds": round(time.perf_counter() - t0, 1)}


def _pinball_per_tau(task):
    """Before: the 7-tau grid and its zoom, one program per tau."""
    taus = methods.PINBALL_TAUS
    per_tau = lambda grid: combinators.tuned(grid, lambda tau: methods.trained(
        losses.pinball(tau)), "tau")(task)
    best = per_tau(taus)["s"].knob[0]
    per_tau(combinators.zoom_logit(float(best), taus))


def _noise_per_setting(task):
    """Before: the study's old loop, one program per noise setting."""
    for _, _, changes in studies.noise_settings():
        methods.train_sites(task.config.replace(**changes), task.sites, task.seeds, "",
                            None, metric=task.metric, verbose=False)


def main(argv):
    args = dict(a.lstrip("-").split("=", 1) for a in argv)
    out = pathlib.Path(args.get("out", OUT))
    task = _task()
    ws = task.sites
    tables = {
        "pinball_tau_grid": {
            "before": _counted(lambda: _pinball_per_tau(task)),
            "after": _counted(lambda: methods.run("pinball_tuned", task)),
        },
        "noise_sensitivity": {
            "before": _counted(lambda: _noise_per_setting(task)),
            "after": _counted(lambda: studies.noise_sensitivity(
                CONFIG, ws, _metric, task.seeds)),
        },
    }
    for name, t in tables.items():
        print(f"{name}: " + ", ".join(
            f"{when} {c['programs_built']} programs ({c['training_compiles']} trainer "
            f"compilations, {c['all_compiles']} XLA compilations in all, {c['seconds']} s)"
            for when, c in t.items()), flush=True)
    meta = {"command": "python benchmarks/program_counts.py " + " ".join(argv),
            "jax": importlib.metadata.version("jax"), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "tables": tables}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
