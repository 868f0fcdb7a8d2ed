"""``Config.cost_to_go``: with a stateful metric the shaper fits the discounted mean
of a decision's own and its segment's later costs (issue 18)."""

import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from conftest import make_series
from l2n_jax import variants
from l2n_jax.usecases import probes, quick_config


def _reference(lane, discount):
    out = []
    for t in range(len(lane)):
        w = [discount**k for k in range(len(lane) - t)]
        out.append(sum(wi * ci for wi, ci in zip(w, lane[t:])) / sum(w))
    return out


@pytest.mark.parametrize("discount", [0.0, 0.5, 0.9])
def test_targets_are_discounted_means_within_each_segment(discount):
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.0, 2.0, 12).astype(np.float32)
    got = np.asarray(variants.cost_to_go(discount, 3)(jnp.asarray(costs)))
    want = sum((_reference(list(lane), discount) for lane in costs.reshape(3, 4)), [])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # A segment's last decision has no later cost in the batch: its own.
    np.testing.assert_allclose(got.reshape(3, 4)[:, -1], costs.reshape(3, 4)[:, -1])


def test_a_later_cost_reaches_an_earlier_decision_only_in_its_segment():
    costs = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0])
    got = np.asarray(variants.cost_to_go(0.5, 2)(costs))
    assert (got[:4] == 0).all() and (got[4:] > 0).all()
    assert np.all(np.diff(got[4:]) > 0)  # nearer the costly step, a larger share


@pytest.fixture(scope="module")
def data():
    return l2n.make_windows(make_series(900, seed=1), ["load"], lookback=8)


def test_a_stateful_fit_learns_on_costs_to_go(data):
    metric = probes.make_metric("backlog")
    config = quick_config()
    plain = l2n.fit(config, data.train, metric, seeds=(0,), segments=4, verbose=False)
    ahead = l2n.fit(config.replace(cost_to_go=0.5), data.train, metric, seeds=(0,),
                    segments=4, verbose=False)
    # The same reported costs at the first step, different shaper targets after it.
    assert ahead.history["cost"].iloc[0] == pytest.approx(plain.history["cost"].iloc[0])
    assert not np.allclose(ahead.history["shaper_loss"], plain.history["shaper_loss"])
    assert np.isfinite(l2n.evaluate(ahead, data.test, metric)["cost"]).all()


def test_a_memoryless_metric_ignores_it(data):
    cost = probes.make_metric("quad_under")
    config = quick_config()
    a = l2n.fit(config, data.train, cost, seeds=(0,), verbose=False)
    b = l2n.fit(config.replace(cost_to_go=0.5), data.train, cost, seeds=(0,), verbose=False)
    np.testing.assert_array_equal(a.predict(data.test.inputs), b.predict(data.test.inputs))


def test_the_discount_must_be_below_one():
    with pytest.raises(ValueError, match="cost_to_go"):
        l2n.Config(cost_to_go=1.0)
    with pytest.raises(ValueError, match="cost_to_go"):
        l2n.Config(cost_to_go=-0.1)
