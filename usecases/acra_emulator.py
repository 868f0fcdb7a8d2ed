"""The hidden system of ``acra``: joint admission control and resource allocation.

Paper section 4.3. An operator with a shared capacity ``C`` serves ``S`` clients
(PJM regions). Before each hour it decides an allocation ``a_s`` per client, in
the clients' scaled demand units; ``a_s <= ACCEPT_EPS`` (0 or negative included)
means client ``s`` is rejected. Then the demands ``d_s`` are revealed and the
system reports the operator's cost. The learner sees only that cost; the QoE
curves and every constant below stay hidden inside the emulator.

Demands are expected >= 0 with each client's training-split peak at about
``PEAK`` = 1, e.g. load divided by its training peak. (With that scaling and
the default capacity, the total demand of the first S = 2..10 PJM clients
exceeds C in about 70% of the hours, mean about 1.1 C; with MinMax scaling the
mean is about 0.7 C and admission matters far less often.)

For one hour (all sums over admitted clients ``s``, ``a_s > ACCEPT_EPS``):

* **Capacity.** If ``A = sum_s a_s > C`` the system scales every allocation by
  ``C / A`` (what can actually be reserved) and charges
  ``penalty = PENALTY * (A - C)``.
* **QoE** (hidden, per client): ``q_s = sigmoid(k_s * (a'_s / d_s - t_s))`` with
  the scaled allocation ``a'_s`` and ``d_s`` floored at ``DEMAND_FLOOR``.
* **Revenue** ``R_s = p_s * max(d_s, 0)``: the contract price is proportional
  to the served demand.
* **Cut**: below the contract QoE ``Q0`` the price is reduced proportionally,
  ``cut_s = R_s * max(0, 1 - q_s / Q0)``.
* **Churn**: if the QoE collapses (``q_s < Q_CHURN``) the client leaves, which
  costs ``CHURN_FEE * p_s`` (future revenue, a fixed fee per client).
* **Opex** ``= OPEX * sum_s a'_s``: proportional to the reserved capacity.
* ``profit = sum_s (R_s - cut_s - churn_s) - opex - penalty``.

The cost is ``-profit / norm`` with the FIXED normaliser
``norm = sum_s p_s * PEAK`` (``PEAK`` = 1, a client's training-split peak in
scaled units): the revenue if every client demanded its peak and was fully
served. A fixed normaliser keeps the mean cost an affine function of the mean
profit (a per-hour normaliser such as that hour's attainable revenue would weight
hours unequally and blow up when every demand is near 0), and it makes
"normalised profit" (``-cost``, the quantity of the paper's Table 2) comparable
across hours.

Constants (``make_emulator`` arguments, defaults here):

==============  =======  ===================================================
``capacity``    0.5 * S  ``CAPACITY_FRACTION`` of the sum of the clients'
                         training peaks (each 1 in scaled units), so that not
                         every client fits at busy hours
``Q0``          0.9      contract QoE below which the price is cut
``Q_CHURN``     0.5      QoE below which the client churns
``CHURN_FEE``   1.0      churn cost, in units of ``p_s`` (a peak hour's revenue)
``OPEX``        0.3      cost per unit of reserved capacity
``PENALTY``     1.0      cost per unit of allocation above ``C``
``ACCEPT_EPS``  0.01     allocations at or below it reject the client
==============  =======  ===================================================

Per-client contracts ``CONTRACTS[s] = (p_s, k_s, t_s)`` are a fixed table indexed
by client position (client ``s`` keeps its contract whatever ``S`` is). The
allocation ratio needed to reach ``Q0`` is ``t_s + logit(Q0) / k_s``: it ranges
from 0.88 (clients that tolerate overbooking) to 1.15 (clients that need
headroom), so neither "allocate the forecast" nor any single margin is optimal.

The module also holds the ``knapsack`` baseline of equation (4): admit the
clients maximising ``sum_s R_s x_s`` subject to ``sum_s c'_s x_s <= C`` with the
forecast allocations ``c'_s`` (exact 0/1 DP, brute force, greedy).
"""

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CAPACITY_FRACTION = 0.5
Q0 = 0.9
Q_CHURN = 0.5
CHURN_FEE = 1.0
OPEX = 0.3
PENALTY = 1.0
ACCEPT_EPS = 0.01
DEMAND_FLOOR = 1e-3
PEAK = 1.0
# (price p_s, QoE steepness k_s, QoE threshold t_s); ratio needed for Q0 in the
# comment. Fixed, hidden, not learnable.
CONTRACTS = np.array([
    (1.00, 12.0, 0.80),  # 0.98
    (0.85, 20.0, 0.90),  # 1.01
    (1.20, 8.0, 0.85),  # 1.12
    (0.90, 25.0, 0.80),  # 0.89
    (1.10, 15.0, 0.95),  # 1.10
    (0.95, 10.0, 0.70),  # 0.92
    (1.15, 18.0, 0.88),  # 1.00
    (0.80, 30.0, 0.85),  # 0.92
    (1.05, 9.0, 0.75),  # 0.99
    (0.90, 14.0, 0.92),  # 1.08
    (1.25, 22.0, 0.78),  # 0.88
    (0.95, 11.0, 0.95),  # 1.15
])
MAX_CLIENTS = len(CONTRACTS)


