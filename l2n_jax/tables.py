"""Comparison tables: ``l2n.compare`` runs Loss2Net and the tuned baselines on a
user's data and metric; ``summary_table`` / ``plot_costs`` show tidy rows (one per
site x method x seed) as Markdown and as a figure.

Every method gets the same predictor architecture, data split, batch size, epochs
and seeds; the baselines' knobs (pinball tau, margins) are tuned on the validation
split with the true metric, as Loss2Net's epoch selection is.
"""

from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from l2n_jax import registry
from l2n_jax.config import Config
from l2n_jax.data import WindowSet

# What a practitioner would try instead of Loss2Net, each tuned on validation.
BASELINES = ("pinball_tuned", "mse_margin", "ar_margin", "persistence_margin", "mse")
DIVERGED = 5.0  # a seed costing this many times its method's median on the site


class Comparison(NamedTuple):
    """What ``compare`` returns.

    Attributes:
      rows: one row per site x method x seed: site, seed, method, test_cost,
        rmse, mae, under_rate, forecast_rmse, knob (tau, margin), train_s.
      fits: {method: {site: FitResult}} of the trained methods.
    """

    rows: pd.DataFrame
    fits: dict

    def markdown(self) -> str:
        return summary_table(self.rows)

    def __str__(self) -> str:
        return self.markdown()


def compare(data: WindowSet | Mapping[str, WindowSet], metric, *,
            config: Config | None = None, seeds: Sequence[int] = (0, 1, 2),
            methods: Sequence[str] | None = None,
            options: registry.Options | None = None, checkpoint_dir: str | None = None,
            verbose: bool = True) -> Comparison:
    """Loss2Net and the baselines a practitioner would tune, on ``data`` and
    ``metric``, at the same budget: the table to decide with.

    Args:
      data: a ``WindowSet`` (``make_windows``), or {site: WindowSet}.
      metric: the true per-sample metric (or a ``StatefulMetric``).
      config: the budget and architecture every network method gets (default
        ``Config()``).
      seeds: one run per seed, for every method.
      methods: registered method names (default: Loss2Net, then ``BASELINES``:
        pinball with tau tuned on validation (a grid, then a finer one around the
        best), MSE / linear AR / persistence + a margin tuned on validation, MSE).
      options: use-case facts (``l2n.methods.Options``: e.g. ``alpha`` adds
        nothing by itself; ask for 'alpha_omc' in ``methods``).
      checkpoint_dir: every training checkpoints there and resumes from it.
      verbose: progress lines on stderr.
    """
    sites = dict(data) if isinstance(data, Mapping) else {"data": data}
    chosen = tuple(methods or ("loss2net",) + BASELINES)
    for name in chosen:
        registry.get(name)  # an unknown name fails before any training
    task = registry.Task(config or Config(), sites, metric, tuple(seeds),
                         options or registry.Options(), "", checkpoint_dir,
                         registry.FitCache(), verbose)
    frames, fits = [], {}
    for name in chosen:
        run = registry.run(name, task)
        frames.append(run.rows.rename(columns={"cost": "test_cost"}))
        fits[name] = run.fits
    return Comparison(pd.concat(frames, ignore_index=True), fits)


def flag_diverged(df: pd.DataFrame) -> pd.Series:
    """True where a seed costs more than ``DIVERGED`` x its method's median on the
    site (with at least 3 seeds): one such seed makes a mean meaningless."""
    median = df.groupby(["site", "method"])["test_cost"].transform("median")
    count = df.groupby(["site", "method"])["test_cost"].transform("count")
    return (count >= 3) & (df["test_cost"] > DIVERGED * median.abs())


LEGEND = (
    "Test cost: the true metric on the test split (lower is better), mean ± std and "
    "median over seeds. × {ref}: a method's median cost over {ref}'s on the same site "
    "(medians, so that one diverged seed does not hide the rest). Forecast RMSE: of the "
    "forecaster before any margin, in scaled units. Under-provision rate: share of "
    "test decisions below the realised demand. Seeds: how many, and how many diverged "
    f"(cost > {DIVERGED:g}× their method's median on the site).\n"
)


def summary_table(df: pd.DataFrame, reference: str = "loss2net") -> str:
    """Markdown: test cost mean ± std and median, the ratio to ``reference`` (or,
    where it did not run, the first method), forecast RMSE, under-provision rate and
    diverged seeds, per site x method; then the legend."""
    df = df.assign(diverged=flag_diverged(df))
    stats = df.groupby(["site", "method"], sort=False).agg(
        mean=("test_cost", "mean"), std=("test_cost", "std"),
        median=("test_cost", "median"), rmse=("forecast_rmse", "mean"),
        under=("under_rate", "mean"), n=("seed", "count"), bad=("diverged", "sum"),
    ).reset_index()
    ref = reference if (stats["method"] == reference).any() else stats["method"].iloc[0]
    lines = [f"| site | method | test cost (mean ± std) | median | × {ref} | forecast "
             "RMSE | under-provision rate | seeds (diverged) |",
             "|---|---|---|---|---|---|---|---|"]
    for site, block in stats.groupby("site", sort=False):
        base = block.loc[block["method"] == ref, "median"]
        base = float(base.iloc[0]) if len(base) else float("nan")
        for _, r in block.iterrows():
            std = 0.0 if np.isnan(r["std"]) else r["std"]
            ratio = "—" if np.isnan(base) else f"{r['median'] / base:.2f}"
            bad = f" ({int(r['bad'])} diverged)" if r["bad"] else ""
            lines.append(
                f"| {site} | {r['method']} | {r['mean']:.5f} ± {std:.5f} | "
                f"{r['median']:.5f} | {ratio} | {r['rmse']:.5f} | {r['under']:.3f} | "
                f"{r['n']}{bad} |")
    return "\n".join(lines) + "\n\n" + LEGEND.format(ref=ref)


def plot_costs(df: pd.DataFrame, path, title: str = "") -> bool:
    """Test cost per method per site, seeds as points (log scale when the costs span
    more than a factor 20); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sites = list(dict.fromkeys(df["site"]))
    methods = list(dict.fromkeys(df["method"]))
    fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 0.45 * len(methods)
                                                     + 1.6), squeeze=False, sharey=True)
    for ax, site in zip(axes[0], sites):
        block = df[df["site"] == site]
        for i, m in enumerate(methods):
            c = block.loc[block["method"] == m, "test_cost"].to_numpy()
            ax.scatter(c, np.full(len(c), i), s=18, alpha=0.7)
            if len(c):
                ax.plot([np.median(c)] * 2, [i - 0.3, i + 0.3], color="black", lw=1.5)
        positive = block["test_cost"][block["test_cost"] > 0]
        if len(positive) and positive.max() > 20 * positive.min():
            ax.set_xscale("log")
        ax.set_title(site)
        ax.set_xlabel("test cost (lower is better)")
        ax.set_yticks(range(len(methods)), methods)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    fig.suptitle(title or "test cost per method (points: seeds; bar: median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
