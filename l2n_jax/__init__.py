"""l2n_jax: regression under an unknown metric (Loss2Net) in JAX/Flax.

The system reports the cost of a decision only after it was taken; l2n_jax
co-trains the regressor with a neural loss shaper that learns that cost. The
public API (README, "Your own metric")::

    import l2n_jax as l2n
    data = l2n.make_windows(frame, ["load"], lookback=12)
    result = l2n.fit(l2n.Config(), data.train, metric, seeds=(0, 1, 2), valid=data.valid)
    l2n.evaluate(result, data.test, metric)
"""

__version__ = "0.2.0"

from l2n_jax import compiles, distributed, grids, losses, methods
from l2n_jax.config import Config
from l2n_jax.data import Scaler, Windows, WindowSet, make_windows
from l2n_jax.engine import Program, Trainer, TrainState
from l2n_jax.fit import (NonFiniteError, fit, fit_fixed_loss, fit_fixed_loss_sites,
                         fit_grid, fit_grid_sites, fit_sites)
from l2n_jax.metrics import CostModel, HostMetric, StatefulMetric, host_metric
from l2n_jax.results import FitResult, evaluate, load, score
from l2n_jax.runs import over_runs
from l2n_jax.tables import Comparison, compare
from l2n_jax.train import Shapes, make_program

__all__ = [
    "__version__",
    "Config",
    "Comparison",
    "CostModel",
    "FitResult",
    "HostMetric",
    "NonFiniteError",
    "Program",
    "Scaler",
    "Shapes",
    "StatefulMetric",
    "Trainer",
    "TrainState",
    "Windows",
    "WindowSet",
    "compare",
    "compiles",
    "distributed",
    "evaluate",
    "fit",
    "fit_fixed_loss",
    "fit_fixed_loss_sites",
    "fit_grid",
    "fit_grid_sites",
    "fit_sites",
    "grids",
    "host_metric",
    "load",
    "losses",
    "methods",
    "make_program",
    "make_windows",
    "over_runs",
    "score",
]
