"""``Config.tune_offset``: Loss2Net's decisions plus a per-seed offset tuned on the
validation split with the true metric (issue 18), as every baseline's margin is."""

import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from conftest import make_series
from l2n_jax.usecases import probes, quick_config


def cost(decision, obs):
    """4:1 under/over-provisioning: the best offset of a poor forecaster is > 0."""
    x = decision - obs
    return jnp.sum(4.0 * jnp.maximum(-x, 0.0) + jnp.maximum(x, 0.0))


@pytest.fixture(scope="module")
def data():
    return l2n.make_windows(make_series(1200, seed=0), ["load"], lookback=8)


@pytest.fixture(scope="module")
def fits(data):
    config = quick_config()
    plain = l2n.fit(config, data.train, cost, seeds=(0, 1), valid=data.valid, verbose=False)
    tuned = l2n.fit(config.replace(tune_offset=True), data.train, cost, seeds=(0, 1),
                    valid=data.valid, verbose=False)
    return plain, tuned


def test_the_offset_is_added_to_the_same_predictor(data, fits):
    plain, tuned = fits
    offset = np.asarray(tuned.params["offset"])
    assert offset.shape == (2,)
    np.testing.assert_allclose(tuned.predict(data.test.inputs),
                               plain.predict(data.test.inputs) + offset[:, None, None],
                               atol=1e-6)
    assert "offset" not in plain.params


def test_the_offset_does_not_raise_the_validation_cost(data, fits):
    plain, tuned = fits
    before = l2n.evaluate(plain, data.valid, cost)["cost"].to_numpy()
    after = l2n.evaluate(tuned, data.valid, cost)["cost"].to_numpy()
    assert (after <= before + 1e-6).all()
    assert (after < before - 1e-4).any()  # it found a better offset on some seed


def test_the_offset_is_saved_and_loaded(tmp_path, data, fits):
    _, tuned = fits
    tuned.save(str(tmp_path / "fit.l2n"))
    back = l2n.load(str(tmp_path / "fit.l2n"))
    np.testing.assert_array_equal(back.predict(data.test.inputs), tuned.predict(data.test.inputs))


def test_each_site_gets_its_own_offset(data):
    config = quick_config().replace(tune_offset=True)
    v = data.valid
    shifted = l2n.Windows(v.inputs, v.targets + 0.2, v.obs + 0.2, v.ir_targets, v.current)
    out = l2n.fit_sites(config, {"a": data.train, "b": data.train}, cost, seeds=(0,),
                        valids={"a": data.valid, "b": shifted}, verbose=False)
    # Same training, a validation split whose demand is 0.2 higher: a larger offset.
    assert float(out["b"].params["offset"][0]) > float(out["a"].params["offset"][0]) + 0.1


def test_a_stateful_metric_is_tuned_as_one_sequence(data):
    config = quick_config().replace(tune_offset=True)
    metric = probes.make_metric("backlog")
    fit = l2n.fit(config, data.train, metric, seeds=(0,), valid=data.valid, segments=4,
                  verbose=False)
    offset = float(fit.params["offset"][0])
    base = fit.predict(data.valid.inputs) - offset
    costs = [l2n.evaluate(fit, data.valid, metric, decisions=base + o)["cost"].iloc[0]
             for o in (0.0, offset)]
    assert costs[1] <= costs[0] + 1e-6


def test_without_validation_data_there_is_no_offset(data):
    fit = l2n.fit(quick_config().replace(tune_offset=True), data.train, cost, seeds=(0,),
                  verbose=False)
    assert "offset" not in fit.params


def test_tune_offset_must_be_a_bool():
    with pytest.raises(ValueError, match="tune_offset"):
        l2n.Config(tune_offset=1)
