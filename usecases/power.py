"""``power``: power-grid provisioning with a recursive outage cost (paper section 4.2).

Every hour a grid operator provisions ``y_hat`` for the next hour's load ``y`` (PJM
hourly load, one site per region). Over-provisioning costs ``gamma`` per unit of
excess; an under-provision (an outage) costs ``beta``, plus the previous hour's
cost if that hour was an outage too (equation (6) of the MetaLoss paper)::

    M_t = (beta + M_{t-1} * 1[y_hat_{t-1} < y_{t-1}]) * 1[y_hat_t < y_t]
          + gamma * (y_hat_t - y_t) * 1[y_hat_t >= y_t]

so the k-th consecutive outage hour costs ``k * beta`` and a run of n outages costs
``beta * n (n + 1) / 2``: long outages are punished quadratically. The metric is a
``l2n.StatefulMetric``; it reveals ``v`` = the number of consecutive outages just
before the hour, capped at ``V_CAP`` = 5 (paper), which Loss2Net's shaper sees with
the decision and the load: ``f_l(y_hat + eps, y, v)``. The learner never sees the
formula. Costs are in scaled units (MinMax of each region's training split, so the
training load spans [0, 1]): the paper's "normalised cost".

Data: ``usecases/pjm.py`` (cleaned PJM hourly load, DST gaps interpolated, duplicate
hours averaged). Every region is a site. Regions have different spans (PJM_Load ends
in 2001, NI in 2010, EKPC starts in 2013), so every site uses the LAST ``HOURS``
hours of its own series, the same number for all, and all sites x seeds train in one
vmapped program (``UseCase.batch_sites``). Split 70/10/20 in time order.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax.tables import summary_table
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from l2n_jax.methods import Options
from l2n_jax.metrics import StatefulMetric
from . import pjm
from .base import UseCase, quick_config

SITES = pjm.REGIONS  # PJME (the paper's region) first
LOOKBACK = 24  # one day of hourly load
HOURS = 2 * 8760  # the last two years of every region (the common span length)
QUICK_HOURS = 4000
BETA, GAMMA, V_CAP = 0.5, 1.0, 5
SEGMENTS = 8  # contiguous time segments per Loss2Net batch


def make_metric(beta: float = BETA, gamma: float = GAMMA, v_cap: int = V_CAP):
    """The recursive outage cost as a StatefulMetric; decision [1], obs [1] (load).

    State: (cost of the previous hour, consecutive outages up to the previous hour).
    ``v`` = [min(consecutive outages before this hour, v_cap)].
    """
    if beta <= 0 or gamma <= 0:
        raise ValueError(f"power: beta and gamma must be > 0, got {beta}, {gamma}")
    if v_cap < 1:
        raise ValueError(f"power: v_cap must be >= 1, got {v_cap}")

    def init():
        return {"cost": jnp.zeros((), jnp.float32), "run": jnp.zeros((), jnp.int32)}

    def power_outage_cost(state, decision, obs):
        x = decision[0] - obs[0]
        under = x < 0
        # The previous hour was an outage exactly when the run is non-zero.
        carried = jnp.where(state["run"] > 0, state["cost"], 0.0)
        cost = jnp.where(under, beta + carried, gamma * x)
        v = jnp.minimum(state["run"], v_cap).astype(jnp.float32)[None]
        run = jnp.where(under, state["run"] + 1, 0)
        return cost, v, {"cost": cost, "run": run}

    return StatefulMetric(init, power_outage_cost)


def reference_cost(decisions, loads, beta: float = BETA, gamma: float = GAMMA,
                   v_cap: int = V_CAP):
    """The same metric as a plain Python loop (for tests and readers).

    Args:
      decisions, loads: sequences of floats in time order.

    Returns:
      (costs, v) as lists.
    """
    costs, vs, prev, run = [], [], 0.0, 0
    for d, y in zip(decisions, loads):
        vs.append(float(min(run, v_cap)))
        if d < y:
            prev = beta + (prev if run > 0 else 0.0)
            run += 1
        else:
            prev = gamma * (d - y)
            run = 0
        costs.append(prev)
    return costs, vs


@functools.lru_cache(maxsize=None)
def _windows(site: str, hours: int) -> WindowSet:
    if site not in SITES:
        raise ValueError(f"power: unknown site {site!r}; sites are {list(SITES)}")
    frame = pjm.read_region(site)
    if len(frame) < hours:
        raise ValueError(f"power: region {site!r} has {len(frame)} hours, fewer than {hours}")
    return make_windows(frame.iloc[-hours:], ["load"], LOOKBACK)


def load(site: str, hours: int = HOURS) -> WindowSet:
    """Scaled windows of the last ``hours`` hours of region ``site`` (lookback 24)."""
    return _windows(site, hours)


def get_config(quick: bool = False) -> Config:
    """Budget for 2 CPU cores (12 regions x 5 seeds in under 30 minutes): fast MLP IR
    (not the paper's LSTM, see BUILD_NOTES), the paper's SIREN (256, 256, 128)
    shaper on the error ``(y_hat + eps - y, y, v)`` (the cost is a function of the
    error and v; better than the paper's ``(y_hat + eps, y, v)`` in BUILD_NOTES'
    power ablation), 6 of the 18 epochs MSE pre-training (cheap), and a long replay
    memory (65,536 samples, ~5 epochs): the cost is stationary, and outage runs
    (v >= 1) are frequent only early in training, while the exploration noise is
    large, so a short memory forgets what high v costs. The decisions are
    pinball-trained quantiles read at a level a margin network sets through the
    shaper (``decision_head='quantile_net'``, ``Config()``'s default, issue 18):
    chosen on validation, where its mean cost over the 12 regions is 4.1% below
    the MSE forecast + margin network's (``'margin_net'``, this use case's head
    before) and 8.0% below the paper's head (``benchmarks/heads.py``, BUILD_NOTES
    18i, 18k); the hourly load is smooth, and the split keeps a quantile's
    precision while the level follows the cost."""
    if quick:
        return quick_config().replace(shaper_input="error", decision_head="quantile_net")
    return Config(
        epochs=18, pretrain_epochs=6, batch_size=64, ir_mlp=(64, 64), assembler=(64,),
        shaper_hidden=(256, 256, 128), replay_size=65536, shaper_input="error",
        decision_head="quantile_net", log_every=6,
    )


def describe(beta: float = BETA, gamma: float = GAMMA) -> str:
    return ("Every hour, provision ŷ for the next hour's PJM load y (one site per "
            f"region). An outage (ŷ < y) costs beta = {beta:g}, plus the previous hour's "
            f"cost if that hour was an outage too; over-provisioning costs gamma = "
            f"{gamma:g} per unit; scaled units (the training load spans [0, 1]).")


def options(beta: float = BETA, gamma: float = GAMMA) -> Options:
    """alpha-OMC with alpha = beta / gamma (it cannot see the recursion)."""
    return Options(alpha=beta / gamma, taus=(0.7, 0.9, 0.95, 0.99), segments=SEGMENTS)


def _stats(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby(["site", "method"], sort=False).agg(
        mean=("test_cost", "mean"), std=("test_cost", "std"), n=("seed", "count"),
    ).reset_index()


def table1(df: pd.DataFrame, site: str = "PJME") -> str:
    """The paper's Table 1 for one site: normalised cost mean ± std, × Loss2Net."""
    stats = _stats(df[df["site"] == site])
    ref = stats.loc[stats["method"] == "loss2net", "mean"]
    ref = float(ref.iloc[0]) if len(ref) else float("nan")
    lines = [
        f"| loss function ({site}) | normalised cost (metric) | × Loss2Net cost | seeds |",
        "|---|---|---|---|",
    ]
    for _, r in stats.iterrows():
        std = 0.0 if np.isnan(r["std"]) else r["std"]
        lines.append(f"| {r['method']} | {r['mean']:.4f} ± {std:.4f} | "
                     f"×{r['mean'] / ref:.2f} | {r['n']} |")
    return "\n".join(lines) + "\n"


