"""The ``power`` use case: its recursive outage metric, its site data, a tiny fit on
real PJM load, and a method training every site in one program."""

import jax
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import combinators, methods
from l2n_jax.metrics import batch_metric
from l2n_jax.usecases import REGISTRY, power

from conftest import tiny_config


def test_metric_equals_the_python_loop_with_v_capped_at_5():
    rng = np.random.default_rng(0)
    loads = rng.uniform(0, 1, 40).astype(np.float32)
    # 9 outages in a row, a hit, 2 outages, then mixed.
    under = np.r_[np.ones(9), 0, 1, 1, rng.integers(0, 2, 28)].astype(bool)
    decisions = np.where(under, loads - 0.05, loads + 0.03).astype(np.float32)
    metric = power.make_metric()
    costs = jax.jit(batch_metric(metric))(decisions[:, None], loads[:, None])
    want, want_v = power.reference_cost(decisions, loads)
    np.testing.assert_allclose(costs, want, rtol=1e-6)
    np.testing.assert_allclose(want[:9], power.BETA * np.arange(1, 10))
    assert want[9] == pytest.approx(power.GAMMA * 0.03)
    np.testing.assert_allclose(want[10:12], [power.BETA, 2 * power.BETA])
    # v as the shaper sees it: consecutive outages before the hour, at most 5.
    _, v, _ = l2n.metrics.scan_metric(metric, metric.init(), decisions[:, None],
                                      loads[:, None])
    np.testing.assert_array_equal(v[:, 0], want_v)
    assert want_v[:10] == [0, 1, 2, 3, 4, 5, 5, 5, 5, 5]


def test_metric_rejects_bad_parameters():
    with pytest.raises(ValueError, match="beta and gamma"):
        power.make_metric(beta=0.0)


def test_sites_are_every_region_on_a_common_length():
    assert power.SITES[0] == "PJME" and set(power.SITES) == set(power.pjm.REGIONS)
    a, b = power.load("PJME", 3000), power.load("PJM_Load", 3000)
    assert a is power.load("PJME", 3000)  # cached
    assert [x.shape for x in a.train] == [x.shape for x in b.train]
    assert a.train.inputs.shape[1:] == (1, power.LOOKBACK, 1)
    assert REGISTRY["power"].sites == power.SITES
    with pytest.raises(ValueError, match="unknown site"):
        power.load("MARS")


@pytest.fixture(scope="module")
def pjme():
    return power.load("PJME", 2000)


def test_tiny_power_fit_learns_a_cost_that_grows_with_the_outage_count(pjme):
    config = tiny_config(epochs=6, pretrain_epochs=1, batch_size=32, replay_size=512,
                         shaper_hidden=(32, 32))
    metric = power.make_metric()
    result = l2n.fit(config, pjme.train, metric, seeds=(0,), valid=pjme.valid,
                     segments=4)
    test = l2n.evaluate(result, pjme.test, metric)
    assert np.isfinite(test["cost"]).all()
    per_epoch = result.history.groupby("epoch")["shaper_loss"].mean()
    assert per_epoch.iloc[-1] < per_epoch.iloc[0]
    # The learned loss of an under-provision rises with v (paper Fig. 3).
    y = np.full((6, 1), 0.5, np.float32)
    v = np.arange(6, dtype=np.float32)[:, None]
    learned = result.shaper(y - 0.05, y, v)[0]
    assert learned[5] > learned[0] + 0.5


def test_a_method_trains_every_site_of_its_task_in_one_program(monkeypatch):
    sets = {s: power.load(s, 1500) for s in ("PJME", "DUQ")}
    metric = power.make_metric()
    config = tiny_config(epochs=2, pretrain_epochs=1, batch_size=32)
    calls = []
    real = combinators.fit_fixed_loss_sites

    def counting(*args, **kwargs):
        calls.append(tuple(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(combinators, "fit_fixed_loss_sites", counting)
    task = methods.Task(config, sets, metric, (0, 1), power.options(), label="power",
                        cache=methods.FitCache())
    margin = methods.run("mse_margin", task).rows
    plain = methods.run("mse", task).rows  # the same MSE training, from the cache
    assert calls == [("PJME", "DUQ")]
    assert list(margin["site"]) == ["PJME", "PJME", "DUQ", "DUQ"]
    np.testing.assert_array_equal(plain["forecast_rmse"], margin["forecast_rmse"])
    assert np.isfinite(margin["cost"]).all() and margin["knob"].notna().all()
