"""The hand-written LSTM IR: equal to a step-by-step LSTM, gradients included."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import nets

from conftest import tiny_config


def reference_ir(params, x, hidden, skip):
    """A textbook LSTM in plain jnp, one time step at a time: (features, forecast)."""
    h_seq = [x[:, t] for t in range(x.shape[1])]
    for n, width in enumerate(hidden):
        w_ih, w_hh, b = params[f"w_ih_{n}"], params[f"w_hh_{n}"], params[f"b_{n}"]
        h = c = jnp.zeros((x.shape[0], width))
        outputs = []
        for x_t in h_seq:
            z = x_t @ w_ih + h @ w_hh + b
            i, f, g, o = (z[:, k * width:(k + 1) * width] for k in range(4))
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            outputs.append(h)
        h_seq = outputs
    features = jax.nn.relu(h_seq[-1])
    head = params["Dense_0"]
    forecast = features @ head["kernel"][:, 0] + head["bias"][0]
    if skip:
        forecast = forecast + x[:, -1, 0]
    return features, forecast


def _random_params(params, key):
    # Non-zero everywhere (init has zero biases and, with skip, a zero head), and
    # large enough to saturate some gates.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [0.7 * jax.random.normal(k, p.shape) for k, p in
                                     zip(keys, leaves)])


# unroll: lax.scan, lax.scan with a remainder (6 steps after the first), Python loop.
@pytest.mark.parametrize("unroll, skip", [(1, False), (4, True), (32, True)])
def test_lstm_ir_matches_a_step_by_step_lstm_with_gradients(unroll, skip):
    hidden = (6, 5)
    x = jax.random.normal(jax.random.key(0), (3, 7, 2))
    module = nets._LSTMIR(hidden, skip, unroll=unroll)
    params = jax.jit(module.init)(jax.random.key(1), x)["params"]
    params = _random_params(params, jax.random.key(2))

    def loss(fn, p, x):
        features, forecast = fn(p, x)
        return jnp.sum(jnp.sin(features)) + jnp.sum(forecast**2)

    def ours(p, x):
        return module.apply({"params": p}, x)

    def ref(p, x):
        return reference_ir(p, x, hidden, skip)

    chex.assert_trees_all_close(jax.jit(ours)(params, x), jax.jit(ref)(params, x),
                                atol=1e-5, rtol=1e-5)
    grads = jax.jit(jax.grad(lambda p, x: loss(ours, p, x), argnums=(0, 1)))(params, x)
    ref_grads = jax.jit(jax.grad(lambda p, x: loss(ref, p, x), argnums=(0, 1)))(
        params, x)
    chex.assert_trees_all_close(grads, ref_grads, atol=1e-5, rtol=1e-5)


def test_recurrent_kernel_is_orthogonal_per_gate_and_bias_zero():
    init = jax.jit(nets._LSTMIR((8,), True).init)
    params = init(jax.random.key(0), jnp.zeros((1, 5, 1)))["params"]
    w_hh = np.asarray(params["w_hh_0"])
    assert w_hh.shape == (8, 32)
    for k in range(4):
        block = w_hh[:, 8 * k:8 * (k + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)
    assert not np.any(params["b_0"])


def test_make_predictor_lstm_shapes():
    config = tiny_config(ir_kind="lstm", predictor_lstm=(8, 4))
    net = l2n.nets.make_predictor(config, (1, 12, 1), 1)
    params = jax.jit(net.init)(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params["irs"]) == {
        "w_ih_0": (1, 1, 32), "w_hh_0": (1, 8, 32), "b_0": (1, 32),
        "w_ih_1": (1, 8, 16), "w_hh_1": (1, 4, 16), "b_1": (1, 16),
        "Dense_0": {"kernel": (1, 4, 1), "bias": (1, 1)},
    }
    x, eps = jnp.ones((5, 1, 12, 1)), jnp.zeros((5, 1))
    decisions, forecasts = jax.jit(net.apply)(params, x, eps)
    assert decisions.shape == (5, 1) and forecasts.shape == (5, 1)
    # The untrained IR forecasts persistence (forecast_skip): the last value.
    np.testing.assert_allclose(forecasts, 1.0, atol=1e-6)


def test_one_series_path_equals_the_vmapped_path():
    # One series runs the IR unbatched; two identical series go through nn.vmap.
    config = tiny_config(ir_kind="lstm", predictor_lstm=(6, 3))
    one = l2n.nets.make_predictor(config, (1, 9, 1), 1)
    two = l2n.nets.make_predictor(config, (2, 9, 1), 1)
    p_one = _random_params(jax.jit(one.init)(jax.random.key(0)), jax.random.key(1))
    p_two = jax.jit(two.init)(jax.random.key(0))
    p_two["irs"] = jax.tree.map(lambda a: jnp.concatenate([a, a]), p_one["irs"])
    x = jax.random.normal(jax.random.key(2), (4, 1, 9, 1))
    eps = jnp.zeros((4, 1))
    _, f_one = jax.jit(one.apply)(p_one, x, eps)
    _, f_two = jax.jit(two.apply)(p_two, jnp.concatenate([x, x], axis=1), eps)
    np.testing.assert_allclose(f_two, jnp.concatenate([f_one, f_one], axis=1), atol=1e-6)


@pytest.mark.parametrize("n_series", [1, 2])
def test_predictor_vmapped_over_param_sets_equals_a_loop(n_series):
    config = tiny_config(ir_kind="lstm", predictor_lstm=(6, 3))
    net = l2n.nets.make_predictor(config, (n_series, 8, 1), 1)
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.jit(jax.vmap(lambda k: _random_params(net.init(k), k)))(keys)
    x = jax.random.normal(jax.random.key(1), (5, n_series, 8, 1))
    eps = jnp.zeros((5, 1))

    def value_and_grad(p):
        return jax.value_and_grad(lambda q: jnp.sum(net.apply(q, x, eps)[0] ** 2))(p)

    batched = jax.jit(jax.vmap(value_and_grad))(stacked)
    for s in range(3):
        single = jax.jit(value_and_grad)(jax.tree.map(lambda a, s=s: a[s], stacked))
        chex.assert_trees_all_close(jax.tree.map(lambda a, s=s: a[s], batched), single,
                                    atol=1e-5, rtol=1e-5)
