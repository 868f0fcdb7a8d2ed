"""The acra use case: multi-client windows, the multi-client predictor's shapes,
bm-split, and the knapsack/oracle baselines end to end on a small slice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

import l2n_jax as l2n
from l2n_jax import methods
from l2n_jax.data import WindowSet
from l2n_jax.usecases import acra, acra_emulator as emu


def _run(method, config, ws, metric, seeds):
    task = methods.Task(config, {"S4": ws}, metric, seeds, acra.options(),
                        cache=methods.FitCache())
    return methods.run(method, task, "acra_pjm").rows


@pytest.fixture(scope="module")
def ws():
    return acra.load("S4")


@pytest.fixture(scope="module")
def small(ws):
    """A 600/300/300-window slice of S4, for fast end-to-end runs."""
    return WindowSet(ws.train.take(slice(-600, None)), ws.valid.take(slice(0, 300)),
                     ws.test.take(slice(0, 300)), ws.scaler, ws.target_columns,
                     ws.input_columns)


def test_sites_are_client_counts_with_one_input_series_per_client(ws):
    assert acra.n_clients("S10") == 10
    assert ws.train.inputs.shape[1:] == (4, acra.LOOKBACK, 1)
    assert ws.train.targets.shape[1] == 4 and ws.train.obs.shape[1] == 4
    with pytest.raises(ValueError, match="unknown site 'S3'"):
        acra.n_clients("S3")


def test_loads_are_scaled_by_their_training_peak(ws):
    # scale='peak': 0 stays 0 (a rejected client) and the training peak is 1.
    assert np.allclose(ws.scaler.low, 0.0)
    assert np.isclose(np.asarray(ws.train.targets).max(), 1.0)
    assert np.asarray(ws.train.targets).min() > 0.2


def test_multi_client_predictor_emits_one_allocation_per_client(ws):
    for split in (False, True):
        config = tiny_config(split_irs=split)
        net = l2n.nets.make_predictor(config, ws.train.inputs.shape[1:], 4)
        params = net.init(jax.random.key(0))
        x = jnp.asarray(ws.train.inputs[:5])
        decisions, forecasts = net.apply(params, x, jnp.zeros((5, 4)))
        assert decisions.shape == (5, 4) and forecasts.shape == (5, 4)
        if split:  # bm-split: no assembler, each IR decides for its client
            np.testing.assert_array_equal(decisions, forecasts)
            assert set(params) == {"irs"}


def test_split_irs_needs_one_series_per_decision(ws):
    with pytest.raises(ValueError, match="split_irs needs one input series per decision"):
        l2n.nets.make_predictor(tiny_config(split_irs=True), (4, 24, 1), 1)


def test_the_metric_reads_the_number_of_clients_from_the_decision():
    metric = acra.make_metric()
    d = jnp.asarray([0.5, 0.0])
    expected = -emu.profit_breakdown(d, d, emu.emulator_params(2))["normalised_profit"]
    np.testing.assert_allclose(metric(d, d), expected)


def test_baselines_end_to_end_give_rows_with_profit_and_accepted(small):
    metric = acra.make_metric()
    config = tiny_config(batch_size=64)
    rows = {m: _run(m, config, small, metric, (0, 1))
            for m in ("knapsack", "knapsack_margin", "oracle")}
    for method, df in rows.items():
        assert len(df) == 2 and list(df["seed"]) == [0, 1]
        np.testing.assert_allclose(df["profit"], -df["cost"])
        assert ((df["accepted"] > 0) & (df["accepted"] <= 4)).all()
    # The tuned margin comes from the grid (its argmin property is tested below).
    assert rows["knapsack_margin"]["knob"].isin(acra.MARGINS).all()
    assert rows["oracle"]["profit"].nunique() == 1  # no learning, same for every seed


def test_tuned_margin_is_the_validation_argmin(small):
    metric = acra.make_metric()
    rng = np.random.default_rng(0)
    fc = np.asarray(small.valid.targets)[None] * rng.uniform(0.9, 1.1, (1, 300, 4))
    best = acra.tune_margin(fc, small, metric, margins=(0.8, 1.0, 1.2))
    p = emu.emulator_params(4)
    cost = jax.vmap(metric)
    costs = {m: float(cost(jnp.asarray(emu.knapsack_decision(fc[0], p.capacity, p.prices,
                                                             m)), small.valid.obs).mean())
             for m in (0.8, 1.0, 1.2)}
    assert costs[float(best[0])] == min(costs.values())


def test_loss2net_and_bm_split_train_on_the_emulator(small):
    metric = acra.make_metric()
    config = tiny_config(batch_size=64)
    for method in ("loss2net", "bm_split"):
        df = _run(method, config, small, metric, (0,))
        assert np.isfinite(df["profit"]).all() and len(df) == 1


def test_knapsack_methods_are_registered_for_acra_pjm_only():
    assert {"knapsack", "knapsack_margin", "greedy", "oracle"} <= set(
        methods.names("acra_pjm"))
    assert "knapsack" not in methods.names("acra")
    assert "knapsack" not in methods.names("netalloc")
    with pytest.raises(ValueError, match="unknown method 'knapsack'"):
        methods.get("knapsack", "netalloc")


def test_summary_table_has_profit_accepted_and_ratio_to_knapsack():
    import pandas as pd
    df = pd.DataFrame({"site": ["S2"] * 4, "method": ["knapsack", "knapsack", "loss2net",
                                                      "loss2net"],
                       "seed": [0, 1, 0, 1], "profit": [0.1, 0.1, 0.2, 0.2],
                       "accepted": [1.0, 1.0, 1.5, 1.5]})
    md = acra.summary_table(df)
    assert "| S2 | loss2net | 0.2000 ± 0.0000 | 2.00 | 1.50 ± 0.00 | 2 |" in md
