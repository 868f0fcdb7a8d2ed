"""The TaskMet/LODL cubic top-1 problem: MSE, DFL and TaskMet over seeds.

    python benchmarks/cubic.py --seeds=5                 # the authors' settings
    python benchmarks/cubic.py --quick --out=/tmp/cubic  # a tiny smoke run

Every method trains all its seeds in one jitted, vmapped program
(``l2n_jax.usecases.cubic.run``); compile time (AOT ``lower().compile()``) is
measured apart from run time. Writes, under ``--out``: ``cubic.csv`` (one row per
method x seed), ``results.md`` (mean +- std test DQ beside the authors' PyTorch
numbers, per-seed values, timings, the learned metric at a few x), ``metric.png``
(Lambda(x) on [-1, 1] per seed, and the kept predictors) and ``timing.json``.
"""

import dataclasses
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags, logging

from l2n_jax.usecases import cubic

_SEEDS = flags.DEFINE_integer("seeds", 5, "Number of seeds (0..seeds-1).")
_METHODS = flags.DEFINE_list("methods", list(cubic.METHODS), "Methods to run.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/cubic", "Output folder.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes (a smoke run, not a result).")

# Measured with the authors' PyTorch code (3 seeds, 2 CPU cores), test DQ.
AUTHORS = {"mse": (-0.961, 0.021), "dfl": (0.959, 0.003), "taskmet": (0.958, 0.003)}
AUTHORS_TASKMET_S = (150.0, 300.0)  # 2.5-5 minutes per TaskMet run, one seed at a time
XS = (-1.0, -0.4, 0.0, 0.5, 1.0)


def _config() -> cubic.CubicConfig:
    cfg = cubic.CubicConfig()
    if _QUICK.value:
        cfg = dataclasses.replace(
            cfg,
            n_items=10,
            n_train=60,
            n_valid=20,
            n_test=40,
            sinkhorn_iters=50,
            batch=10,
            max_iters=60,
            inner_init_steps=50,
            inner_steps=10,
            metric_hidden=32,
        )
    return cfg


def _rows(res: cubic.Result) -> list[dict]:
    theta = res.kept["theta"]
    return [
        {
            "method": res.method,
            "seed": s,
            "test_dq": float(res.test_dq[i]),
            "valid_dq": float(res.valid_dq[i]),
            "valid_loss": float(res.valid_loss[i]),
            "best_iter": int(res.best_iter[i]),
            "stop_iter": int(res.stop_iter[i]),
            "diverged": bool(res.diverged[i]),
            "w": float(theta["w"][i]),
            "b": float(theta["b"][i]),
        }
        for i, s in enumerate(res.seeds)
    ]