def across_regions(df: pd.DataFrame) -> str:
    """Per method: its cost / Loss2Net's, averaged over regions, and in how many
    regions Loss2Net is cheaper."""
    stats = _stats(df)
    ref = stats[stats["method"] == "loss2net"].set_index("site")["mean"]
    stats["ratio"] = stats["mean"] / stats["site"].map(ref)
    lines = [
        "| method | × Loss2Net cost, mean over regions (min – max) | regions where "
        "Loss2Net is cheaper |",
        "|---|---|---|",
    ]
    for method, block in stats.groupby("method", sort=False):
        block = block.dropna(subset=["ratio"])
        if method == "loss2net" or block.empty:
            continue
        lines.append(
            f"| {method} | ×{block['ratio'].mean():.2f} ({block['ratio'].min():.2f} – "
            f"{block['ratio'].max():.2f}) | {int((block['ratio'] > 1).sum())}/"
            f"{len(block)} |"
        )
    return "\n".join(lines) + "\n"


def summary(df: pd.DataFrame) -> str:
    """results.md of ``l2n_train --usecase=power`` and ``benchmarks/power.py``."""
    parts = []
    if (df["site"] == "PJME").any():
        parts += ["## Table 1 (PJME, the paper's region)\n\n", table1(df), "\n"]
    parts += ["## Every region\n\n", summary_table(df), "\n## Across regions\n\n",
              across_regions(df)]
    return "".join(parts)


USECASE = UseCase(
    name="power",
    sites=SITES,
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=(
        "loss2net", "mse", "msle", "alpha_omc", "pinball_tuned", "mse_margin",
        "persistence_margin", "ar_margin",
    ),
    options=options,
    summary=summary,
    batch_sites=True,
    describe=describe,
)
