"""host_metric: a NumPy black box usable under jit, vmap and grad, and in fit()."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax.metrics import batch_metric

from conftest import asymmetric_cost, asymmetric_cost_np, tiny_config


@pytest.fixture
def host():
    return l2n.host_metric(asymmetric_cost_np, decision_dim=1, obs_dim=1)


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    decisions = rng.uniform(0, 1, (64, 1)).astype(np.float32)
    obs = rng.uniform(0, 1, (64, 1)).astype(np.float32)
    return decisions, obs


def test_host_metric_on_one_sample_under_jit_equals_the_jnp_metric(host, sample):
    decisions, obs = sample
    for i in (0, 5, 17):
        got = jax.jit(host)(decisions[i], obs[i])
        chex.assert_shape(got, ())
        np.testing.assert_allclose(got, asymmetric_cost(decisions[i], obs[i]), rtol=1e-6)


def test_host_metric_under_jit_of_vmap_equals_the_jnp_metric(host, sample):
    decisions, obs = sample
    got = jax.jit(jax.vmap(host))(decisions, obs)
    want = jax.vmap(asymmetric_cost)(decisions, obs)
    chex.assert_shape(got, (64,))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(batch_metric(host)(decisions, obs), want, rtol=1e-6)


def test_host_metric_over_seeds_and_batch_is_one_host_call_per_batch(sample):
    calls = []

    def recording_cost(decisions, obs):
        calls.append(decisions.shape)
        return asymmetric_cost_np(decisions, obs)

    host = l2n.host_metric(recording_cost, 1, 1)
    decisions, obs = sample
    seeded = np.stack([decisions, decisions + 0.1, decisions - 0.2])  # [3, 64, 1]
    fn = jax.jit(jax.vmap(jax.vmap(host), in_axes=(0, None)))
    got = fn(seeded, obs)
    want = jax.vmap(jax.vmap(asymmetric_cost), in_axes=(0, None))(seeded, obs)
    chex.assert_shape(got, (3, 64))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert calls == [(3 * 64, 1)]


def test_host_metric_inside_a_scan(host, sample):
    decisions, obs = sample

    def body(total, xs):
        d, o = xs
        return total + host(d, o), None

    total, _ = jax.jit(lambda d, o: jax.lax.scan(body, 0.0, (d, o)))(decisions, obs)
    np.testing.assert_allclose(total, asymmetric_cost_np(decisions, obs).sum(), rtol=1e-5)


def test_grad_of_host_metric_wrt_decisions_is_zero(host, sample):
    decisions, obs = sample
    grad = jax.jit(jax.grad(lambda d: jnp.sum(jax.vmap(host)(d, obs))))(decisions)
    chex.assert_shape(grad, decisions.shape)
    np.testing.assert_array_equal(grad, 0.0)


def test_grad_of_a_shaper_fit_to_host_costs_equals_fit_to_precomputed_costs(host, sample):
    decisions, obs = sample
    x = jnp.concatenate([decisions, obs], axis=-1)

    def fit_loss(w, costs_fn):
        pred = jnp.tanh(x @ w["a"]) @ w["b"]
        return jnp.mean((pred - costs_fn(jnp.asarray(decisions))) ** 2)

    w = {"a": jnp.full((2, 4), 0.3), "b": jnp.linspace(-1.0, 1.0, 4)}
    costs = asymmetric_cost_np(decisions, obs)
    g_host = jax.jit(jax.grad(lambda w: fit_loss(w, lambda d: jax.vmap(host)(d, obs))))(w)
    g_const = jax.grad(lambda w: fit_loss(w, lambda d: jnp.asarray(costs)))(w)
    chex.assert_trees_all_close(g_host, g_const, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(g_host["b"]).sum()) > 0


def test_host_metric_rejects_non_callables():
    with pytest.raises(ValueError, match="callable"):
        l2n.host_metric("not a function", 1, 1)


def test_fit_with_host_metric_matches_fit_with_the_jnp_metric(windowset):
    config = tiny_config()
    host = l2n.host_metric(asymmetric_cost_np, 1, 1)
    seeds = (0, 1)
    r_host = l2n.fit(config, windowset.train, host, seeds=seeds, valid=windowset.valid)
    r_jnp = l2n.fit(config, windowset.train, asymmetric_cost, seeds=seeds,
                    valid=windowset.valid)
    p_host = r_host.predict(windowset.test.inputs)
    p_jnp = r_jnp.predict(windowset.test.inputs)
    chex.assert_shape(p_host, (2, len(windowset.test), 1))
    np.testing.assert_allclose(p_host, p_jnp, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r_host.history["cost"], r_jnp.history["cost"], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_array_equal(r_host.best_epoch, r_jnp.best_epoch)
    cost_host = l2n.evaluate(r_host, windowset.test, host)["cost"]
    cost_jnp = l2n.evaluate(r_jnp, windowset.test, asymmetric_cost)["cost"]
    np.testing.assert_allclose(cost_host, cost_jnp, rtol=1e-4)


def _tiny_windows():
    from conftest import make_series

    return l2n.make_windows(make_series(300, seed=0), ["load"], lookback=4)


def test_metric_returning_the_wrong_shape_is_named_at_the_first_call():
    ws = _tiny_windows()

    def vector_cost(decision, obs):
        return decision - obs  # [1], not a scalar

    with pytest.raises(ValueError, match=r"metric 'vector_cost' must return a scalar .*\(1,\)"):
        l2n.fit(l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32), ws.train, vector_cost)


def test_metric_returning_integers_is_rejected_with_the_dtype():
    ws = _tiny_windows()

    def int_cost(decision, obs):
        return jnp.sum(decision < obs).astype(jnp.int32)

    with pytest.raises(ValueError, match=r"'int_cost' must return float costs, returned dtype int32"):
        l2n.fit(l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32), ws.train, int_cost)


def test_host_metric_raising_is_reported_with_its_name_and_exception():
    ws = _tiny_windows()

    def broken(decisions, obs):
        raise KeyError("tariff table")

    metric = l2n.host_metric(broken, 1, 1)
    with pytest.raises(ValueError, match=r"host metric 'broken' raised KeyError: 'tariff table'"):
        l2n.fit(l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32), ws.train, metric)


def test_host_metric_with_wrong_output_length_or_dims_is_rejected():
    ws = _tiny_windows()
    scalar = l2n.host_metric(lambda d, o: float(np.sum(d)), 1, 1, name="total")
    with pytest.raises(ValueError, match=r"'total' must return costs \[8\], returned shape \(\)"):
        l2n.fit(l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32), ws.train, scalar)
    wrong_dims = l2n.host_metric(lambda d, o: np.sum(d, axis=1), 2, 1, name="two")
    with pytest.raises(ValueError, match=r"declared for decision_dim=2"):
        l2n.fit(l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32), ws.train, wrong_dims)
