"""What a practitioner tries first, and the knobs tuned on the validation split.

* ``persistence``: repeat the last observed value.
* ``linear_ar``: closed-form (ridge) least squares of the targets on the flattened
  window, fitted on the training split.
* ``tune_margin``: the additive margin (per seed) minimising the true metric on the
  validation split, searched over quantiles of the validation residuals (for a
  threshold-plus-linear cost the optimum is a residual quantile).

All operate on scaled units, like ``Windows``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from l2n_jax.data import Windows
from l2n_jax.metrics import batch_metric


def persistence(windows: Windows) -> np.ndarray:
    """Persistence forecast of the targets: [N, m]."""
    return np.asarray(windows.current, np.float32)


def _design(windows: Windows) -> np.ndarray:
    x = np.asarray(windows.inputs, np.float64).reshape(len(windows), -1)
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def linear_ar(train: Windows, ridge: float = 1e-6):
    """Fits a linear AR model on the window; returns ``predict(windows) -> [N, m]``."""
    x = _design(train)
    y = np.asarray(train.targets, np.float64)
    gram = x.T @ x + ridge * len(x) * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, x.T @ y)

    def predict(windows: Windows) -> np.ndarray:
        return (_design(windows) @ coef).astype(np.float32)

    return predict


@functools.lru_cache(maxsize=64)
def _margin_costs(metric):
    """[S, G]: every seed's forecast against every candidate margin, one program
    (compiled once per metric and shapes)."""
    cost_b = batch_metric(metric)

    def mean_cost(f, margin, obs):
        return jnp.mean(cost_b(f + margin, obs))

    return jax.jit(jax.vmap(jax.vmap(mean_cost, (None, 0, None)), (0, 0, None)))


def tune_margin(forecasts, valid: Windows, metric, n_grid: int = 201) -> np.ndarray:
    """Per-seed additive margin minimising the mean true metric on ``valid``.

    Args:
      forecasts: [S, N, m] validation forecasts (one row of runs per seed).
      valid: the validation windows (targets, obs).
      metric: per-sample true metric.
      n_grid: number of residual quantiles tried (plus a zero margin).

    Returns:
      [S] margins, in scaled units, added to every output.
    """
    forecasts = jnp.asarray(forecasts, jnp.float32)
    resid = np.asarray(valid.targets)[None] - np.asarray(forecasts)  # [S, N, m]
    levels = np.linspace(0.0, 1.0, n_grid)
    grid = np.quantile(resid.reshape(resid.shape[0], -1), levels, axis=1).T  # [S, G]
    grid = np.concatenate([np.zeros((grid.shape[0], 1)), grid], axis=1)
    obs = jnp.asarray(valid.obs, jnp.float32)
    costs = _margin_costs(metric)(forecasts, jnp.asarray(grid, jnp.float32), obs)
    best = np.argmin(np.asarray(costs), axis=1)
    return grid[np.arange(grid.shape[0]), best].astype(np.float32)