class EmulatorParams(NamedTuple):
    """Everything the emulator knows (and the learner does not).

    Attributes:
      prices: [S] price per unit of served demand.
      steepness: [S] QoE logistic steepness k_s.
      threshold: [S] allocation/demand ratio where the QoE is 0.5 (t_s).
      capacity: shared capacity C, scaled demand units.
      q0, q_churn, churn_fee, opex, penalty, accept_eps: see the module doc.
      norm: profit normaliser, ``sum(prices) * PEAK`` by default.
    """

    prices: np.ndarray
    steepness: np.ndarray
    threshold: np.ndarray
    capacity: float
    q0: float = Q0
    q_churn: float = Q_CHURN
    churn_fee: float = CHURN_FEE
    opex: float = OPEX
    penalty: float = PENALTY
    accept_eps: float = ACCEPT_EPS
    norm: float = 1.0


def emulator_params(
    n_clients: int,
    capacity: float | None = None,
    *,
    prices=None,
    steepness=None,
    threshold=None,
    norm: float | None = None,
    **constants,
) -> EmulatorParams:
    """The emulator's parameters for the first ``n_clients`` contracts.

    Args:
      n_clients: S, 1 .. MAX_CLIENTS unless all three per-client arrays are given.
      capacity: C; default ``CAPACITY_FRACTION * n_clients * PEAK``.
      prices, steepness, threshold: [S] overrides of the contract table.
      norm: profit normaliser; default ``sum(prices) * PEAK``.
      **constants: overrides of q0, q_churn, churn_fee, opex, penalty, accept_eps.

    Returns:
      EmulatorParams.
    """
    table = [prices, steepness, threshold]
    if any(x is None for x in table) and not 1 <= n_clients <= MAX_CLIENTS:
        raise ValueError(f"acra: n_clients must be in 1..{MAX_CLIENTS}, got {n_clients}")
    cols = []
    for j, (name, given) in enumerate(zip(("prices", "steepness", "threshold"), table)):
        col = CONTRACTS[:n_clients, j] if given is None else np.asarray(given, np.float64)
        if col.shape != (n_clients,) or not np.all(np.isfinite(col)) or np.any(col <= 0):
            raise ValueError(
                f"acra: {name} must be {n_clients} positive numbers, got {col}"
            )
        cols.append(col.astype(np.float32))
    capacity = CAPACITY_FRACTION * n_clients * PEAK if capacity is None else capacity
    if not capacity > 0:
        raise ValueError(f"acra: capacity must be > 0, got {capacity}")
    norm = float(cols[0].sum() * PEAK) if norm is None else norm
    if not norm > 0:
        raise ValueError(f"acra: norm must be > 0, got {norm}")
    params = EmulatorParams(*cols, capacity=float(capacity), norm=float(norm))
    unknown = set(constants) - set(EmulatorParams._fields[4:-1])
    if unknown:
        raise ValueError(f"acra: unknown constants {sorted(unknown)}")
    params = params._replace(**{k: float(v) for k, v in constants.items()})
    if not 0 < params.q_churn < params.q0 <= 1:
        raise ValueError(
            f"acra: need 0 < q_churn < q0 <= 1, got {params.q_churn}, {params.q0}"
        )
    return params


def accepted(decision: jax.Array, accept_eps: float = ACCEPT_EPS) -> jax.Array:
    """Number of admitted clients: allocations above ``accept_eps``; [..., S] -> [...]."""
    return jnp.sum(jnp.asarray(decision) > accept_eps, axis=-1)


