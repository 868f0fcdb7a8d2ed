"""``acra_pjm``: joint admission control and resource allocation (paper section 4.3),
v1: PJM clients (``l2n_train --usecase=acra_pjm``). Issue 19's v2 with traffic
clients (``usecases/acra_v2.py``) is ``--usecase=acra`` since; this one is kept with
its negative result (BUILD_NOTES §8).

Every hour an operator with a shared capacity ``C`` decides, for each of ``S``
clients, how much capacity to reserve for the next hour; 0 rejects the client. The
hidden emulator (``usecases/acra_emulator.py``, constants in its docstring) then
reports the cost, minus the normalised profit: revenue of admitted clients, cut when
their (hidden) QoE falls below the contract level, churn fees when it collapses,
opex per reserved unit and a penalty for booking more than ``C``.

Clients are the first ``S`` PJM regions of ``pjm.CLIENT_REGIONS`` over their common
span (2013-06 .. 2018-08, 45,336 hours), loads divided by each region's training
peak (``scale='peak'``), so an allocation of 0 means "rejected" and 1 is the
client's peak. Sites are ``S2 .. S10``.

Methods:

* ``loss2net``: one IR per client + the assembler, all allocations trained jointly
  through the learned cost (the intertwined case); IRs pre-trained as forecasters
  first (paper remark 4, ``Config.pretrain_epochs``).
* ``bm_split``: Loss2Net without the assembler (``Config.split_irs``): client s's
  allocation comes from its own IR only.
* ``knapsack``: the same predictor trained with MSE as a per-client forecaster, then
  admission by the exact 0/1 knapsack of equation (4) (value ``p_s f_s``, weight
  ``f_s``), allocation = forecast.
* ``knapsack_margin``: the same, with a head-room margin on the forecasts tuned on
  the validation split with the true cost (as fair to the baseline as Loss2Net's
  epoch selection).
* ``greedy``: admission by revenue density instead of the exact knapsack.
* ``oracle``: the exact knapsack on the TRUE demands (knows the future, not the QoE
  curves), the paper's upper reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax import losses, methods
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from l2n_jax.methods import Options, Outcome, Task
from . import acra_emulator as emu, pjm
from .base import UseCase, quick_config

SITES = ("S2", "S4", "S6", "S8", "S10")
# Every S uses the common span of all 10 client regions, so rows for different S
# differ only in the number of clients.
SPAN_START = "2013-06-01 01:00"
LOOKBACK = 24  # one day of hourly load
MARGINS = tuple(np.round(np.arange(0.80, 1.31, 0.05), 2))


def n_clients(site: str) -> int:
    if site not in SITES:
        raise ValueError(f"acra: unknown site {site!r}; sites are {list(SITES)}")
    return int(site[1:])


@functools.lru_cache(maxsize=None)
def load(site: str) -> WindowSet:
    """Windows of the first S client regions: lookback 24 h, split 70/10/20 in time."""
    regions = list(pjm.CLIENT_REGIONS[: n_clients(site)])
    frame = pjm.read_common(tuple(regions), start=SPAN_START)
    return make_windows(frame, regions, LOOKBACK, scale="peak")


def make_metric():
    """The emulator's cost; S is read from the decision's (static) shape."""

    def acra_cost(decision, obs):
        return emu.make_emulator(decision.shape[-1])(decision, obs)

    return acra_cost


def get_config(quick: bool = False) -> Config:
    """Fast MLP IRs, the paper's assembler and its deeper use-case-II SIREN shaper.

    lr_max = 3e-4 was chosen on the validation split of S4 among four variants
    (``benchmarks/acra_tuning.py``; BUILD_NOTES.md): with 1e-3 the predictor drifts
    after the first epochs and the validation profit falls.
    """
    if quick:
        return quick_config()
    return Config(
        epochs=14, pretrain_epochs=4, batch_size=256, ir_mlp=(64, 64),
        assembler=(256, 256, 128, 64), shaper_hidden=(256, 256, 256, 256, 128),
        lr_max=3e-4, replay_size=4096, log_every=2,
        decision_head="amount",  # the paper's head, as its tables were made
    )


def _columns(rows: pd.DataFrame, decisions, ws: WindowSet) -> dict:
    """acra's extra row columns: the profit (= -cost) and the mean number of
    admitted clients per hour, per seed."""
    accepted = emu.accepted(np.asarray(decisions, np.float32))
    return {"profit": -rows["cost"], "accepted": np.asarray(accepted).mean(axis=1)}


def describe() -> str:
    return ("Every hour, reserve capacity for each of S clients sharing a capacity C "
            "(0 rejects a client). Cost: minus the normalised profit a hidden emulator "
            "reports (QoE-dependent revenue, churn, opex, over-booking penalty), so "
            "profit = −cost and higher profit is better.")


def options() -> Options:
    return Options(columns=_columns)


def _params(ws: WindowSet) -> emu.EmulatorParams:
    return emu.emulator_params(ws.train.targets.shape[1])


def _knapsack(forecasts, ws, margin, solver="exact"):
    p = _params(ws)
    return np.stack([
        emu.knapsack_decision(f, p.capacity, p.prices, margin=m, solver=solver)
        for f, m in zip(np.asarray(forecasts), np.broadcast_to(margin, len(forecasts)))
    ])


@functools.lru_cache(maxsize=8)
def _costs(metric):
    return jax.jit(jax.vmap(metric))


def tune_margin(valid_forecasts, ws, metric, margins=MARGINS) -> np.ndarray:
    """Per seed, the knapsack head-room margin of lowest true validation cost."""
    obs = jnp.asarray(ws.valid.obs)
    cost = _costs(metric)
    p = _params(ws)
    best = []
    for f in np.asarray(valid_forecasts):
        costs = [
            float(cost(jnp.asarray(emu.knapsack_decision(f, p.capacity, p.prices, m)),
                       obs).mean())
            for m in margins
        ]
        best.append(margins[int(np.argmin(costs))])
    return np.asarray(best)


def knapsack_method(solver: str = "exact", tune: bool = False):
    """MSE forecasts (one forecaster per S and budget, shared through the task's
    cache) + admission by the knapsack of equation (4); with ``tune``, a head-room
    margin per seed tuned on validation."""

    def method(task: Task):
        out = {}
        mse = methods.fixed_fits(task, losses.mse, task.label)
        for site, ws in task.sites.items():
            forecast = methods.from_fit(mse[site], ws).decide
            margin = (tune_margin(forecast("valid"), ws, task.metric) if tune
                      else np.ones(len(task.seeds)))
            decide = functools.lru_cache(maxsize=None)(
                lambda split, f=forecast, m=margin: _knapsack(f(split), ws, m, solver))
            out[site] = Outcome(decide, forecast, margin if tune else None, mse[site])
        return out

    return method


def oracle(task: Task):
    """The exact knapsack on the TRUE demands (knows the future, not the QoE)."""
    out = {}
    for site, ws in task.sites.items():
        p = _params(ws)

        def decide(split, ws=ws, p=p):
            d = emu.oracle_decision(np.asarray(getattr(ws, split).obs), p.capacity,
                                    p.prices)
            return np.broadcast_to(d[None], (len(task.seeds), *d.shape))

        out[site] = Outcome(decide, decide)
    return out


methods.register("knapsack", knapsack_method(), usecases=("acra_pjm",),
                 doc="MSE forecasts + exact 0/1 knapsack admission (eq. 4)")
methods.register("knapsack_margin", knapsack_method(tune=True), usecases=("acra_pjm",),
                 doc="the knapsack with a head-room margin tuned on validation")
methods.register("greedy", knapsack_method("greedy"), usecases=("acra_pjm",),
                 doc="MSE forecasts + admission by revenue density")
methods.register("oracle", oracle, usecases=("acra_pjm",),
                 doc="the exact knapsack on the true demands")


def summary_table(df: pd.DataFrame, reference: str = "knapsack",
                  site_label: str = "clients", ratio_digits: int = 2) -> str:
    """Paper Table 2: profit and accepted clients per S, with x ``reference``."""
    stats = df.groupby(["site", "method"], sort=False).agg(
        p=("profit", "mean"), ps=("profit", "std"), a=("accepted", "mean"),
        as_=("accepted", "std"), n=("seed", "count"),
    ).reset_index()
    lines = [
        f"| {site_label} | method | normalised profit (mean ± std) | × {reference} | "
        "accepted clients (mean ± std) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for site, block in stats.groupby("site", sort=False):
        ref = block.loc[block["method"] == reference, "p"]
        ref = float(ref.iloc[0]) if len(ref) else float("nan")
        for _, r in block.iterrows():
            ps = 0.0 if np.isnan(r.ps) else r.ps
            as_ = 0.0 if np.isnan(r.as_) else r.as_
            lines.append(
                f"| {site} | {r.method} | {r.p:.4f} ± {ps:.4f} | "
                f"{r.p / ref:.{ratio_digits}f} | {r.a:.2f} ± {as_:.2f} | {r.n} |"
            )
    return "\n".join(lines) + "\n"


METHODS = ("loss2net", "bm_split", "knapsack", "knapsack_margin", "greedy", "oracle")

USECASE = UseCase(
    name="acra_pjm",
    sites=SITES,
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=METHODS,
    options=options,
    default_sites=("S4",),
    describe=describe,
    summary=summary_table,
)
