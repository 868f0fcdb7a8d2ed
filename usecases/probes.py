"""Probe metrics: user-like costs on series that no use case trains on (issue 18).

A user adopts Loss2Net only if, at its defaults, it does as well as the loss they
would tune by hand on THEIR metric. These probes stand in for such users: three
stateful metrics (the cost of a decision depends on what earlier decisions left
behind) and two memoryless ones, each written as a user would write it, on two
series aggregated to hourly steps (no use case trains at that resolution):

* ``appliances``: UCI appliances energy (``data/uci_appliances_energy``), the
  10-minute Wh summed per hour (3,289 hours, spiky, hard to forecast);
* ``uk``: the UK ISP's 5-minute traffic (``data/internet_traffic_5min``), averaged
  per hour (1,656 hours, a clean daily cycle).

Units: every cost is in scaled units (each series' training values span [0, 1]);
``d`` is the decision (capacity provisioned for the next hour), ``y`` the demand.

Stateful (``l2n.StatefulMetric``; ``v`` = the state before the hour):

* ``backlog``: demand not served waits in a queue and is served first by later
  capacity. ``b' = max(0, b + y - d)``; cost ``BACKLOG * b' + HOLD * max(0, d - y
  - b)`` (every unit-hour of waiting demand, plus idle capacity). ``v = [b]``.
* ``battery``: a small store buffers the mismatch. A surplus ``d - y`` charges it
  (efficiency ``EFF``) up to ``CAPACITY``, the rest is curtailed; a deficit is
  drawn from it, the rest is bought at ``SHORT`` per unit. Cost ``CURTAIL *
  curtailed + SHORT * shortfall + CYCLE * |flow|``. ``v = [state of charge]``.
* ``escalation``: the k-th consecutive under-provisioned hour costs ``ESC_BETA *
  min(2^(k-1), ESC_CAP)`` (doubling, capped), an over-provisioned one ``d - y``.
  ``v = [min(k, 4)]``. Unlike ``power`` (linear growth, no cap).

Memoryless (``metric(decision, obs) -> cost``):

* ``sla_fee``: ``(d - y)_+ + UNDER * (y - d)_+ + FEE * 1[y - d > TOL]``: a flat
  breach fee once the shortfall passes a tolerance (a step: no quantile matches it);
* ``quad_under``: ``(d - y)_+ + QUAD * (y - d)_+^2``: shortfall grows quadratically.

Every constant was fixed before any Loss2Net run (issue 18, "build your own probe
set") and none was changed after.
"""

import functools

import jax.numpy as jnp
import pandas as pd

from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from l2n_jax.metrics import StatefulMetric
from . import forecast

