"""``acra`` v2 (``usecases/acra_v2.py``): registration, windows, metric wiring, a tiny fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import methods
from l2n_jax.usecases import REGISTRY, acra_v2
from l2n_jax.usecases import acra_policies as pol
from l2n_jax.usecases import acra_qoe as qoe
from l2n_jax.usecases import acra_traffic as tr


def test_registered_with_both_site_families_and_its_methods():
    uc = REGISTRY["acra"]
    for s in (1, 2, 4, 6, 8, 12):
        assert f"S{s}" in uc.sites and f"S{s}c" in uc.sites
    assert set(uc.default_sites) <= set(uc.sites)
    v2 = {"v2_knapsack", "v2_knapsack_margin", "v2_knapsack_factors",
          "v2_oracle_demand", "v2_oracle_qoe"}
    assert v2 <= set(uc.methods) <= set(methods.names("acra"))
    assert {"loss2net", "bm_split"} <= set(uc.methods)
    # v2's baselines are not offered to v1, and v1's table is unchanged.
    assert not v2 & set(methods.names("acra_pjm"))
    assert "v2_knapsack" not in REGISTRY["acra_pjm"].methods


def test_sites_parse_and_unknown_site_raises():
    assert acra_v2.parse_site("S6") == (6, 12)
    assert acra_v2.parse_site("S12c") == (12, 72)
    assert acra_v2.site_params("S12c").capacity == pytest.approx(0.3 * 12)
    assert acra_v2.site_params("S4").capacity == pytest.approx(0.5 * 4)
    for bad in ("S3", "S12x", "atlantis"):
        with pytest.raises(ValueError, match="unknown site"):
            acra_v2.load(bad)


@pytest.mark.parametrize("site, s, h", [("S2", 2, 12), ("S2c", 2, 72)])
def test_windows_shapes_and_split_days(site, s, h):
    ws = acra_v2.load(site)
    demand = tr.load_clients(s).demand
    for name in ("train", "valid", "test"):
        w = getattr(ws, name)
        t0 = tr.period_starts(name, h)
        n = len(t0)
        assert w.inputs.shape == (n, s, tr.LAGS + h, 1)
        assert w.targets.shape == (n, s) and w.ir_targets.shape == (n, s)
        assert w.obs.shape == (n, s * h) and w.current.shape == (n, s)
        # Every period lies in one day of this split, and obs are its demands.
        days = {(t // tr.SLOTS_PER_DAY, (t + h - 1) // tr.SLOTS_PER_DAY) for t in t0}
        assert all(a == b and a in tr.SPLIT_DAYS[name] for a, b in days)
        k = n // 2
        np.testing.assert_allclose(
            w.obs[k].reshape(s, h), demand[:, t0[k] : t0[k] + h], rtol=1e-6)
        np.testing.assert_allclose(w.targets[k], demand[:, t0[k] : t0[k] + h].mean(1),
                                   rtol=1e-6)
        np.testing.assert_allclose(w.current[k], demand[:, t0[k] - 1], rtol=1e-6)


@pytest.mark.parametrize("site", ["S2", "S2c"])
def test_metric_on_knapsack_matches_the_headroom_numbers(site):
    s, h = acra_v2.parse_site(site)
    p = acra_v2.site_params(site)
    ft, yt = tr.forecasts(s, h)["test"]
    decisions = pol.knapsack_policy(ft, p)
    reference = qoe.evaluate(decisions, yt, p)["normalised_profit"]  # as the benchmark
    task = methods.Task(config=acra_v2.get_config(quick=True),
                        sites={site: acra_v2.load(site)}, metric=acra_v2.make_metric(),
                        seeds=(0, 1), options=acra_v2.options())
    out = methods.REGISTRY["v2_knapsack"].fn(task)[site]
    got = out.decide("test")
    assert got.shape == (2, len(yt), s)
    np.testing.assert_array_equal(got[0], decisions)
    cost = jax.jit(jax.vmap(acra_v2.make_metric()))(jnp.asarray(got[0]),
                                                    jnp.asarray(task.sites[site].test.obs))
    assert -float(cost.mean()) == pytest.approx(reference, rel=1e-5)
    rows = methods.rows(task, {site: out}, "v2_knapsack")
    assert rows["profit"].to_numpy() == pytest.approx(reference, rel=1e-5)
    assert (rows["accepted"] <= s).all()


def test_headroom_default_s2_row():
    """The committed head-room table (BUILD_NOTES §20d, S = 2): (a) 0.2356."""
    site = "S2"
    task = methods.Task(config=acra_v2.get_config(quick=True),
                        sites={site: acra_v2.load(site)}, metric=acra_v2.make_metric(),
                        seeds=(0,), options=acra_v2.options())
    rows = methods.rows(task, methods.REGISTRY["v2_knapsack"].fn(task), "v2_knapsack")
    assert float(rows["profit"].iloc[0]) == pytest.approx(0.2356, abs=1e-4)


@pytest.mark.parametrize("split", [False, True], ids=["loss2net", "bm_split"])
def test_tiny_fit_at_the_default_head_runs_and_gives_finite_costs(split):
    ws = acra_v2.load("S2")
    default = acra_v2.get_config()
    head = {k: getattr(default, k) for k in acra_v2.HEAD_FIELDS}
    config = acra_v2.get_config(quick=True).replace(epochs=2, pretrain_epochs=1,
                                                     split_irs=split, **head)
    fit = l2n.fit(config, ws.train, acra_v2.make_metric(), seeds=(0,), valid=ws.valid,
                  verbose=False)
    assert np.isfinite(fit.history["cost"].to_numpy()).all()
    decisions = np.asarray(fit.predict(ws.test.inputs))
    assert decisions.shape == (1, len(ws.test.obs), 2) and (decisions >= 0).all()


def test_set_changes_counts_periods_off_the_most_frequent_set():
    static = np.ones((10, 3), bool)
    assert acra_v2.set_changes(static) == 0.0
    varied = static.copy()
    varied[:3, 1] = False  # 3 of 10 periods admit another set
    assert acra_v2.set_changes(varied) == pytest.approx(0.3)


def test_summary_states_the_share_of_the_c_to_e_gap():
    import pandas as pd

    rows = [{"site": "S4", "method": m, "seed": 0, "profit": p, "accepted": 4.0,
             "set_changes": 0.0}
            for m, p in (("v2_knapsack", 0.2), ("v2_knapsack_factors", 0.3),
                         ("v2_oracle_qoe", 0.4), ("loss2net", 0.35))]
    table = acra_v2.summary_table(pd.DataFrame(rows))
    line = next(x for x in table.splitlines() if "| loss2net |" in x)
    cells = [c.strip() for c in line.split("|")]
    assert cells[4:7] == ["1.750", "1.167", "0.50"]


def test_head_specs_start_from_the_engines_head_defaults():
    # The default is one spec; a bare head name is that head at Config's floor and
    # input, whatever acra's default is, so a committed study command keeps its meaning.
    default = acra_v2.get_config()
    assert acra_v2.head_config("admit_diff+admit_floor=0.01+shaper_input=admission") == default
    bare = acra_v2.head_config("admit_diff")
    assert (bare.admit_floor, bare.shaper_input) == (l2n.Config().admit_floor, "decision")
    assert bare.replace(admit_floor=0.01, shaper_input="admission") == default
    split = acra_v2.head_config("amount/split")
    assert split.split_irs and split.decision_head == "amount" and not default.split_irs
    with pytest.raises(ValueError, match="head"):
        acra_v2.head_config("amount/joint")
    with pytest.raises(ValueError, match="Config field"):
        acra_v2.head_config("admit_diff+no_such_field=1")
