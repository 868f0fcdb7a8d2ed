"""``decision_head='margin'``: a forecast trained by MSE alone plus a margin trained
only through the shaper (issue 18). The gradients go where the head says, the
untrained margin is 0, and a fit trains both parts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from conftest import asymmetric_cost, tiny_config
from l2n_jax import heads, nets


def test_the_shapers_gradient_reaches_the_margin_only():
    raw = jnp.array([[0.3, 0.1], [0.5, -0.2]])  # [f | r], m = 1
    eps = jnp.array([[0.05], [-0.05]])
    # A learned loss whose slope at the decision is 2 (d - 1).
    loss = lambda d, shaper, seen, e: jnp.mean(jnp.sum((d - 1.0) ** 2, -1))
    grad = jax.grad(lambda r: heads.MARGIN.loss(loss, None, r, eps, None, None))(raw)
    np.testing.assert_array_equal(grad[:, 0], 0.0)  # the forecast's: stopped
    expect = 2.0 * (raw[:, 0] + raw[:, 1] + eps[:, 0] - 1.0) / 2
    np.testing.assert_allclose(grad[:, 1], expect, rtol=1e-6)
    np.testing.assert_allclose(heads.MARGIN.decide(raw), [[0.4], [0.3]], rtol=1e-6)
    np.testing.assert_array_equal(heads.MARGIN.amount(raw), raw[:, :1])


@pytest.mark.parametrize("kind", ["irs", "monolithic"])
def test_the_margin_starts_at_0_and_its_features_pass_no_gradient(kind):
    config = tiny_config(decision_head="margin", predictor_kind=kind)
    net = nets.make_predictor(config, (2, 6, 1), 2)
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2, 6, 1))
    eps = jnp.zeros((4, 2))
    raw, _ = net.raw(params, x, eps)
    assert raw.shape == (4, 4)
    np.testing.assert_array_equal(raw[:, 2:], 0.0)  # untrained: decisions = forecasts
    # The margin's gradient reaches its own read-out and nothing before it.
    grad = jax.grad(lambda p: jnp.sum(net.raw(p, x, eps)[0][:, 2:]))(params)
    flat = jax.tree_util.tree_flatten_with_path(grad)[0]
    moved = {jax.tree_util.keystr(path) for path, g in flat if np.any(np.asarray(g) != 0)}
    assert moved and all("margin" in name for name in moved)


def test_a_shared_margin_also_shapes_the_features():
    config = tiny_config(decision_head="margin_shared")
    net = nets.make_predictor(config, (2, 6, 1), 2)
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2, 6, 1))
    eps = jnp.zeros((4, 2))
    # Move the zero-initialised read-out off 0, so a gradient reaches its input.
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v + 0.1 if "margin" in jax.tree_util.keystr(path) else v, params)
    grad = jax.grad(lambda p: jnp.sum(net.raw(p, x, eps)[0][:, 2:]))(params)
    flat = jax.tree_util.tree_flatten_with_path(grad)[0]
    moved = {jax.tree_util.keystr(path) for path, g in flat if np.any(np.asarray(g) != 0)}
    assert any("margin" not in name for name in moved)


def test_a_margin_network_leaves_the_forecaster_alone():
    config = tiny_config(decision_head="margin_net")
    net = nets.make_predictor(config, (2, 6, 1), 2)
    params = net.init(jax.random.key(0))
    assert set(params) == {"forecaster", "margin_net"}
    x = jax.random.normal(jax.random.key(1), (4, 2, 6, 1))
    eps = jnp.zeros((4, 2))
    raw, _ = net.raw(params, x, eps)
    np.testing.assert_array_equal(raw[:, 2:], 0.0)
    plain = nets.make_predictor(tiny_config(), (2, 6, 1), 2)
    np.testing.assert_array_equal(raw[:, :2], plain.apply(params["forecaster"], x, eps)[0])
    params = jax.tree_util.tree_map_with_path(  # a margin read-out off 0
        lambda path, v: v + 0.1 if "margin_net']['margin" in jax.tree_util.keystr(path)
        else v, params)
    grad = jax.grad(lambda p: jnp.sum(net.raw(p, x, eps)[0][:, 2:]))(params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grad["forecaster"]))
    assert sum(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grad["margin_net"])) > 2


@pytest.mark.parametrize("head", ["margin", "margin_net"])
def test_a_fit_trains_the_forecast_and_the_margin(windowset, head):
    config = tiny_config(epochs=8, decision_head=head)
    fit = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0, 1),
                  valid=windowset.valid, verbose=False)
    assert np.all(np.isfinite(fit.history["cost"]))
    # The asymmetric cost (under-provisioning 4x) wants decisions above the
    # forecast: the learned margin has moved off 0, and the decisions carry it.
    assert "margin" in fit.history and np.all(fit.history["margin"].iloc[-2:] != 0.0)
    got = fit.predict(windowset.test.inputs)
    assert got.shape[-1] == windowset.test.targets.shape[-1] and np.all(np.isfinite(got))


@pytest.mark.parametrize("head", ["margin", "margin_shared", "margin_net"])
def test_the_margin_head_needs_an_assembler(head):
    with pytest.raises(ValueError, match="split_irs"):
        l2n.Config(decision_head=head, split_irs=True)