def profit_breakdown(
    decision: jax.Array, obs: jax.Array, params: EmulatorParams
) -> dict[str, jax.Array]:
    """The operator's profit for one hour, term by term (pure jnp, per sample).

    Args:
      decision: [S] allocations; ``<= accept_eps`` rejects the client.
      obs: [S] realised demands.
      params: EmulatorParams.

    Returns:
      dict of scalars: revenue, cut, churn, opex, penalty (all >= 0), profit
      (revenue - cut - churn - opex - penalty), normalised_profit (profit / norm)
      and accepted (number of admitted clients).
    """
    p = params
    decision = jnp.asarray(decision, jnp.float32)
    demand = jnp.asarray(obs, jnp.float32)
    admit = decision > p.accept_eps
    alloc = jnp.where(admit, decision, 0.0)
    total = jnp.sum(alloc)
    excess = jnp.maximum(total - p.capacity, 0.0)
    # What the system can actually reserve: everyone shrinks by the same factor.
    alloc = alloc * jnp.minimum(1.0, p.capacity / jnp.maximum(total, 1e-12))
    ratio = alloc / jnp.maximum(demand, DEMAND_FLOOR)
    qoe = jax.nn.sigmoid(p.steepness * (ratio - p.threshold))
    revenue = jnp.where(admit, p.prices * jnp.maximum(demand, 0.0), 0.0)
    cut = revenue * jnp.maximum(0.0, 1.0 - qoe / p.q0)
    churn = jnp.where(admit & (qoe < p.q_churn), p.churn_fee * p.prices, 0.0)
    out = {
        "revenue": jnp.sum(revenue),
        "cut": jnp.sum(cut),
        "churn": jnp.sum(churn),
        "opex": p.opex * jnp.sum(alloc),
        "penalty": p.penalty * excess,
    }
    costs = out["cut"] + out["churn"] + out["opex"] + out["penalty"]
    out["profit"] = out["revenue"] - costs
    out["normalised_profit"] = out["profit"] / p.norm
    out["accepted"] = jnp.sum(admit)
    return out


def make_emulator(n_clients: int, capacity: float | None = None, **kwargs):
    """The hidden metric of ``acra``: ``cost(decision [S], obs [S]) -> ()``.

    Args:
      n_clients: S.
      capacity: C; default ``CAPACITY_FRACTION * S``.
      **kwargs: see ``emulator_params``.

    Returns:
      ``acra_cost(decision, obs) = -profit / norm`` (lower is better), pure jnp.
    """
    params = emulator_params(n_clients, capacity, **kwargs)

    def acra_cost(decision, obs):
        return -profit_breakdown(decision, obs, params)["normalised_profit"]

    return acra_cost


# ---------------------------------------------------------------- knapsack (eq. 4)


def _as_batch(values, weights):
    values = np.atleast_2d(np.asarray(values, np.float64))
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    if values.shape != weights.shape or values.ndim != 2:
        raise ValueError(
            f"knapsack: values {values.shape} and weights {weights.shape} differ"
        )
    return values, weights


def knapsack_batch(
    values, weights, capacity: float, resolution: int = 1000, chunk: int = 2048
) -> np.ndarray:
    """Exact 0/1 knapsack by dynamic programming, for N instances at once.

    Weights are rounded UP and the capacity DOWN to a grid of
    ``capacity / resolution``, so every returned set is feasible for the true
    weights, and it is optimal for the rounded instance (exactly optimal when
    the weights lie on the grid). Items with value <= 0 are never taken.

    Args:
      values: [N, S] item values.
      weights: [N, S] item weights (negative ones count as 0).
      capacity: knapsack capacity (> 0).
      resolution: number of grid cells in the capacity.
      chunk: instances per DP block (bounds the [chunk, S, resolution] table).

    Returns:
      [N, S] bool masks of the chosen items.
    """
    values, weights = _as_batch(values, weights)
    if not capacity > 0 or resolution < 1:
        raise ValueError(
            f"knapsack: need capacity > 0 and resolution >= 1, got {capacity}, {resolution}"
        )
    n, s = values.shape
    unit = capacity / resolution
    # The tiny slack keeps weights that sit on the grid from rounding up a cell.
    w = np.ceil(np.maximum(weights, 0.0) / unit - 1e-9).astype(np.int64)
    v = np.where(values > 0, values, -np.inf)  # -inf: never worth taking
    masks = np.zeros((n, s), bool)
    cells = np.arange(resolution + 1)
    for lo in range(0, n, chunk):
        vb, wb = v[lo : lo + chunk], w[lo : lo + chunk]
        m = len(vb)
        best = np.zeros((m, resolution + 1))  # best[i, r]: best value within r cells
        keep = np.zeros((m, s, resolution + 1), bool)
        for j in range(s):
            src = cells[None, :] - wb[:, j : j + 1]  # [m, R+1]
            fits = src >= 0
            cand = np.take_along_axis(best, np.maximum(src, 0), axis=1) + vb[:, j : j + 1]
            take = fits & (cand > best)
            keep[:, j] = take
            best = np.where(take, cand, best)
        r = np.full(m, resolution)
        rows = np.arange(m)
        for j in range(s - 1, -1, -1):  # backtrack from the full capacity
            t = keep[rows, j, r]
            masks[lo + rows, j] = t
            r = r - np.where(t, wb[:, j], 0)
    return masks


