"""``netalloc``: pre-emptive network capacity allocation (paper appendix D.1).

Every 5 minutes an operator reserves capacity ``y_hat`` for the next 5 minutes of
traffic ``y``. Serving too little costs an SLA fee ``beta``; reserving too much costs
``gamma`` per unit of idle capacity (both in scaled units, where the training
traffic spans [0, 1])::

    M(y_hat, y) = beta * 1[y_hat < y] + gamma * (y_hat - y) * 1[y_hat >= y]

The learner never sees this formula: Loss2Net's shaper sees ``(y_hat + eps, y)`` and
the reported cost. Sites are the three real 5-minute traffic series shipped in
``data/internet_traffic_5min`` (see data/README.md): ``eu`` (ISP transatlantic link,
bits), ``uk`` (UK academic backbone) and ``worldcup`` (WorldCup98 web requests).
"""

import functools

import jax.numpy as jnp
import pandas as pd

from l2n_jax.methods import Options
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from .base import UseCase, data_dir, quick_config

DATA = data_dir() / "internet_traffic_5min"
FILES = {
    "eu": ("it_eu_5m.csv.gz", "traffic (in bits)"),
    "uk": ("it_uk_5m.csv.gz", "bits"),
    "worldcup": ("worldcup98_5m.csv.gz", "count_raw"),
}
LOOKBACK = 12  # one hour of 5-minute samples
BETA, GAMMA = 0.5, 1.0


def make_metric(beta: float = BETA, gamma: float = GAMMA):
    """The operator's cost of one decision; ``decision [1]``, ``obs [1]`` (demand)."""
    if beta <= 0 or gamma <= 0:
        raise ValueError(f"netalloc: beta and gamma must be > 0, got {beta}, {gamma}")

    def netalloc_cost(decision, obs):
        x = decision - obs
        return jnp.sum(jnp.where(x < 0, beta, gamma * x))

    return netalloc_cost


def read_series(site: str) -> pd.DataFrame:
    """The raw series of ``site`` as a one-column frame indexed by time."""
    if site not in FILES:
        raise ValueError(f"netalloc: unknown site {site!r}; sites are {list(FILES)}")
    name, column = FILES[site]
    frame = pd.read_csv(DATA / name, usecols=[0, 1], index_col=0, parse_dates=True)
    if frame.columns[0] != column:
        raise ValueError(f"netalloc: {name} has column {frame.columns[0]!r}, expected {column!r}")
    frame.columns = ["traffic"]
    return frame.sort_index().astype("float64")


@functools.lru_cache(maxsize=None)
def load(site: str) -> WindowSet:
    """Scaled windows of ``site``: lookback 12, split 70/10/20 in time order."""
    return make_windows(read_series(site), ["traffic"], LOOKBACK)


def get_config(quick: bool = False) -> Config:
    """Default budget: fast MLP IR, single-series assembler, paper-size SIREN shaper."""
    if quick:
        return quick_config()
    return Config(
        epochs=60, pretrain_epochs=10, batch_size=64, ir_mlp=(64, 64), assembler=(64,),
        shaper_hidden=(256, 256, 128), replay_size=4096, log_every=10,
        decision_head="amount",  # the paper's head, as its tables were made
    )


def describe(beta: float = BETA, gamma: float = GAMMA) -> str:
    return ("Every 5 minutes, reserve capacity ŷ for the next 5 minutes of traffic y. "
            f"Cost of a decision: beta·1[ŷ < y] + gamma·(ŷ − y)·1[ŷ ≥ y], beta = {beta:g}, "
            f"gamma = {gamma:g}, in scaled units (each site's training traffic spans "
            "[0, 1]).")


def options(beta: float = BETA, gamma: float = GAMMA) -> Options:
    return Options(alpha=beta / gamma)


USECASE = UseCase(
    name="netalloc",
    sites=tuple(FILES),
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=(
        "loss2net", "mse", "msle", "mae", "alpha_omc", "mse_margin", "pinball_tuned",
        "persistence_margin", "ar_margin",
    ),
    options=options,
    describe=describe,
)