SERIES = ("appliances", "uk")
STATEFUL = ("backlog", "battery", "escalation")
MEMORYLESS = ("sla_fee", "quad_under")
PROBES = STATEFUL + MEMORYLESS
LOOKBACK = 24  # one day of hours
SEGMENTS = 8  # contiguous time segments per Loss2Net batch on a stateful probe
# Config() but a batch of 64: the series are short (1,142 and 2,285 training hours).
CONFIG = Config(batch_size=64)
# Loss2Net variants benchmarks/probes.py can run: name -> Config changes on CONFIG
# (the ablations of BUILD_NOTES §18; each spells out its replay size, and its head
# if not the paper's, so a name keeps its meaning if the default changes: see
# ``variant``).
VARIANTS = {
    "default": {},
    # The default until §18k: the paper's head with a 16,384-sample replay.
    "amount": {"replay_size": 16384, "decision_head": "amount"},
    "no_replay": {"replay_size": 0},  # the default before §18
    "no_replay+offset": {"replay_size": 0, "tune_offset": True},
    "no_replay+noise/5": {"replay_size": 0, "noise_start": 0.02, "noise_end": 0.0002},
    "no_replay+noise/5+offset": {"replay_size": 0, "noise_start": 0.02,
                                 "noise_end": 0.0002, "tune_offset": True},
    "no_replay+error_input": {"replay_size": 0, "shaper_input": "error"},
    "replay4k": {"replay_size": 4096},
    "replay4k+offset": {"replay_size": 4096, "tune_offset": True},
    "replay64k": {"replay_size": 65536},
    "offset": {"replay_size": 16384, "tune_offset": True},
    "ctg0.5": {"replay_size": 16384, "cost_to_go": 0.5},
    "ctg0.8": {"replay_size": 16384, "cost_to_go": 0.8},
    "lr/3": {"replay_size": 16384, "lr_max": 3e-4},
    "shaper_lr*3": {"replay_size": 16384, "shaper_lr": 3e-3},
    "relu": {"replay_size": 16384, "shaper_activation": "relu"},
    "relu+error_input": {"replay_size": 16384, "shaper_activation": "relu",
                         "shaper_input": "error"},
    # 'segments' is not a Config field: the contiguous segments per stateful batch.
    "seg2": {"replay_size": 16384, "segments": 2},
    "seg2+ctg0.9": {"replay_size": 16384, "segments": 2, "cost_to_go": 0.9},
    # Half the budget as MSE pre-training: co-training starts from (and has less time
    # to drift from) a precise forecaster.
    "pretrain30": {"replay_size": 16384, "pretrain_epochs": 30},
    # A last phase at a low learning rate / low noise, and a finer or smoother
    # learned surface (the SIREN's first-layer frequency).
    "lr_exp": {"replay_size": 16384, "lr_schedule": "exp"},
    "noise_end/10": {"replay_size": 16384, "noise_end": 1e-4},
    "omega60": {"replay_size": 16384, "omega0_first": 60.0},
    "omega15": {"replay_size": 16384, "omega0_first": 15.0},
    # The IRs keep pre-training's forecasting term while the shaper moves the
    # decisions (Config.ir_anchor, at three weights).
    "anchor1": {"replay_size": 16384, "ir_anchor": 1.0},
    "anchor10": {"replay_size": 16384, "ir_anchor": 10.0},
    "anchor100": {"replay_size": 16384, "ir_anchor": 100.0},
    # The errors' spread penalised as MSE does, their level left to the shaper
    # (Config.spread_anchor).
    "spread1": {"replay_size": 16384, "spread_anchor": 1.0},
    "spread10": {"replay_size": 16384, "spread_anchor": 10.0},
    "spread100": {"replay_size": 16384, "spread_anchor": 100.0},
    "spread10+offset": {"replay_size": 16384, "spread_anchor": 10.0, "tune_offset": True},
    "spread100+offset": {"replay_size": 16384, "spread_anchor": 100.0,
                         "tune_offset": True},
    # The predictor's parameters averaged over co-training steps (an EMA, horizon
    # ~1/(1 - decay) steps; ~18 steps per epoch on uk): Config.predictor_average.
    "avg0.9": {"replay_size": 16384, "predictor_average": 0.9},
    "avg0.99": {"replay_size": 16384, "predictor_average": 0.99},
    "avg0.999": {"replay_size": 16384, "predictor_average": 0.999},
    "avg0.99+spread10": {"replay_size": 16384, "predictor_average": 0.99,
                         "spread_anchor": 10.0},
    # A forecast trained by MSE alone plus a margin trained only through the shaper
    # (Config.decision_head='margin').
    "margin": {"replay_size": 16384, "decision_head": "margin"},
    "margin+offset": {"replay_size": 16384, "decision_head": "margin", "tune_offset": True},
    "margin_shared": {"replay_size": 16384, "decision_head": "margin_shared"},
    "margin_net": {"replay_size": 16384, "decision_head": "margin_net"},
    # Pinball-trained quantiles read at a level the shaper sets, the shaper's gradient
    # kept off the quantiles (Config()'s default from §18k until §18n chose it on
    # validation).
    "quantile_net": {"replay_size": 16384, "decision_head": "quantile_net",
                     "quantile_grad": 0.0},
    "quantile_net+offset": {"replay_size": 16384, "decision_head": "quantile_net",
                            "quantile_grad": 0.0, "tune_offset": True},
    # Config.quantile_grad: a share of the shaper's gradient reaches the quantiles.
    "qgrad1": {"replay_size": 16384, "decision_head": "quantile_net", "quantile_grad": 1.0},
    "qgrad0.3": {"replay_size": 16384, "decision_head": "quantile_net", "quantile_grad": 0.3},
    "qgrad0.1": {"replay_size": 16384, "decision_head": "quantile_net", "quantile_grad": 0.1},
    # The shaper sees the error (with the replay; 18j tried a warped error too).
    "error_input": {"replay_size": 16384, "shaper_input": "error"},
}


def variant(name: str, probe: str) -> tuple[dict, int]:
    """(Config changes, segments per stateful batch) of a ``VARIANTS`` entry; an
    entry other than 'default' that names no head ran with the paper's
    ('amount', the default until BUILD_NOTES §18k) and keeps it."""
    changes = dict(VARIANTS[name])
    if name != "default":
        changes.setdefault("decision_head", "amount")
    segments = changes.pop("segments", SEGMENTS)
    return changes, segments if probe in STATEFUL else 1

