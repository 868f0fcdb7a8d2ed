"""``Config.ir_anchor`` and ``Config.spread_anchor``: terms added to the predictor's
co-training gradient (issue 18) — their gradients, their effect on a fit, their
validation; off by default, the paper's step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from conftest import asymmetric_cost, tiny_config
from l2n_jax import variants
from l2n_jax.data import Windows


def _batch(rng, b=16):
    inputs = jnp.asarray(rng.normal(size=(b, 1, 4, 1)), jnp.float32)
    targets = jnp.asarray(rng.normal(size=(b, 2)), jnp.float32)
    ir_targets = jnp.asarray(rng.normal(size=(b, 1)), jnp.float32)
    return Windows(inputs, targets, targets, ir_targets, targets)


def _linear(p, x, e):
    return x[:, 0, :, 0] @ p["w"] + e


def test_spread_anchor_adds_the_gradient_of_the_errors_variance():
    rng = np.random.default_rng(0)
    batch, params = _batch(rng), {"w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}
    eps = jnp.zeros((16, 2))
    grad = {"w": jnp.ones((4, 2))}
    got = variants.spread_anchor(3.0, _linear)(params, batch, eps, grad)["w"]
    errors = lambda p: _linear(p, batch.inputs, eps) - batch.targets
    # The variance's gradient by finite differences, one weight at a time.
    for i, j in ((0, 0), (3, 1)):
        step = jnp.zeros((4, 2)).at[i, j].set(1e-3)
        plus = jnp.mean(jnp.var(errors({"w": params["w"] + step}), axis=0))
        minus = jnp.mean(jnp.var(errors({"w": params["w"] - step}), axis=0))
        np.testing.assert_allclose(got[i, j], 1.0 + 3.0 * (plus - minus) / 2e-3,
                                   rtol=2e-2)
    # A shift of every error by a constant is free: the level is the shaper's.
    shifted = Windows(batch.inputs, batch.targets + 5.0, batch.obs, batch.ir_targets,
                      batch.current)
    np.testing.assert_allclose(
        variants.spread_anchor(3.0, _linear)(params, shifted, eps, grad)["w"], got,
        rtol=1e-4, atol=1e-4)


def test_ir_anchor_adds_the_gradient_of_the_forecasts_mse():
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    params = {"w": jnp.asarray(rng.normal(size=(4, 1)), jnp.float32)}
    forecasts = lambda p, x, e: x[:, 0, :, 0] @ p["w"]
    zero = {"w": jnp.zeros((4, 1))}
    got = variants.ir_anchor(2.0, forecasts)(params, batch, None, zero)["w"]
    want = jax.grad(lambda p: 2.0 * jnp.mean(
        (forecasts(p, batch.inputs, None) - batch.ir_targets) ** 2))(params)["w"]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_chained_anchors_add_both_terms():
    rng = np.random.default_rng(2)
    batch = _batch(rng)
    params = {"w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}
    eps, zero = jnp.zeros((16, 2)), {"w": jnp.zeros((4, 2))}
    a = variants.spread_anchor(1.0, _linear)
    b = variants.spread_anchor(2.0, _linear)
    np.testing.assert_allclose(variants.chain(a, b)(params, batch, eps, zero)["w"],
                               3.0 * a(params, batch, eps, zero)["w"], rtol=1e-5)


@pytest.fixture(scope="module")
def fits(windowset):
    out = {}
    for name, changes in (("paper", {}), ("spread", {"spread_anchor": 100.0}),
                          ("ir", {"ir_anchor": 100.0})):
        config = tiny_config(epochs=8, **changes)
        out[name] = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0, 1),
                            valid=windowset.valid, verbose=False)
    return out


def test_a_spread_anchor_narrows_the_errors_and_an_ir_anchor_changes_the_fit(
        fits, windowset):
    def spread(result):
        errors = result.predict(windowset.train.inputs) - np.asarray(
            windowset.train.targets)[None]
        return np.var(errors, axis=1).mean()

    assert spread(fits["spread"]) < spread(fits["paper"])
    paper = fits["paper"].predict(windowset.train.inputs)
    ir = fits["ir"].predict(windowset.train.inputs)
    assert np.all(np.isfinite(ir)) and not np.allclose(ir, paper)


@pytest.mark.parametrize("field", ["ir_anchor", "spread_anchor"])
def test_a_negative_anchor_is_refused(field):
    with pytest.raises(ValueError, match=field):
        l2n.Config(**{field: -1.0})
