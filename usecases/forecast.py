"""``forecast``: one-step-ahead forecasting scored by MAE (MetaLoss paper §4, Table 1).

The decision is the forecast ``y_hat`` of the next value ``y`` of a series, and the
cost is the absolute error in scaled units (MinMax of each site's training split)::

    M(y_hat, y) = |y_hat - y|

so the static MAE loss *is* the metric: the question of Table 1 is whether a
predictor trained through a co-trained learned loss beats the same predictor
(architecture, learning rate, epochs, seeds) trained on MAE itself. Methods:

* ``metaloss``: the paper's variant, a preset registered here: a plain ReLU MLP
  loss net on ``(y_hat + eps, y)``, the noise ``eps`` also fed to the predictor,
  triangular CLR with 5 cycles, none of l2n_jax's added measures (no MSE
  pre-training, replay memory, warm-up or range penalty);
* ``loss2net``: l2n_jax's default co-training (SIREN shaper, MSE pre-training,
  replay memory) at the same budget;
* ``mae``, ``mse``: the same predictor on a static loss; ``persistence`` and
  ``ar`` (ridge linear AR on the window) say whether the forecaster is any good;
* ``smooth_mae`` (not run by default): MAE with its kink rounded off (Huber), a
  static control for the "smoother landscape" explanation of MetaLoss's gain.

Every network method gets the same 5-cycle triangular CLR (``get_config``), so the
static-loss baselines see exactly the learning-rate schedule MetaLoss does.

Sites (the paper's four mobile-service series are not public; three real 5-minute
traffic series stand in for them):

* ``eu``, ``uk``, ``worldcup``: 5-minute internet traffic (``data/
  internet_traffic_5min``, the netalloc series);
* ``pjme``: PJM East hourly load (``data/pjm_hourly``, cleaned by
  ``usecases/pjm.py``), the paper's "power grid" (> 145k hours in full);
* ``appliances``: UCI appliances energy, 10-minute, with indoor / outdoor
  temperature, humidity and wind covariates as extra input series
  (``data/uci_appliances_energy``), the paper's "house energy".

By default every site uses its most recent ``LENGTH`` rows (the same count for
all, so the single-series sites batch into one program without padding);
``load(site, length=None)`` takes the whole series. Split 70/10/20 in time order.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax import methods
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from l2n_jax.methods import Options
from l2n_jax.tables import summary_table
from . import pjm
from .base import UseCase, data_dir, quick_config

TRAFFIC = data_dir() / "internet_traffic_5min"
APPLIANCES = data_dir() / "uci_appliances_energy" / "energydata_complete.csv.gz"
# site -> (file under TRAFFIC, value column); the netalloc series.
TRAFFIC_FILES = {
    "eu": ("it_eu_5m.csv.gz", "traffic (in bits)"),
    "uk": ("it_uk_5m.csv.gz", "bits"),
    "worldcup": ("worldcup98_5m.csv.gz", "count_raw"),
}
SITES = (*TRAFFIC_FILES, "pjme", "appliances")
# The paper's house-energy inputs: indoor and outdoor temperature and humidity,
# wind speed. One IR each; the other 22 columns would multiply the predictor's
# cost for little (rv1/rv2 are the authors' random noise columns).
COVARIATES = ("T1", "RH_1", "T_out", "RH_out", "Windspeed")
TARGET = "value"
LOOKBACK = 24  # 2 h of 5-min traffic, 1 day of hourly load, 4 h of 10-min energy
LENGTH = 8000  # rows per site by default (the shortest series, worldcup, has 8929)
# Of the order of the best forecasters' errors (MAE ~1e-2 in scaled units).
HUBER_DELTA = 0.01
LR_CYCLES = 5  # paper §3.2: "the simple triangular version of CLR, with 5 cycles"

# MetaLoss (paper §3-4) as a Config preset: the loss net is a plain MLP (ReLU) on
# the paper's input (y_hat + eps, y), eps is fed to the predictor, the predictor's
# LR follows a 5-cycle triangular CLR, and every measure l2n_jax adds on top of
# the paper is off. The predictor itself is the use case's, as for ``mae``.
METALOSS = dict(
    shaper_activation="relu",
    shaper_hidden=(64, 64),
    shaper_input="decision",
    feed_eps=True,
    lr_schedule="cyclic",
    lr_cycles=LR_CYCLES,
    pretrain_epochs=0,
    shaper_warmup_epochs=0,
    replay_size=0,
    range_penalty=0.0,
    alternate_steps=0,
)


def make_metric():
    """Absolute error of the forecast against the next value; decision [1], obs [1]."""

    def forecast_mae(decision, obs):
        return jnp.mean(jnp.abs(decision - obs))

    return forecast_mae


def smooth_mae(pred, target):
    """MAE with its kink rounded off (Huber / HUBER_DELTA): |e| - delta / 2 beyond
    ``HUBER_DELTA``, e^2 / (2 delta) inside. A static control for the paper's claim
    that a learned loss wins by being a smoother MAE."""
    e = jnp.abs(pred - target)
    d = HUBER_DELTA
    return jnp.mean(jnp.where(e < d, 0.5 * e**2 / d, e - 0.5 * d))


def _check_site(site: str) -> None:
    if site not in SITES:
        raise ValueError(f"forecast: unknown site {site!r}; sites are {list(SITES)}")


def _read_traffic(site: str) -> pd.DataFrame:
    name, column = TRAFFIC_FILES[site]
    frame = pd.read_csv(TRAFFIC / name, usecols=[0, 1], index_col=0, parse_dates=True)
    if frame.columns[0] != column:
        raise ValueError(f"forecast: {name} has column {frame.columns[0]!r}, "
                         f"expected {column!r}")
    frame.columns = [TARGET]
    return frame.sort_index().astype("float64")


def _read_appliances() -> pd.DataFrame:
    columns = ["date", "Appliances", *COVARIATES]
    frame = pd.read_csv(APPLIANCES, usecols=columns)
    index = pd.to_datetime(frame.pop("date"), format="%Y-%m-%d %H:%M:%S")
    frame = frame.set_index(index).rename(columns={"Appliances": TARGET})
    return frame[[TARGET, *COVARIATES]].sort_index().astype("float64")


@functools.lru_cache(maxsize=None)
def _read(site: str) -> pd.DataFrame:
    if site in TRAFFIC_FILES:
        return _read_traffic(site)
    if site == "pjme":
        return pjm.read_region("PJME").rename(columns={"load": TARGET})
    return _read_appliances()


def read_series(site: str) -> pd.DataFrame:
    """The whole series of ``site``: column ``'value'`` (the target), then the
    covariates (appliances only), on a sorted DatetimeIndex (a copy).

    Raises:
      ValueError: unknown site (the message names the valid ones).
    """
    _check_site(site)
    return _read(site).copy()


@functools.lru_cache(maxsize=None)
def _windows(site: str, length: int | None) -> WindowSet:
    frame = _read(site)
    if length is not None:
        if length <= 2 * LOOKBACK:
            raise ValueError(f"forecast: length must exceed {2 * LOOKBACK} rows, got "
                             f"{length}")
        frame = frame.iloc[-length:]  # the most recent stretch (all of a shorter one)
    return make_windows(frame, [TARGET], LOOKBACK)


def load(site: str, length: int | None = LENGTH) -> WindowSet:
    """Scaled windows of the last ``length`` rows of ``site`` (None, or more rows
    than the series has: all of it).

    Inputs are [N, n_series, LOOKBACK, 1]: one series (the target) for the traffic
    and PJME sites, 1 + len(COVARIATES) for appliances; targets and obs [N, 1].
    """
    _check_site(site)
    return _windows(site, length)


def get_config(quick: bool = False) -> Config:
    """Budget for 2 CPU cores: fast MLP predictor, 5-cycle CLR for every method (so
    ``mae`` and ``metaloss`` share the predictor's schedule), Loss2Net's SIREN
    shaper with 2 epochs of MSE pre-training and a replay memory."""
    if quick:
        return quick_config().replace(lr_cycles=LR_CYCLES)
    return Config(
        epochs=20, pretrain_epochs=2, batch_size=64, ir_mlp=(64, 64), assembler=(64,),
        shaper_hidden=(128, 128), lr_cycles=LR_CYCLES, replay_size=4096,
        log_every=5,
        decision_head="amount",  # the paper's head, as its tables were made
    )


def describe() -> str:
    return ("One-step-ahead forecast ŷ of the next value y of each series (5-minute "
            "traffic, hourly PJME load, 10-minute house energy with weather "
            "covariates). Cost: |ŷ − y| in scaled units (each site's training values "
            "span [0, 1]): MAE, the metric of MetaLoss Table 1.")


def options() -> Options:
    return Options()


def gain_table(df: pd.DataFrame, reference: str = "mae") -> pd.DataFrame:
    """Per site x method: MAE x 1e-2 mean and std over seeds, seeds, and the gain
    % = (MAE_ref - MAE) / MAE_ref of the mean against ``reference``'s mean."""
    cost = df["test_cost"] * 100.0
    stats = (df.assign(mae_e2=cost).groupby(["site", "method"], sort=False)
             .agg(mean=("mae_e2", "mean"), std=("mae_e2", "std"), seeds=("seed", "count"))
             .reset_index())
    ref = stats[stats["method"] == reference].set_index("site")["mean"]
    stats["gain_pct"] = 100.0 * (stats["site"].map(ref) - stats["mean"]) / stats["site"].map(ref)
    return stats


def table1(df: pd.DataFrame) -> str:
    """The paper's Table 1 layout: MAE (x 1e-2) mean ± std per method, gain vs mae."""
    stats = gain_table(df)
    lines = ["| site | method | MAE (×10⁻²) | gain vs mae (%) | seeds |",
             "|---|---|---|---|---|"]
    for _, r in stats.iterrows():
        std = 0.0 if np.isnan(r["std"]) else r["std"]
        gain = "" if np.isnan(r["gain_pct"]) else f"{r['gain_pct']:+.2f}"
        lines.append(f"| {r['site']} | {r['method']} | {r['mean']:.3f} ± {std:.3f} | "
                     f"{gain} | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def summary(df: pd.DataFrame) -> str:
    """results.md of ``l2n_train --usecase=forecast``: Table 1, then the usual table."""
    return ("## Table 1 (MAE ×10⁻², gain % over the static MAE loss)\n\n" + table1(df)
            + "\n## Every column\n\n" + summary_table(df))


methods.register(
    "metaloss", methods.cotrained("metaloss", **METALOSS), usecases=("forecast",),
    doc="MetaLoss (paper §4): ReLU MLP loss net on (y_hat + eps, y), eps fed to the "
        "predictor, 5-cycle triangular CLR, no added measures",
)
methods.register(
    "smooth_mae", methods.trained(smooth_mae), usecases=("forecast",),
    doc=f"the predictor trained with a Huber-smoothed MAE (delta = {HUBER_DELTA:g})",
)

USECASE = UseCase(
    name="forecast",
    sites=SITES,
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=("metaloss", "loss2net", "mae", "mse", "persistence", "ar"),
    options=options,
    summary=summary,
    batch_sites=True,
    describe=describe,
)
