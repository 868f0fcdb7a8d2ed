"""``toy``: the ablation problem of paper appendix C (Table 3).

``n_in`` uncorrelated synthetic series (each a sum of two sinusoids with random
periods and phases plus AR(1) noise, drawn from a fixed data seed); the decision is
one number, and the hidden metric is its absolute error against the *mean of the
series' next values*::

    M(y_hat, v) = |y_hat - v|,   v = mean_i x_{t+1}^(i)

The learner sees only the cost and ``v``; it must discover that the target is the
average of forecasts of all inputs. Sites are ``n2``, ``n4``, ``n6``, ``n12``.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax.methods import Options
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, make_windows
from .base import UseCase, quick_config

SITES = {"n2": 2, "n4": 4, "n6": 6, "n12": 12}
LENGTH = 16000  # long enough that the MLP forecasters beat persistence
LOOKBACK = 16
DATA_SEED = 20240


def make_metric():
    """Absolute error of the decision against the mean of the next values."""

    def toy_mae(decision, obs):
        return jnp.sum(jnp.abs(decision - obs))

    return toy_mae


def generate(n_in: int, length: int = LENGTH, seed: int = DATA_SEED) -> pd.DataFrame:
    """``n_in`` independent series plus their mean, as a frame indexed by step."""
    if n_in < 1:
        raise ValueError(f"toy: n_in must be >= 1, got {n_in}")
    rng = np.random.default_rng([seed, n_in])
    t = np.arange(length)[:, None]
    periods = rng.uniform(24.0, 200.0, size=(2, n_in))
    phases = rng.uniform(0.0, 2 * np.pi, size=(2, n_in))
    amps = rng.uniform(0.5, 1.5, size=(2, n_in))
    signal = sum(amps[j] * np.sin(2 * np.pi * t / periods[j] + phases[j]) for j in range(2))
    shocks = rng.normal(0.0, 0.15, size=(length, n_in))
    noise = np.zeros_like(shocks)
    for i in range(1, length):  # AR(1), phi = 0.7; data generation only
        noise[i] = 0.7 * noise[i - 1] + shocks[i]
    values = signal + noise
    frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(n_in)])
    frame["mean"] = values.mean(axis=1)
    return frame


@functools.lru_cache(maxsize=None)
def load(site: str) -> WindowSet:
    if site not in SITES:
        raise ValueError(f"toy: unknown site {site!r}; sites are {list(SITES)}")
    n_in = SITES[site]
    frame = generate(n_in)
    inputs = [f"x{i}" for i in range(n_in)]
    return make_windows(frame, ["mean"], LOOKBACK, input_columns=inputs)


def get_config(quick: bool = False) -> Config:
    if quick:
        return quick_config()
    return Config(
        epochs=30, pretrain_epochs=5, batch_size=64, ir_mlp=(64, 64),
        assembler=(256, 256, 128, 64), replay_size=4096, log_every=10,
        noise_start=0.05,
        decision_head="amount",  # the paper's head, as its tables were made
    )


def describe() -> str:
    return ("Decide the mean of the next values of n uncorrelated synthetic series "
            "(sites n2 … n12). Cost: |ŷ − mean|, in scaled units.")


def options() -> Options:
    return Options()


USECASE = UseCase(
    name="toy",
    sites=tuple(SITES),
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=("loss2net", "mse", "mae", "persistence", "ar"),
    options=options,
    describe=describe,
)
