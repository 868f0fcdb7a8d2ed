"""The ``forecast`` use case (MetaLoss Table 1): metric, sites, the metaloss preset,
the gain table and ``l2n_train --usecase=forecast --quick``."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from l2n_jax import methods
from l2n_jax.metrics import batch_metric
from l2n_jax.usecases import REGISTRY, forecast
from test_cli import _run

SHORT = 600  # rows per site in the shape tests


def test_metric_is_the_mean_absolute_error():
    rng = np.random.default_rng(0)
    decisions = rng.uniform(-0.5, 1.5, size=(257, 1)).astype(np.float32)
    obs = rng.uniform(0.0, 1.0, size=(257, 1)).astype(np.float32)
    costs = np.asarray(jax.jit(batch_metric(forecast.make_metric()))(decisions, obs))
    np.testing.assert_allclose(costs, np.abs(decisions - obs)[:, 0], rtol=1e-6)
    one = forecast.make_metric()(jnp.array([0.2]), jnp.array([0.5]))
    assert float(one) == pytest.approx(0.3)
    # The gradient of the metric is the sign of the error: MAE, not a smoothed one.
    grad = jax.grad(lambda d: forecast.make_metric()(d, jnp.array([0.5])))
    assert float(grad(jnp.array([0.7]))[0]) == pytest.approx(1.0)
    assert float(grad(jnp.array([0.1]))[0]) == pytest.approx(-1.0)


@pytest.mark.parametrize("site", forecast.SITES)
def test_every_site_loads_with_the_right_shapes(site):
    ws = forecast.load(site, SHORT)
    n_series = 1 + len(forecast.COVARIATES) if site == "appliances" else 1
    assert ws.input_columns == ((forecast.TARGET, *forecast.COVARIATES)
                                if site == "appliances" else (forecast.TARGET,))
    assert sum(len(s) for s in (ws.train, ws.valid, ws.test)) == SHORT - forecast.LOOKBACK
    for split in (ws.train, ws.valid, ws.test):
        n = len(split)
        assert split.inputs.shape == (n, n_series, forecast.LOOKBACK, 1)
        assert split.targets.shape == (n, 1) and split.obs.shape == (n, 1)
        for x in split:
            assert np.isfinite(np.asarray(x)).all()
    assert ws.train.targets.min() >= -1e-6 and ws.train.targets.max() <= 1 + 1e-6
    # The default stretch is the most recent one: the last test target is the last
    # value of the whole series.
    raw = forecast.read_series(site)
    last = ws.scaler.inverse(ws.test.targets[-1:], [forecast.TARGET])[0, 0]
    assert last == pytest.approx(raw[forecast.TARGET].iloc[-1], rel=1e-4)


def test_appliances_covariates_are_the_weather_and_indoor_sensors():
    raw = forecast.read_series("appliances")
    assert list(raw.columns) == [forecast.TARGET, *forecast.COVARIATES]
    assert raw.index.is_monotonic_increasing
    assert (raw.index[1:] - raw.index[:-1] == pd.Timedelta(minutes=10)).all()


def test_full_length_is_longer_than_the_default_stretch():
    assert len(forecast.load("worldcup", None).train) > len(forecast.load("worldcup").train)


def test_unknown_site_or_bad_length_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="atlantis.*eu.*appliances"):
        forecast.load("atlantis")
    with pytest.raises(ValueError, match="atlantis"):
        forecast.read_series("atlantis")
    with pytest.raises(ValueError, match="length"):
        forecast.load("eu", 10)


def test_metaloss_trains_with_the_papers_settings():
    ws = forecast.load("eu", 700)
    config = tiny_config(lr_cycles=2, shaper_activation="siren", replay_size=64)
    task = methods.Task(config, {"eu": ws}, forecast.make_metric(), (0,),
                        forecast.options(), verbose=False)
    run = methods.run("metaloss", task, "forecast")
    used = run.fits["eu"].config
    assert used.shaper_activation == "relu"  # a plain MLP loss net
    assert used.lr_schedule == "cyclic" and used.lr_cycles == 5
    assert used.feed_eps and used.shaper_input == "decision"  # f_l(y_hat + eps, y)
    assert used.noise_schedule != "none"
    assert used.pretrain_epochs == 0 and used.replay_size == 0  # no added measures
    # The predictor and budget are the task's, as for the static-loss baselines.
    assert (used.ir_mlp, used.assembler, used.epochs, used.batch_size) == (
        config.ir_mlp, config.assembler, config.epochs, config.batch_size)
    assert np.isfinite(run.rows["cost"]).all()
    assert "metaloss" in methods.names("forecast")
    assert "metaloss" not in methods.names("netalloc")


def test_every_network_method_gets_the_same_five_cycle_schedule():
    for quick in (False, True):
        config = forecast.get_config(quick=quick)
        assert config.lr_schedule == "cyclic" and config.lr_cycles == 5
        assert config.replace(**forecast.METALOSS).lr_cycles == config.lr_cycles


def test_gain_is_relative_to_the_mae_mean_of_each_site():
    df = pd.DataFrame({
        "site": ["a"] * 4 + ["b"] * 2,
        "method": ["mae", "mae", "metaloss", "metaloss", "mae", "metaloss"],
        "seed": [0, 1, 0, 1, 0, 0],
        "test_cost": [0.02, 0.04, 0.027, 0.027, 0.01, 0.011],
    })
    stats = forecast.gain_table(df).set_index(["site", "method"])
    assert stats.loc[("a", "mae"), "mean"] == pytest.approx(3.0)
    assert stats.loc[("a", "metaloss"), "gain_pct"] == pytest.approx(10.0)
    assert stats.loc[("b", "metaloss"), "gain_pct"] == pytest.approx(-10.0)
    assert stats.loc[("a", "mae"), "gain_pct"] == pytest.approx(0.0)
    assert "| a | metaloss | 2.700 ± 0.000 | +10.00 | 2 |" in forecast.table1(df)


def test_l2n_train_quick_runs_the_forecast_use_case(tmp_path):
    workdir = tmp_path / "out"
    # appliances: the site with covariates (the single series share its code path).
    proc = _run(["--usecase=forecast", "--quick", "--seeds=1", "--sites=appliances",
                 f"--workdir={workdir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(workdir / "results.csv")
    uc = REGISTRY["forecast"]
    assert set(df["method"]) == set(uc.methods)
    assert set(df["site"]) == {"appliances"}
    assert np.isfinite(df["test_cost"]).all() and (df["test_cost"] > 0).all()
    # The cost of a method is its MAE in scaled units.
    np.testing.assert_allclose(df["test_cost"], df["mae"], rtol=1e-4)
    md = (workdir / "results.md").read_text()
    assert "Table 1" in md and "| appliances | metaloss |" in md
