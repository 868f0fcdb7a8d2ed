"""acra v2 (issue 19): traffic clients, QoE emulator, baselines and grid oracle."""

import itertools

import numpy as np
import pytest

from l2n_jax.usecases import acra_policies as pol, acra_qoe as qoe, acra_traffic as tr

VOIP, VIDEO, WEB, BULK = range(4)


def _profit(decision, demand, p):
    out = qoe.profit_breakdown(np.asarray(decision, np.float32),
                               np.asarray(demand, np.float32).ravel(), p)
    return {k: float(v) for k, v in out.items()}


def test_voip_full_demand_reaches_max_mos():
    mos = float(qoe.mos(VOIP, np.float32(1.0)))
    assert 4.3 < mos < 4.5  # G.107 default R = 93.2 -> MOS 4.41
    assert float(qoe.qoe(VOIP, np.float32(1.0))) == pytest.approx(1.0)
    # 4% loss is about R = 80, the contract level; 10% is well below.
    p = qoe.params(1, 1)
    assert float(qoe.qoe(VOIP, np.float32(0.97))) > p.q0[0]
    assert float(qoe.qoe(VOIP, np.float32(0.90))) < p.q0[0]


@pytest.mark.parametrize("cls", range(4))
def test_full_allocation_has_no_cut_and_qoe_is_monotone(cls):
    p = qoe.params(1, 3, capacity=1.0, classes=[cls], fixed=0.0, min_rate=0.0)
    demand = np.array([[0.5, 0.6, 0.4]])
    out = _profit([0.6], demand, p)
    assert out["cut"] == pytest.approx(0.0, abs=1e-6)
    assert out["revenue"] == pytest.approx(p.prices[0] * 1.5, rel=1e-6)
    assert out["opex"] == pytest.approx(qoe.OPEX * 0.6 * 3, rel=1e-6)
    r = np.linspace(0.01, 1.0, 50, dtype=np.float32)
    assert np.all(np.diff(np.asarray(qoe.qoe(cls, r))) >= -1e-6)


def test_needed_fractions_differ_by_class():
    p = qoe.params(4, 1)
    r = np.linspace(0, 1.2, 1201, dtype=np.float32)
    need = [r[np.argmax(np.asarray(qoe.qoe(c, r)) >= p.q0[c] - 1e-6)] for c in range(4)]
    assert need[VOIP] > 0.9 and need[VIDEO] < 0.5 and need[WEB] < 0.6 and need[BULK] < 0.3


def test_overbooking_is_scaled_to_capacity_and_penalised():
    p = qoe.params(2, 2, capacity=1.0, classes=[BULK, BULK], fixed=0.0, min_rate=0.0)
    out = _profit([0.8, 0.8], np.full((2, 2), 0.8), p)
    assert out["opex"] == pytest.approx(qoe.OPEX * 1.0 * 2, rel=1e-5)  # scaled to C
    assert out["penalty"] == pytest.approx(qoe.PENALTY * 0.6 * 2, rel=1e-5)
    assert out["binding"] == 1.0


def test_fixed_cost_and_min_rate_only_for_admitted_clients():
    p = qoe.params(3, 2, classes=[WEB, WEB, WEB], fixed=0.1, min_rate=0.2)
    demand = np.full((3, 2), 0.3)
    out = _profit([0.3, 0.0, 0.05], demand, p)  # client 2 is raised to min_rate
    assert out["fixed"] == pytest.approx(2 * 0.1 * 2, rel=1e-6)
    assert out["opex"] == pytest.approx(qoe.OPEX * (0.3 + 0.2) * 2, rel=1e-5)
    assert out["accepted"] == 2.0
    assert out["revenue"] == pytest.approx(2 * 0.3 * 2, rel=1e-5)


def test_churn_when_qoe_collapses():
    p = qoe.params(1, 2, capacity=1.0, classes=[VOIP], fixed=0.0, min_rate=0.0)
    out = _profit([0.1], np.full((1, 2), 1.0), p)
    assert out["churn"] == pytest.approx(qoe.CHURN_FEE * p.prices[0] * 2)
    assert _profit([1.0], np.full((1, 2), 1.0), p)["churn"] == 0.0


def test_emulator_is_a_jax_metric():
    import jax
    cost = jax.jit(qoe.make_emulator(2, 3))
    c = cost(np.array([0.5, 0.0], np.float32), np.full(6, 0.4, np.float32))
    g = jax.grad(lambda d: cost(d, np.full(6, 0.4, np.float32)))(
        np.array([0.3, 0.3], np.float32))
    assert np.isfinite(float(c)) and np.all(np.isfinite(np.asarray(g)))


def test_mckp_matches_brute_force():
    rng = np.random.default_rng(0)
    for s, n_lv, cells in [(2, 4, 5), (3, 4, 6), (3, 3, 3)]:
        values = rng.normal(size=(20, s, n_lv))
        values[:, :, 0] = 0.0
        weights = np.arange(n_lv)
        got, want = (f(values, weights, cells) for f in (pol.mckp_batch, pol.mckp_brute))
        pick = lambda c: values[np.arange(20)[:, None], np.arange(s)[None], c].sum(1)
        np.testing.assert_allclose(pick(got), pick(want))
        assert np.all(weights[got].sum(1) <= cells)


def test_grid_oracle_is_the_best_grid_decision():
    p = qoe.params(2, 3, capacity=0.3, fixed=0.02, min_rate=0.05)
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.05, 0.3, size=(4, 2, 3))
    got = pol.grid_oracle(truth, p, cell=0.05)
    grid = [0.0] + [k * 0.05 for k in range(1, 7)]
    for i in range(4):
        best = max(qoe.evaluate(np.array([c]), truth[i : i + 1], p)["normalised_profit"]
                   for c in itertools.product(grid, repeat=2) if sum(c) <= 0.3 + 1e-9)
        mine = qoe.evaluate(got[i : i + 1], truth[i : i + 1], p)["normalised_profit"]
        assert mine == pytest.approx(best, abs=1e-5)


def test_knapsack_policy_respects_capacity():
    p = qoe.params(3, 2, capacity=1.0)
    f = np.full((5, 3, 2), 0.5)
    a = pol.knapsack_policy(f, p, factors=1.2)
    assert np.all(a.sum(1) <= 1.0 + 1e-6) and np.all((a == 0) | (a >= p.min_rate))


def test_client_layout():
    table = tr.client_table()
    assert len(table) == 19 and [t[0] for t in table[:3]] == ["eu", "uk", "wc"]
    for fam, start, raw in table:
        assert start.weekday() == 0 and start.hour == 0 and raw.shape == (tr.WEEK,)
        series = tr.read_series(fam)  # every client is real data, unchanged
        np.testing.assert_array_equal(raw, series[start:][: tr.WEEK].to_numpy())
    starts = {f: sorted(t[1] for t in table if t[0] == f) for f in tr.FILES}
    for s in starts.values():  # weeks of one family never overlap
        assert all((b - a).days >= 7 for a, b in zip(s, s[1:]))
    c = tr.load_clients(12)
    assert c.demand.shape == (12, tr.WEEK)
    assert np.allclose(c.demand[:, tr.split_mask("train")].max(1), 1.0)
    slots = {sp: set((tr.period_starts(sp, 12)[:, None] + np.arange(12)).ravel())
             for sp in tr.SPLIT_DAYS}
    for a, b in itertools.combinations(slots.values(), 2):
        assert not a & b
    x, y = tr.windows(c.demand, "test", 12)
    assert x.shape == (len(tr.period_starts("test")), 12, tr.LAGS + 12)
    assert y.shape == (x.shape[0], 12, 12)
