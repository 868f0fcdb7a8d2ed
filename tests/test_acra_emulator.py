"""The acra emulator's bookkeeping on hand-made hours, and the knapsack solvers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2n_jax.usecases import acra_emulator as acra

# Two identical, easy clients: at allocation == demand QoE = sigmoid(20 * 0.2) = 0.982.
EASY = dict(prices=[1.0, 1.0], steepness=[20.0, 20.0], threshold=[0.8, 0.8])


def _breakdown(decision, obs, **kwargs):
    params = acra.emulator_params(2, kwargs.pop("capacity", 1.5), **{**EASY, **kwargs})
    out = acra.profit_breakdown(jnp.array(decision), jnp.array(obs), params)
    return {k: float(v) for k, v in out.items()}


def test_all_rejected_earns_and_costs_nothing():
    out = _breakdown([0.0, acra.ACCEPT_EPS / 2], [0.5, 0.7])
    assert out["accepted"] == 0
    for term in ("revenue", "cut", "churn", "opex", "penalty", "profit"):
        assert out[term] == 0.0, term
    negative = _breakdown([-1.0, -0.2], [0.5, 0.7])
    assert negative["profit"] == 0.0 and negative["accepted"] == 0


def test_exact_allocation_with_good_qoe_earns_revenue_minus_opex():
    out = _breakdown([0.5, 0.0], [0.5, 0.3])
    assert out["accepted"] == 1
    assert out["cut"] == 0.0 and out["churn"] == 0.0 and out["penalty"] == 0.0
    np.testing.assert_allclose(out["revenue"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(out["profit"], 0.5 - acra.OPEX * 0.5, rtol=1e-6)
    emulator = acra.make_emulator(2, 1.5, **EASY)
    cost = emulator(jnp.array([0.5, 0.0]), jnp.array([0.5, 0.3]))
    np.testing.assert_allclose(cost, -out["profit"] / 2.0, rtol=1e-6)  # norm = p1 + p2


def test_under_allocation_cuts_the_price_and_a_collapse_churns():
    qoe = float(jax.nn.sigmoid(20.0 * (0.9 - 0.8)))  # allocation = 0.9 * demand
    assert acra.Q_CHURN < qoe < acra.Q0
    out = _breakdown([0.45, 0.0], [0.5, 0.3])
    np.testing.assert_allclose(out["cut"], 0.5 * (1 - qoe / acra.Q0), rtol=1e-5)
    assert out["churn"] == 0.0
    collapsed = _breakdown([0.25, 0.0], [0.5, 0.3])  # QoE = sigmoid(-6)
    np.testing.assert_allclose(collapsed["churn"], acra.CHURN_FEE * 1.0)
    # (Mild under-allocation may still pay: the cut can be smaller than the opex saved.)
    assert collapsed["profit"] < 0.0 < out["profit"]


def test_allocation_above_capacity_is_scaled_down_and_penalised():
    out = _breakdown([1.0, 1.0], [0.5, 0.5], capacity=1.5)
    np.testing.assert_allclose(out["penalty"], acra.PENALTY * 0.5, rtol=1e-6)
    # Opex is paid on what was reserved: both scaled to 0.75, summing to C.
    np.testing.assert_allclose(out["opex"], acra.OPEX * 1.5, rtol=1e-6)
    assert out["cut"] == 0.0  # 0.75 / 0.5 still gives a good QoE
    inside = _breakdown([0.75, 0.75], [0.5, 0.5], capacity=1.5)
    assert inside["penalty"] == 0.0
    expected = inside["profit"] - out["penalty"]
    np.testing.assert_allclose(out["profit"], expected, rtol=1e-6)


def test_emulator_is_the_same_under_jit_and_vmap_and_finite_at_zero_demand():
    cost = acra.make_emulator(6)
    key_d, key_o = jax.random.split(jax.random.key(0))
    decisions = jax.random.uniform(key_d, (16, 6), minval=-0.2, maxval=1.0)
    obs = jax.random.uniform(key_o, (16, 6)).at[0].set(0.0)
    batched = jax.jit(jax.vmap(cost))(decisions, obs)
    looped = jnp.stack([cost(d, o) for d, o in zip(decisions, obs)])
    assert batched.shape == (16,) and bool(jnp.all(jnp.isfinite(batched)))
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acra.accepted(decisions), jnp.sum(decisions > 0.01, -1))


def test_params_use_the_contract_table_and_validate():
    params = acra.emulator_params(4)
    np.testing.assert_allclose(params.prices, acra.CONTRACTS[:4, 0])
    assert params.capacity == pytest.approx(acra.CAPACITY_FRACTION * 4)
    assert params.norm == pytest.approx(acra.CONTRACTS[:4, 0].sum())
    with pytest.raises(ValueError, match="n_clients"):
        acra.emulator_params(acra.MAX_CLIENTS + 1)
    with pytest.raises(ValueError, match="capacity"):
        acra.emulator_params(2, capacity=0.0)
    with pytest.raises(ValueError, match="unknown constants"):
        acra.emulator_params(2, opx=0.1)


def _instances(n, seed, on_grid):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, n)
    for s in sizes:
        values = rng.uniform(0.0, 1.0, s)
        weights = rng.integers(0, 70, s) / 100 if on_grid else rng.uniform(0, 0.7, s)
        yield values, weights


def test_dp_knapsack_equals_brute_force():
    for values, weights in _instances(50, 0, on_grid=True):
        dp = acra.knapsack_exact(values, weights, 1.0, resolution=100)
        brute = acra.knapsack_brute(values, weights, 1.0)
        assert weights[dp].sum() <= 1.0 + 1e-9
        np.testing.assert_allclose(values[dp].sum(), values[brute].sum(), atol=1e-12)


def test_dp_knapsack_off_the_grid_is_feasible_and_near_optimal():
    for values, weights in _instances(20, 1, on_grid=False):
        dp = acra.knapsack_exact(values, weights, 1.0, resolution=1000)
        best = values[acra.knapsack_brute(values, weights, 1.0)].sum()
        assert weights[dp].sum() <= 1.0 + 1e-9
        assert values[dp].sum() <= best + 1e-12
        assert values[dp].sum() >= best - 1.0 / 8  # loses at most a marginal item


def test_greedy_is_feasible_and_never_beats_exact():
    rng = np.random.default_rng(2)
    values, weights = rng.uniform(0, 1, (200, 6)), rng.uniform(0, 0.6, (200, 6))
    greedy = acra.greedy_density(values, weights, 1.0)
    brute = acra.knapsack_brute(values, weights, 1.0)
    assert np.all((greedy * weights).sum(1) <= 1.0 + 1e-9)
    assert np.all((greedy * values).sum(1) <= (brute * values).sum(1) + 1e-12)
    # ... and is not trivially equal to it.
    assert np.any((greedy * values).sum(1) < (brute * values).sum(1))


def test_knapsack_decision_allocates_margin_times_forecast_to_admitted_clients():
    rng = np.random.default_rng(3)
    forecasts = rng.uniform(-0.1, 1.0, (40, 4))
    prices = acra.CONTRACTS[:4, 0]
    alloc = acra.knapsack_decision(forecasts, 2.0, prices, margin=1.1)
    admitted = alloc > 0
    np.testing.assert_allclose(alloc[admitted], 1.1 * forecasts[admitted], rtol=1e-6)
    assert np.all(alloc.sum(1) <= 2.0 + 1e-5) and not np.any(admitted & (forecasts <= 0))
    assert admitted.sum() < admitted.size  # the capacity binds somewhere
    oracle = acra.oracle_decision(np.clip(forecasts, 0, None), 2.0, prices)
    brute = acra.knapsack_decision(forecasts, 2.0, prices, solver="brute")
    revenue = (oracle * prices).sum(1), (brute * prices).sum(1)
    np.testing.assert_allclose(*revenue, atol=5e-3)
