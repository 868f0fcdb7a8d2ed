"""fastmath.sin: accuracy against float64 sin, its derivative, and the shaper switch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import fastmath, shaper_net


def _grid():
    # Dense near 0 (where SIREN pre-activations mostly are), sparse out to 1000,
    # and the branch points of the range reduction (odd multiples of pi).
    x = np.concatenate([
        np.linspace(-40.0, 40.0, 200_001),
        np.linspace(-1000.0, 1000.0, 200_001),
        np.pi * np.arange(-301, 302, 2),
    ])
    return x.astype(np.float32)


def test_sin_and_cos_match_float64_to_float32_rounding():
    x = _grid()
    exact = np.asarray(x, np.float64)
    sin = np.asarray(jax.jit(fastmath.sin)(x), np.float64)
    cos = np.asarray(jax.jit(fastmath.cos)(x), np.float64)
    assert np.max(np.abs(sin - np.sin(exact))) < 1e-6
    assert np.max(np.abs(cos - np.cos(exact))) < 1e-6


def test_sin_gradient_is_cos_and_vmaps():
    x = jnp.linspace(-50.0, 50.0, 1001)
    grad = jax.vmap(jax.grad(fastmath.sin))(x)
    np.testing.assert_allclose(grad, np.cos(np.asarray(x, np.float64)), atol=1e-6)
    hess = jax.vmap(jax.grad(jax.grad(fastmath.sin)))(x)  # second order works too
    np.testing.assert_allclose(hess, -np.sin(np.asarray(x, np.float64)), atol=3e-6)


def test_non_finite_inputs_give_nan_like_jnp_sin():
    x = jnp.array([jnp.nan, jnp.inf, -jnp.inf])
    assert np.all(np.isnan(fastmath.sin(x))) and np.all(np.isnan(jnp.sin(x)))


@pytest.mark.parametrize("omega0_first", [1.0, 30.0])
def test_shaper_with_poly_sine_matches_xla_sine(omega0_first):
    config = l2n.Config(omega0_first=omega0_first)
    poly = shaper_net.make_shaper(config, 4)
    xla = shaper_net.make_shaper(config.replace(shaper_sin="xla"), 4)
    params = poly.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (512, 4))
    out_p, out_x = poly.apply(params, x), xla.apply(params, x)
    assert not np.array_equal(out_p, out_x)  # the switch really changes the sine
    np.testing.assert_allclose(out_p, out_x, atol=1e-5)
    grad = lambda net: jax.grad(lambda q: jnp.sum(net.apply(q, x) ** 2))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4),
                 grad(poly), grad(xla))
