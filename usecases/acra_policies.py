"""Baselines and oracles of ``acra`` v2 (issue 19, item 4), in NumPy.

* ``knapsack_policy``: forecasts -> admission by the exact 0/1 knapsack of the
  paper's equation (4) (``acra_emulator.knapsack_batch``), allocation ``m_s`` x
  the period's mean forecast. The value of a client is its forecast revenue
  minus the costs a practitioner knows from the contract (opex on the
  allocation, the fixed per-client cost); the weight is its allocation (at
  least the minimum rate). ``m_s = 1`` is plain eq. (4) on forecasts; one tuned
  ``m`` and per-client tuned ``m_s`` are the head-room baselines; on the true
  demands it is the demand oracle.
* ``tune_factors``: one common factor on a grid, then coordinate descent over
  per-client factors, on the validation split with the true emulator.
* ``grid_oracle``: knows the future demands AND the hidden QoE: the exact
  multiple-choice knapsack over per-client allocation levels ``k * cell``
  (level 0 rejects), by dynamic programming over capacity cells.
  ``mckp_brute`` enumerates every combination (its test).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from . import acra_emulator, acra_qoe as qoe

FACTORS = tuple(np.round(np.arange(0.3, 2.001, 0.05), 2))
CELL = 0.01  # oracle grid, in units of a client's training peak


def knapsack_policy(forecast, p: qoe.Params, factors=1.0) -> np.ndarray:
    """[N, S, H] forecasts, [S] (or scalar) factors -> [N, S] allocations."""
    f = np.maximum(np.asarray(forecast, np.float64), 0.0)
    alloc = np.maximum(np.broadcast_to(factors, f.shape[1:2]) * f.mean(-1), p.min_rate)
    h = p.horizon
    value = (p.prices * f.sum(-1) - p.opex * alloc * h - p.fixed * h)
    mask = acra_emulator.knapsack_batch(value, alloc, p.capacity)
    return np.where(mask, alloc, 0.0).astype(np.float32)


def _profit(forecast, truth, p, factors) -> float:
    return qoe.evaluate(knapsack_policy(forecast, p, factors), truth, p)[
        "normalised_profit"]


def tune_factors(forecast, truth, p: qoe.Params, grid=FACTORS, sweeps: int = 2):
    """(best common factor, per-client factors) by validation profit.

    Per-client factors start from the common one; each sweep sets every client's
    factor in turn to its best grid value with the others fixed.
    """
    s = forecast.shape[1]
    common = max(grid, key=lambda m: _profit(forecast, truth, p, m))
    per = np.full(s, common, np.float64)
    for _ in range(sweeps):
        for j in range(s):
            scores = []
            for m in grid:
                trial = per.copy()
                trial[j] = m
                scores.append(_profit(forecast, truth, p, trial))
            per[j] = grid[int(np.argmax(scores))]
    return float(common), per


def level_values(truth, p: qoe.Params, levels: np.ndarray) -> np.ndarray:
    """Per-client period profit at every allocation level: [N, S, L] (level 0 = 0)."""
    alloc = jnp.asarray(levels, jnp.float32)[:, None] * jnp.ones(len(p.cls))  # [L, S]
    f = jax.jit(jax.vmap(lambda d: qoe.client_profit(alloc, d, p)["profit"]))
    v = np.asarray(f(jnp.asarray(truth, jnp.float32)), np.float64)  # [N, L, S]
    return v.transpose(0, 2, 1)


def mckp_batch(values: np.ndarray, weights: np.ndarray, cells: int) -> np.ndarray:
    """Exact multiple-choice knapsack, N instances: pick one level per client.

    Args:
      values: [N, S, L] value of each level (-inf: not allowed); level 0 must be
        the weight-0 "reject" option.
      weights: [L] integer weights (cells) of the levels, weights[0] = 0.
      cells: capacity in cells.

    Returns:
      [N, S] chosen level indices maximising the total value within capacity.
    """
    n, s, n_lv = values.shape
    best = np.zeros((n, cells + 1))
    choice = np.zeros((n, s, cells + 1), np.int32)
    for j in range(s):
        new = np.full((n, cells + 1), -np.inf)
        pick = np.zeros((n, cells + 1), np.int32)
        for k in range(n_lv):
            w = int(weights[k])
            if w > cells:
                continue
            cand = best[:, : cells + 1 - w] + values[:, j, k : k + 1]
            better = cand > new[:, w:]
            new[:, w:] = np.where(better, cand, new[:, w:])
            pick[:, w:] = np.where(better, k, pick[:, w:])
        best, choice[:, j] = new, pick
    out = np.zeros((n, s), np.int32)
    r = np.full(n, cells)
    rows = np.arange(n)
    for j in range(s - 1, -1, -1):
        k = choice[rows, j, r]
        out[:, j] = k
        r = r - weights[k]
    return out


def mckp_brute(values: np.ndarray, weights: np.ndarray, cells: int) -> np.ndarray:
    """The same by enumerating every level combination (tiny S and L only)."""
    n, s, n_lv = values.shape
    combos = np.array(list(itertools.product(range(n_lv), repeat=s)))  # [K, S]
    fits = weights[combos].sum(1) <= cells
    totals = values[:, np.arange(s)[None, :], combos].sum(-1)  # [N, K]
    return combos[np.argmax(np.where(fits[None], totals, -np.inf), axis=1)]


def grid_oracle(truth, p: qoe.Params, cell: float = CELL, top: float = 1.6):
    """Oracle (e): [N, S, H] true demands -> [N, S] allocations on the grid."""
    cells = int(np.floor(p.capacity / cell + 1e-9))
    top_cells = min(cells, int(np.ceil(max(top, 1.2 * truth.max()) / cell)))
    weights = np.arange(top_cells + 1)
    levels = weights * cell
    values = level_values(truth, p, levels)
    values[:, :, 0] = 0.0
    below = (levels > 0) & (levels < p.min_rate - 1e-9)  # raised to min_rate anyway
    values[:, :, below] = -np.inf
    out = []
    for lo in range(0, len(values), 256):  # bounds the [chunk, S, cells] choice table
        out.append(mckp_batch(values[lo : lo + 256], weights, cells))
    return (np.concatenate(out) * cell).astype(np.float32)
