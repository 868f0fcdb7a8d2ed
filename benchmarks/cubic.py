"""The TaskMet/LODL cubic top-1 problem: MSE, DFL, TaskMet and Loss2Net over seeds.

    python benchmarks/cubic.py --seeds=5                 # the authors' settings
    python benchmarks/cubic.py --quick --out=/tmp/cubic  # a tiny smoke run

Every method trains all its seeds in one jitted, vmapped program
(``l2n_jax.usecases.cubic.run``); compile time (AOT ``lower().compile()``) is
measured apart from run time. Writes, under ``--out``: ``cubic.csv`` (one row per
method x seed), ``results.md`` (mean +- std test DQ beside the authors' PyTorch
numbers, per-seed values, timings, the learned metric at a few x), ``metric.png``
(Lambda(x) on [-1, 1] per seed, and the kept predictors) and ``timing.json``.

With ``loss2net`` among the methods, ``loss2net_from_mse`` runs too: the same
method started from ``L2N_PRETRAIN`` MSE iterations (every seed at the negative
least-squares slope), because a seed whose random init already has w > 0 is at the
best DQ at iteration 0 and Loss2Net selects on the validation DQ.
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

from l2n_jax.runs import seed_keys
from l2n_jax.usecases import cubic

_SEEDS = flags.DEFINE_integer("seeds", 5, "Number of seeds (0..seeds-1).")
_METHODS = flags.DEFINE_list("methods", list(cubic.METHODS), "Methods to run.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/cubic", "Output folder.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes (a smoke run, not a result).")

# Measured with the authors' PyTorch code (3 seeds, 2 CPU cores), test DQ.
AUTHORS = {"mse": (-0.961, 0.021), "dfl": (0.959, 0.003), "taskmet": (0.958, 0.003)}
AUTHORS_TASKMET_S = (150.0, 300.0)  # 2.5-5 minutes per TaskMet run, one seed at a time
XS = (-1.0, -0.4, 0.0, 0.5, 1.0)
L2N_PRETRAIN = 200  # MSE iterations before loss2net_from_mse's co-training


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


def _l2n_pretrain() -> int:
    return 20 if _QUICK.value else L2N_PRETRAIN


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
    for res, color in zip(results.values(), ("C0", "C1", "C2", "C3", "C4")):
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
        "# cubic: MSE, DFL, TaskMet and Loss2Net (top-1 of 50, linear predictor)",
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
        authors = f"{a[0]:.3f} ± {a[1]:.3f}" if a else "-"
        t = timing["methods"][m]
        std = res.test_dq.std(ddof=1) if len(res.seeds) > 1 else 0.0
        lines.append(
            f"| {m} | {res.test_dq.mean():.3f} ± {std:.3f} | {authors} "
            f"| {t['compile_s']:.1f} | {t['run_s']:.1f} | {t['run_s_per_seed']:.1f} |"
        )
    lines += [
        "",
        "Authors' TaskMet: 150-300 s per seed, one seed at a time. Timings here "
        + "share 2 CPU cores with other jobs (inflated).",
        "",
        "## Per seed",
        "",
        "(Loss2Net's `valid_loss` is minus its validation DQ, its selection criterion.)",
        "",
        *_table(df),
        "",
    ]
    l2n = [m for m in results if m.startswith("loss2net")]
    if l2n:
        seeds = results[l2n[0]].seeds
        w0 = [float(cubic.init_predictor(jax.random.split(k)[0])["w"])
              for k in seed_keys(seeds)]
        lines += [
            "## Loss2Net: did the slope turn positive?",
            "",
            (
                "Hard top-1 DQ depends only on sign(w). `w_init`: the random init "
                "(the same as MSE's and DFL's for that seed); loss2net_from_mse "
                f"starts every seed after {_l2n_pretrain()} MSE iterations (w < 0). "
                "A seed with w_init > 0 is at the best validation DQ at iteration 0 "
                "(best_iter 0): it says nothing about Loss2Net."
            ),
            "",
            "| seed | w_init | " + " | ".join(f"{m} kept w | best_iter" for m in l2n)
            + " |",
            "|---" * (2 + 2 * len(l2n)) + "|",
        ]
        for i, s in enumerate(seeds):
            cells = [f"{results[m].kept['theta']['w'][i]:.3f} | "
                     f"{results[m].best_iter[i]}" for m in l2n]
            lines.append(f"| {s} | {w0[i]:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
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
    runs = [(m, m, cfg) for m in _METHODS.value]
    if "loss2net" in _METHODS.value:
        runs.append(("loss2net_from_mse", "loss2net",
                     dataclasses.replace(cfg, l2n_pretrain=_l2n_pretrain())))
    for m, method, run_cfg in runs:
        res = cubic.run(method, seeds, run_cfg, data)._replace(method=m)
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