def _plot(results: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib missing (pip install -e .[plot]): no figure")
        return
    xs = np.linspace(-1.0, 1.0, 201)
    fig, (ax_pred, ax_metric) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, height_ratios=[1.4, 1]
    )
    ax_pred.plot(xs, cubic.utility(xs), "k", label="utility y(x)")
    for res, color in zip(results.values(), ("C0", "C1", "C2")):
        for i in range(len(res.seeds)):
            w, b = res.kept["theta"]["w"][i], res.kept["theta"]["b"][i]
            ax_pred.plot(
                xs,
                w * xs + b,
                color=color,
                alpha=0.6,
                label=res.method if i == 0 else None,
            )
    ax_pred.set_ylabel("prediction")
    ax_pred.legend(fontsize=8)
    ax_pred.set_title("Kept predictors and the learned TaskMet metric")
    if "taskmet" in results:
        res = results["taskmet"]
        for i, lam in enumerate(cubic.metric_curve(res, xs)):
            ax_metric.plot(xs, lam, label=f"seed {res.seeds[i]}")
        ax_metric.legend(fontsize=8)
    ax_metric.set_xlabel("x")
    ax_metric.set_ylabel("Lambda(x)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(df: pd.DataFrame) -> list[str]:
    """A markdown table (no tabulate dependency)."""
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    return ["| " + " | ".join(df.columns) + " |", "|---" * len(df.columns) + "|"] + [
        "| " + " | ".join(fmt(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]


def _markdown(cfg, results: dict, df: pd.DataFrame, timing: dict) -> str:
    n_seeds = len(next(iter(results.values())).seeds)
    sizes = "QUICK (tiny) sizes" if _QUICK.value else "the authors' settings"
    lines = [
        "# cubic: MSE, DFL and TaskMet (top-1 of 50, linear predictor)",
        "",
        (
            f"{n_seeds} seeds, data seed {cfg.data_seed}, {sizes}. Test DQ = hard "
            "top-1, normalised (1 = optimal, 0 = random pick)."
        ),
        "",
        "| method | test DQ (ours) | authors' PyTorch (3 seeds) | compile s | run s "
        + "| s / seed |",
        "|---|---|---|---|---|---|",
    ]
    for m, res in results.items():
        a = AUTHORS.get(m)
        t = timing["methods"][m]
        std = res.test_dq.std(ddof=1) if len(res.seeds) > 1 else 0.0
        lines.append(
            f"| {m} | {res.test_dq.mean():.3f} ± {std:.3f} | {a[0]:.3f} ± "
            f"{a[1]:.3f} | {t['compile_s']:.1f} | {t['run_s']:.1f} "
            f"| {t['run_s_per_seed']:.1f} |"
        )
    lines += [
        "",
        "Authors' TaskMet: 150-300 s per seed, one seed at a time. Timings here "
        + "share 2 CPU cores with other jobs (inflated).",
        "",
        "## Per seed",
        "",
        *_table(df),
        "",
    ]
    if "taskmet" in results:
        lam = cubic.metric_curve(results["taskmet"], np.array(XS))
        lines += [
            "## Learned metric Lambda(x) (TaskMet, kept parameters)",
            "",
            "| seed | " + " | ".join(f"x={x:g}" for x in XS) + " |",
            "|---" * (len(XS) + 1) + "|",
        ]
        for s, row in zip(results["taskmet"].seeds, lam):
            lines.append(f"| {s} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = set(_METHODS.value) - set(cubic.METHODS)
    if unknown:
        raise app.UsageError(
            f"unknown --methods {sorted(unknown)}; choose from {cubic.METHODS}"
        )
    cfg = _config()
    data = cubic.make_data(cfg)
    seeds = tuple(range(_SEEDS.value))
    results, timing = (
        {},
        {
            "backend": jax.default_backend(),
            "devices": len(jax.devices()),
            "cpu_count": os.cpu_count(),
            "machine": platform.processor(),
            "jax": jax.__version__,
            "seeds": len(seeds),
            "quick": _QUICK.value,
            "note": "2 CPU cores shared with other jobs: inflated",
            "methods": {},
        },
    )
    for m in _METHODS.value:
        res = cubic.run(m, seeds, cfg, data)
        results[m] = res
        timing["methods"][m] = {
            "compile_s": res.compile_s,
            "run_s": res.run_s,
            "run_s_per_seed": res.run_s / len(seeds),
            "mean_stop_iter": float(res.stop_iter.mean()),
        }
        logging.info(
            "%s: test DQ %s, compile %.1f s, run %.1f s",
            m,
            np.round(res.test_dq, 4),
            res.compile_s,
            res.run_s,
        )
    if "taskmet" in results:
        per_seed = timing["methods"]["taskmet"]["run_s_per_seed"]
        timing["taskmet_speedup_vs_authors"] = [a / per_seed for a in AUTHORS_TASKMET_S]
        timing["taskmet_metric_at"] = {
            str(x): col.tolist()
            for x, col in zip(
                XS, cubic.metric_curve(results["taskmet"], jnp.array(XS)).T
            )
        }
    os.makedirs(_OUT.value, exist_ok=True)
    df = pd.DataFrame([r for res in results.values() for r in _rows(res)])
    df.to_csv(os.path.join(_OUT.value, "cubic.csv"), index=False)
    with open(os.path.join(_OUT.value, "timing.json"), "w") as f:
        json.dump(timing, f, indent=2)
    with open(os.path.join(_OUT.value, "results.md"), "w") as f:
        f.write(_markdown(cfg, results, df, timing))
    _plot(results, os.path.join(_OUT.value, "metric.png"))
    with open(os.path.join(_OUT.value, "results.md")) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