def knapsack_exact(
    values, weights, capacity: float, resolution: int = 1000
) -> np.ndarray:
    """One 0/1 knapsack instance by DP: [S], [S] -> [S] bool (see ``knapsack_batch``)."""
    return knapsack_batch(values, weights, capacity, resolution)[0]


def knapsack_brute(values, weights, capacity: float) -> np.ndarray:
    """Exact 0/1 knapsack by enumerating all 2^S subsets (S small; the DP's check).

    Args:
      values, weights: [S] or [N, S].
      capacity: knapsack capacity.

    Returns:
      bool masks of the best feasible subsets, same shape as ``values``.
    """
    single = np.ndim(values) == 1
    values, weights = _as_batch(values, weights)
    s = values.shape[1]
    subsets = np.array(list(itertools.product([0, 1], repeat=s)), np.float64)  # [2^S, S]
    totals = values @ subsets.T  # [N, 2^S]
    feasible = np.maximum(weights, 0.0) @ subsets.T <= capacity + 1e-9
    best = np.argmax(np.where(feasible, totals, -np.inf), axis=1)
    masks = subsets[best].astype(bool)
    return masks[0] if single else masks


def greedy_density(values, weights, capacity: float) -> np.ndarray:
    """Greedy knapsack: take items by decreasing value/weight while they fit.

    Args:
      values, weights: [S] or [N, S]; items with value <= 0 are never taken.
      capacity: knapsack capacity.

    Returns:
      bool masks, same shape as ``values``; always feasible.
    """
    single = np.ndim(values) == 1
    values, weights = _as_batch(values, weights)
    weights = np.maximum(weights, 0.0)
    density = np.where(values > 0, values / np.maximum(weights, 1e-12), -np.inf)
    order = np.argsort(-density, axis=1, kind="stable")
    rows = np.arange(len(values))
    masks = np.zeros(values.shape, bool)
    used = np.zeros(len(values))
    for j in order.T:  # j: [N], each instance's next-densest item
        fits = (values[rows, j] > 0) & (used + weights[rows, j] <= capacity + 1e-9)
        masks[rows, j] = fits
        used = used + np.where(fits, weights[rows, j], 0.0)
    return masks[0] if single else masks


_SOLVERS = {"exact": knapsack_batch, "greedy": greedy_density, "brute": knapsack_brute}


def knapsack_decision(
    forecasts, capacity: float, prices, margin: float = 1.0, solver: str = "exact"
) -> np.ndarray:
    """The ``knapsack`` baseline: admission by equation (4), allocation = forecast.

    Client s is worth ``R_s = p_s * f_s`` and needs ``c'_s = margin * f_s``; the
    admitted clients get ``c'_s``, the others 0.

    Args:
      forecasts: [N, S] forecast demands (scaled units); ``<= 0`` never admitted.
      capacity: C.
      prices: [S] contract prices.
      margin: multiplicative head-room on the forecast (tuned on validation).
      solver: 'exact' (DP), 'brute' or 'greedy'.

    Returns:
      [N, S] allocations.
    """
    if solver not in _SOLVERS:
        raise ValueError(f"acra: solver must be one of {list(_SOLVERS)}, got {solver!r}")
    if not margin > 0:
        raise ValueError(f"acra: margin must be > 0, got {margin}")
    f = np.maximum(np.atleast_2d(np.asarray(forecasts, np.float64)), 0.0)
    need = margin * f
    masks = _SOLVERS[solver](np.asarray(prices, np.float64) * f, need, capacity)
    return np.where(masks, need, 0.0).astype(np.float32)


def oracle_decision(
    demands, capacity: float, prices, margin: float = 1.0, solver: str = "exact"
) -> np.ndarray:
    """Knapsack on the TRUE demands (perfect forecasts, QoE still unknown): [N, S]."""
    return knapsack_decision(demands, capacity, prices, margin, solver)
