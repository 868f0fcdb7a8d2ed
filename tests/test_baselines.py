"""Baselines (tune_margin, linear_ar, persistence), fixed losses, compare helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import l2n_jax as l2n
from l2n_jax import baselines, losses, methods, tables

from conftest import UNDER_WEIGHT, asymmetric_cost, asymmetric_cost_np, make_series


def _windows(targets, inputs=None):
    targets = np.asarray(targets, np.float32)
    n = len(targets)
    if inputs is None:
        inputs = np.zeros((n, 1, 2, 1), np.float32)
    return l2n.Windows(inputs, targets, targets, targets, targets)


def test_tune_margin_finds_the_cost_minimising_margin_per_seed():
    rng = np.random.default_rng(0)
    targets = rng.uniform(0.2, 0.8, (400, 1))
    # Seed 0: noisy unbiased forecasts; seed 1: the same, biased up by 0.3.
    noise = rng.normal(0, 0.1, (400, 1))
    forecasts = np.stack([targets + noise, targets + noise + 0.3]).astype(np.float32)
    valid = _windows(targets)
    margins = baselines.tune_margin(forecasts, valid, asymmetric_cost)
    assert margins.shape == (2,)

    # Brute force over a fine grid of margins, with the NumPy cost.
    grid = np.linspace(-0.6, 0.6, 2401)
    for s in range(2):
        costs = [asymmetric_cost_np(forecasts[s] + m, targets).mean() for m in grid]
        tuned = asymmetric_cost_np(forecasts[s] + margins[s], targets).mean()
        assert tuned <= min(costs) + 1e-4
        # For 4 relu(y - d) + relu(d - y) the optimum is the 0.8 residual quantile.
        q = np.quantile(targets - forecasts[s], UNDER_WEIGHT / (UNDER_WEIGHT + 1))
        assert margins[s] == pytest.approx(q, abs=0.01)
    assert margins[0] > 0.0
    assert margins[1] == pytest.approx(margins[0] - 0.3, abs=0.01)


def test_tune_margin_keeps_zero_when_forecasts_are_exact():
    targets = np.linspace(0, 1, 50)[:, None]
    margins = baselines.tune_margin(targets[None].astype(np.float32), _windows(targets),
                                    asymmetric_cost)
    np.testing.assert_allclose(margins, 0.0, atol=1e-6)


def test_linear_ar_recovers_the_coefficients_of_an_exactly_linear_series():
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    y = np.full(n, np.nan)
    y[3:] = 0.7 * x[2:-1] + 0.2 * x[:-3] + 1.5  # y_t = 0.7 x_{t-1} + 0.2 x_{t-3} + 1.5
    frame = pd.DataFrame({"x": x, "y": y}).iloc[3:].reset_index(drop=True)
    ws = l2n.make_windows(frame, ["y"], lookback=4, input_columns=["x"])
    predict = baselines.linear_ar(ws.train, ridge=1e-10)
    np.testing.assert_allclose(predict(ws.test), ws.test.targets, atol=1e-4)

    # Probe the fitted linear map with the zero window and the unit windows.
    probes = np.zeros((5, 1, 4, 1), np.float32)
    for j in range(4):
        probes[j + 1, 0, j, 0] = 1.0
    out = predict(_windows(np.zeros((5, 1)), probes))[:, 0]
    coef = out[1:] - out[0]
    (lx, ly), (hx, hy) = ws.scaler.low, ws.scaler.high
    ratio = (hx - lx) / (hy - ly)  # scaled-x units -> scaled-y units
    np.testing.assert_allclose(coef, np.array([0.0, 0.2, 0.0, 0.7]) * ratio, atol=1e-4)
    intercept = (0.9 * lx + 1.5 - ly) / (hy - ly)
    np.testing.assert_allclose(out[0], intercept, atol=1e-4)


def test_persistence_repeats_the_last_observed_value():
    ws = l2n.make_windows(make_series(200), ["load"], lookback=6)
    np.testing.assert_array_equal(baselines.persistence(ws.test),
                                  ws.test.inputs[:, 0, -1, :])


@pytest.mark.parametrize("alpha, e", [(0.5, 0.1), (2.0, 0.3)])
def test_alpha_omc_is_continuous_and_minimal_at_e_alpha(alpha, e):
    loss = losses.alpha_omc(alpha, e)
    f = jax.jit(jax.vmap(lambda x: loss(jnp.atleast_1d(x), jnp.zeros(1))))
    h = 1e-5
    for x0 in (0.0, e * alpha):
        left, mid, right = np.asarray(f(jnp.array([x0 - h, x0, x0 + h])))
        assert abs(left - mid) < 1e-3 and abs(right - mid) < 1e-3
    assert float(f(jnp.array([0.0]))[0]) == pytest.approx(alpha, rel=1e-5)
    grid = jnp.linspace(-2.0, 2.0, 4001)
    values = np.asarray(f(grid))
    assert values.min() >= -1e-6
    assert float(grid[np.argmin(values)]) == pytest.approx(e * alpha, abs=2e-3)
    assert float(f(jnp.array([e * alpha]))[0]) == pytest.approx(0.0, abs=1e-6)


def test_alpha_omc_rejects_non_positive_parameters():
    with pytest.raises(ValueError):
        losses.alpha_omc(0.0)
    with pytest.raises(ValueError):
        losses.alpha_omc(1.0, e=-0.1)


def test_pinball_at_one_half_is_half_the_mae():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 100, 3)).astype(np.float32)
    got = jax.vmap(losses.pinball(0.5))(pred, target)
    np.testing.assert_allclose(got, 0.5 * jax.vmap(losses.mae)(pred, target), rtol=1e-6)


def test_pinball_penalises_under_prediction_by_tau():
    loss = losses.pinball(0.8)
    assert float(loss(jnp.zeros(1), jnp.ones(1))) == pytest.approx(0.8)
    assert float(loss(jnp.ones(1), jnp.zeros(1))) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="tau"):
        losses.pinball(1.0)


def test_mse_mae_msle_match_numpy():
    rng = np.random.default_rng(1)
    pred, target = rng.uniform(0, 1, (2, 50)).astype(np.float32)
    np.testing.assert_allclose(losses.mse(pred, target), np.mean((pred - target) ** 2),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.mae(pred, target), np.mean(np.abs(pred - target)),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.msle(pred, target),
                               np.mean((np.log1p(pred) - np.log1p(target)) ** 2), rtol=1e-4)
    assert np.isfinite(float(losses.msle(jnp.array([-5.0]), jnp.array([0.0]))))


@pytest.fixture(scope="module")
def small_windowset():
    return l2n.make_windows(make_series(300), ["load"], lookback=6)


def _run(method, ws, seeds):
    task = methods.Task(l2n.Config(), {"s": ws}, asymmetric_cost, seeds)
    return methods.run(method, task).rows


def test_training_free_baselines_give_scored_rows(small_windowset):
    seeds = (0, 1)
    for method in ("persistence", "ar", "persistence_margin", "ar_margin"):
        df = _run(method, small_windowset, seeds)
        assert len(df) == 2 and (df["method"] == method).all()
        assert set(df.columns) >= {"site", "seed", "method", "cost", "rmse", "mae",
                                   "under_rate", "forecast_rmse", "knob", "train_s"}
        assert np.isfinite(df["cost"]).all()
    persistence = _run("persistence", small_windowset, seeds)
    margin = _run("persistence_margin", small_windowset, seeds)
    # The margin is tuned on the validation split; on test it should still help here.
    assert (margin["cost"].to_numpy() < persistence["cost"].to_numpy()).all()
    assert (margin["knob"] > 0).all()


def test_unknown_methods_are_refused_naming_the_known_ones(small_windowset):
    with pytest.raises(ValueError, match="unknown method 'nope'; known: loss2net"):
        _run("nope", small_windowset, (0,))


def test_summary_table_has_one_row_per_site_and_method_with_ratios():
    df = pd.DataFrame({
        "site": ["s1"] * 4 + ["s2"] * 2,
        "method": ["loss2net", "loss2net", "mse", "mse", "loss2net", "mse"],
        "seed": [0, 1, 0, 1, 0, 0],
        "test_cost": [1.0, 3.0, 4.0, 4.0, 2.0, 1.0],
        "forecast_rmse": [0.1] * 6,
        "under_rate": [0.2] * 6,
    })
    table = tables.summary_table(df)
    lines = [l for l in table.splitlines() if l.startswith(("| s1 ", "| s2 "))]
    assert len(lines) == 4
    l2n_s1 = next(l for l in lines if l.startswith("| s1 | loss2net"))
    assert "2.00000 ± 1.41421 | 2.00000 | 1.00 |" in l2n_s1
    mse_s1 = next(l for l in lines if l.startswith("| s1 | mse"))
    assert "| 2.00 |" in mse_s1  # median 4.0 vs loss2net's median 2.0
    mse_s2 = next(l for l in lines if l.startswith("| s2 | mse"))
    assert "| 0.50 |" in mse_s2
    assert "lower is better" in table


def test_a_diverged_seed_is_flagged_and_does_not_drive_the_ratio():
    costs = [0.05, 0.06, 0.05, 0.055, 9.0] + [0.1] * 5
    df = pd.DataFrame({"site": "a", "method": ["loss2net"] * 5 + ["mse"] * 5,
                       "seed": list(range(5)) * 2, "test_cost": costs,
                       "forecast_rmse": 0.1, "under_rate": 0.1})
    table = tables.summary_table(df)
    row = next(l for l in table.splitlines() if l.startswith("| a | loss2net"))
    assert "5 (1 diverged)" in row
    mse = next(l for l in table.splitlines() if l.startswith("| a | mse"))
    assert "| 1.82 |" in mse  # 0.1 / median 0.055, not / the mean 1.84


def test_without_loss2net_the_first_method_is_the_reference():
    df = pd.DataFrame({"site": "a", "method": ["mse", "mae"], "seed": 0,
                       "test_cost": [2.0, 1.0], "forecast_rmse": 0.1, "under_rate": 0.1})
    table = tables.summary_table(df)
    assert "× mse" in table and "nan" not in table and "| 0.50 |" in table


def test_compare_runs_loss2net_and_the_tuned_baselines_on_a_users_data(small_windowset):
    config = l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                        assembler=(8,), shaper_hidden=(16, 16), log_every=3)
    result = l2n.compare(small_windowset, asymmetric_cost, config=config, seeds=(0, 1),
                         verbose=False)
    rows = result.rows
    assert list(dict.fromkeys(rows["method"])) == ["loss2net", *tables.BASELINES]
    assert rows.groupby("method").size().eq(2).all() and np.isfinite(rows["test_cost"]).all()
    tuned = rows[rows["method"] == "pinball_tuned"]
    assert tuned["knob"].between(0, 1).all()
    assert "| data | pinball_tuned |" in result.markdown()
    assert set(result.fits["loss2net"]) == {"data"}
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        l2n.compare(small_windowset, asymmetric_cost, methods=("loss2net", "nope"))


def test_plot_costs_writes_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    df = pd.DataFrame({"site": ["a"] * 4, "method": ["x", "x", "y", "y"], "seed": [0, 1] * 2,
                       "test_cost": [0.1, 0.2, 1.0, 3.0]})
    assert tables.plot_costs(df, tmp_path / "costs.png")
    assert (tmp_path / "costs.png").stat().st_size > 1000