BACKLOG, HOLD = 2.0, 1.0
CAPACITY, EFF, CURTAIL, SHORT, CYCLE = 0.15, 0.9, 1.0, 4.0, 0.05
ESC_BETA, ESC_CAP, ESC_V_CAP = 0.2, 8.0, 4
UNDER, FEE, TOL = 0.5, 0.3, 0.02
QUAD = 20.0


def _zero():
    return jnp.zeros((), jnp.float32)


def backlog() -> StatefulMetric:
    """Unserved demand queues and costs every hour until served; idle capacity costs."""

    def backlog_cost(b, decision, obs):
        d, y = decision[0], obs[0]
        new_b = jnp.maximum(0.0, b + y - d)
        idle = jnp.maximum(0.0, d - y - b)
        return BACKLOG * new_b + HOLD * idle, b[None], new_b

    return StatefulMetric(_zero, backlog_cost)


def battery() -> StatefulMetric:
    """A store of CAPACITY buffers the mismatch between capacity and demand."""

    def battery_cost(soc, decision, obs):
        surplus = decision[0] - obs[0]
        charge = jnp.minimum(EFF * jnp.maximum(surplus, 0.0), CAPACITY - soc)
        curtailed = jnp.maximum(surplus, 0.0) - charge / EFF
        draw = jnp.minimum(jnp.maximum(-surplus, 0.0), soc)
        shortfall = jnp.maximum(-surplus, 0.0) - draw
        cost = CURTAIL * curtailed + SHORT * shortfall + CYCLE * (charge + draw)
        return cost, soc[None], soc + charge - draw

    return StatefulMetric(_zero, battery_cost)


def escalation() -> StatefulMetric:
    """Consecutive under-provisioned hours cost double the previous one, up to a cap."""

    def init():
        return jnp.zeros((), jnp.int32)

    def escalation_cost(run, decision, obs):
        x = decision[0] - obs[0]
        under = x < 0
        fee = ESC_BETA * jnp.minimum(2.0 ** run.astype(jnp.float32), ESC_CAP)
        cost = jnp.where(under, fee, x)
        v = jnp.minimum(run, ESC_V_CAP).astype(jnp.float32)[None]
        return cost, v, jnp.where(under, run + 1, 0)

    return StatefulMetric(init, escalation_cost)


def sla_fee(decision, obs):
    """Linear both ways, plus a flat fee past the shortfall tolerance."""
    x = decision - obs
    cost = jnp.maximum(x, 0.0) + UNDER * jnp.maximum(-x, 0.0) + FEE * (-x > TOL)
    return jnp.sum(cost)


def quad_under(decision, obs):
    """Linear over-provisioning, quadratic shortfall."""
    x = decision - obs
    return jnp.sum(jnp.maximum(x, 0.0) + QUAD * jnp.maximum(-x, 0.0) ** 2)


_METRICS = {"backlog": backlog, "battery": battery, "escalation": escalation,
            "sla_fee": lambda: sla_fee, "quad_under": lambda: quad_under}


def make_metric(probe: str):
    """The probe's metric: a StatefulMetric or a per-sample function.

    Raises:
      ValueError: unknown probe (the message names the valid ones).
    """
    if probe not in _METRICS:
        raise ValueError(f"probes: unknown probe {probe!r}; probes are {list(PROBES)}")
    return _METRICS[probe]()


def hourly(series: str) -> pd.DataFrame:
    """The series at hourly steps: one column 'value', a full hourly index.

    Appliances: Wh summed per hour (complete hours only); uk: mean rate per hour.
    """
    if series not in SERIES:
        raise ValueError(f"probes: unknown series {series!r}; series are {list(SERIES)}")
    frame = forecast.read_series(series)[[forecast.TARGET]]
    grouped = frame.resample("1h")
    counts = grouped.count()[forecast.TARGET]
    steps = 6 if series == "appliances" else 12
    out = grouped.sum() if series == "appliances" else grouped.mean()
    out = out[counts == steps]  # partial hours at the ends would bias the sums
    return out.rename(columns={forecast.TARGET: "value"}).asfreq("1h")


@functools.lru_cache(maxsize=None)
def load(series: str) -> WindowSet:
    """Scaled hourly windows (lookback 24, split 70/10/20 in time order); a missing
    hour inside the span (an incomplete one) is interpolated."""
    return make_windows(hourly(series), ["value"], LOOKBACK, fill="interpolate")
