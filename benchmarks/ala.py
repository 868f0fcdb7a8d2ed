"""Adaptive Loss Alignment (``l2n_jax.ala``) on the use cases, beside the committed
tables of Loss2Net and the tuned baselines (same data, split, seeds and budget).

    python benchmarks/ala.py --usecase=netalloc              # 3 sites, 5 seeds
    python benchmarks/ala.py --usecase=power --sites=PJME
    python benchmarks/ala.py --usecase=netalloc --variants=ala,ala_sign,ala_n1

Variants (each registered as a method, run through ``methods.run``):

* ``ala``: the default ``ALAConfig`` (N = 4 children, sibling reward);
* ``ala_sign``: N = 4 with the paper's reward (sign of the improvement of the
  discounted validation cost, moving-average baseline only);
* ``ala_n1``: the paper's single learner (N = 1, sign reward): what N buys.

Writes ``<out>/<usecase>.csv`` (one row per site x variant x seed: test cost of the
delivered child, mean test cost over all its children, its validation cost, tau,
wall time) and ``<out>/results.md`` (every use case run so far, with the committed
rows of ``benchmarks/results/<usecase>/results.csv`` beside).
"""

import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags
from l2n_jax.usecases import REGISTRY

from l2n_jax import ala, methods

_USECASE = flags.DEFINE_enum("usecase", "netalloc", ["netalloc", "power", "toy"],
                             "Use case.")
_SITES = flags.DEFINE_list("sites", None, "Sites (default: netalloc/toy all, power PJME).")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0..n-1.", lower_bound=1)
_VARIANTS = flags.DEFINE_list("variants", ["ala"], "ala, ala_sign, ala_n1.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/ala", "Output directory.")
_COMMITTED = ("loss2net", "pinball_tuned", "mse_margin", "alpha_omc", "ar_margin")

VARIANTS = {
    "ala": ala.ALAConfig(),
    "ala_sign": ala.ALAConfig(reward="sign"),
    "ala_n1": ala.ALAConfig(children=1, reward="sign"),
}


def _extra_columns(run, task):
    """Per row: the mean test cost over every child, the delivered child's
    validation cost."""
    child_mean, valid = {}, {}
    for site, fit in run.fits.items():
        ws = task.sites[site]
        scorer = ala._child_scorer(fit.config, fit.shapes.input_shape,
                                   fit.shapes.decision_dim, task.metric)
        test = np.asarray(scorer(fit.params["children"], jnp.asarray(ws.test.inputs),
                                 jnp.asarray(ws.test.obs)))
        child_mean[site] = test.mean(axis=1)
        costs = np.asarray(fit.params["child_valid_cost"])
        valid[site] = costs[np.arange(len(costs)), fit.params["child"]]
    df = run.rows
    df["child_mean_test_cost"] = np.concatenate([child_mean[s] for s in df["site"].unique()])
    df["valid_cost"] = np.concatenate([valid[s] for s in df["site"].unique()])
    return df


def _run_variant(uc, name, sites, seeds):
    methods.register(name, ala.method(VARIANTS[name], name), replace=True)
    config, metric = uc.get_config(), uc.make_metric()
    groups = [tuple(sites)] if uc.batch_sites else [(s,) for s in sites]
    frames = []
    for group in groups:
        task = methods.Task(config, {s: uc.load(s) for s in group}, metric, seeds,
                            uc.options(), label=f"{uc.name}/{name}")
        run = methods.run(name, task)
        frames.append(_extra_columns(run, task))
    return pd.concat(frames, ignore_index=True)


def _committed(usecase, sites):
    path = pathlib.Path("benchmarks/results") / usecase / "results.csv"
    if not path.exists():
        return pd.DataFrame()
    df = pd.read_csv(path)
    df = df[df["site"].isin(sites) & df["method"].isin(_COMMITTED)].copy()
    df["source"] = f"committed ({path})"
    return df


def _table(df):
    lines = ["| site | method | test cost (mean ± std) | median | children's mean test "
             "cost | valid cost | knob (ALA: tau) | wall s | source |", "|---|---|---|---|---|---|---|---|---|"]
    for (site, method), b in df.groupby(["site", "method"], sort=False):
        def cell(col, fmt="{:.5f}", b=b):
            return fmt.format(b[col].mean()) if col in b and b[col].notna().any() else "—"
        lines.append(
            f"| {site} | {method} | {b['test_cost'].mean():.5f} ± {b['test_cost'].std():.5f}"
            f" | {b['test_cost'].median():.5f} | {cell('child_mean_test_cost')} | "
            f"{cell('valid_cost')} | {cell('knob', '{:.3f}')} | {cell('train_s', '{:.0f}')}"
            f" | {b['source'].iloc[0]} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    uc = REGISTRY[_USECASE.value]
    sites = _SITES.value or {"power": ["PJME"]}.get(uc.name, list(uc.sites))
    seeds = tuple(range(_SEEDS.value))
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    frames, t0 = [], time.perf_counter()
    for name in _VARIANTS.value:
        if name not in VARIANTS:
            raise app.UsageError(f"--variants: unknown {name!r}; known: {list(VARIANTS)}")
        df = _run_variant(uc, name, sites, seeds).rename(columns={"cost": "test_cost"})
        df["source"] = "this run"
        frames.append(df)
    ours = pd.concat(frames, ignore_index=True)
    ours.insert(0, "usecase", uc.name)
    ours.to_csv(out / f"{uc.name}.csv", index=False)
    both = pd.concat([ours, _committed(uc.name, sites)], ignore_index=True)
    order = {s: i for i, s in enumerate(sites)}
    both = both.sort_values("site", key=lambda s: s.map(order), kind="stable")
    section = (f"## {uc.name}\n\nCommand: `python benchmarks/ala.py "
               f"{' '.join(sys.argv[1:])}`; seeds 0..{len(seeds) - 1}; budget "
               f"`usecases/{uc.name}.get_config()` for every method; wall time of this "
               f"run {time.perf_counter() - t0:.0f} s on {jax.devices()[0].platform} "
               f"({os.cpu_count()} cores).\n\n" + _table(both))
    (out / f"{uc.name}.md").write_text(section)
    parts = [p.read_text() for p in sorted(out.glob("*.md")) if p.name != "results.md"]
    (out / "results.md").write_text(
        "# Adaptive Loss Alignment beside the committed tables\n\n" + __doc__.split(
            "\n\n")[0] + "\n\n" + "\n".join(parts))
    print(section)


if __name__ == "__main__":
    app.run(main)
