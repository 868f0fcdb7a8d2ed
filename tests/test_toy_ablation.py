"""The paper's toy ablation (Table 3) variants: bm-monolithic (``predictor_kind``),
bm-split and bm-merged on the one-decision toy (``split_irs`` + ``split_shaper`` +
the ``mean_of_inputs`` combination), fixedNoise, and the registry entries that run
them; the default config builds the program it built before."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import ablation_variants, methods, nets, shaper_net, train, variants
from l2n_jax.config import LITERAL
from l2n_jax.usecases import toy

from conftest import tiny_config


@pytest.fixture(scope="module")
def ws():
    """A small toy site: 3 series, target their mean, ~270 training windows."""
    frame = toy.generate(3, length=400)
    return l2n.make_windows(frame, ["mean"], 8, input_columns=["x0", "x1", "x2"])


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_monolithic_predictor_has_no_per_series_irs(key):
    config = tiny_config(predictor_kind="monolithic")
    predictor = nets.make_predictor(config, (3, 8, 1), 1)
    params = predictor.init(key)
    assert "irs" not in params and "block" in params
    # One block over all series: its first layer sees the whole flattened window.
    chex.assert_shape(params["block"]["Dense_0"]["kernel"], (3 * 8, 8))
    x = jax.random.normal(key, (5, 3, 8, 1))
    decisions, forecasts = predictor.apply(params, x, jnp.zeros((5, 1)))
    chex.assert_shape(decisions, (5, 1))
    np.testing.assert_array_equal(forecasts, x[:, :, -1, 0])  # persistence, no params
    lstm = nets.make_predictor(tiny_config(predictor_kind="monolithic", ir_kind="lstm",
                                           predictor_lstm=(4,)), (3, 8, 1), 1)
    chex.assert_shape(lstm.apply(lstm.init(key), x, jnp.zeros((5, 1)))[0], (5, 1))


def test_split_shaper_is_one_independent_shaper_per_decision(key):
    m, k = 3, 1
    shaper = shaper_net.make_shaper(tiny_config(split_shaper=True), m + k, m)
    params = shaper.init(key)
    assert {leaf.shape[0] for leaf in jax.tree.leaves(params)} == {m}
    x = jax.random.normal(key, (6, m + k))
    out = shaper.apply(params, x)
    chex.assert_shape(out, (6, m))
    moved = shaper.apply(params, x.at[:, 1].add(0.5))  # decision 1 only
    np.testing.assert_array_equal(np.delete(moved, 1, 1), np.delete(out, 1, 1))
    assert not np.array_equal(moved[:, 1], out[:, 1])
    # Member i is the plain shaper on [decision i, obs].
    one = shaper_net.make_shaper(tiny_config(), 1 + k)
    p1 = jax.tree.map(lambda a: a[1], params)
    np.testing.assert_allclose(one.apply(p1, x[:, [1, 3]]), out[:, 1], rtol=1e-6)


def test_bm_split_pairs_get_only_their_own_gradients(key):
    """Shaper i's fit gradient depends on decision i only; decision i's gradient on
    shaper i only; IR i's decision on series i only."""
    m, k = 3, 1
    config = tiny_config(split_irs=True, split_shaper=True)
    shaper = shaper_net.make_shaper(config, m + k, m)
    params = shaper.init(key)
    fit_loss, shaped = train._per_decision_losses(config, k, variants.decision_features)
    d = jax.random.normal(key, (8, m))
    seen, costs, w = jnp.ones((8, k)), jnp.abs(d.mean(1)), jnp.ones((8,))
    g = jax.grad(fit_loss)(params, d, seen, costs, w)
    g_moved = jax.grad(fit_loss)(params, d.at[:, 0].add(1.0), seen, costs, w)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_moved)):
        np.testing.assert_array_equal(a[1:], b[1:])
        assert not np.array_equal(a[0], b[0])
    eps = jnp.zeros_like(d)
    dg = jax.grad(shaped)(d, params, seen, eps)
    other = jax.tree.map(lambda a: a.at[2].multiply(1.5), params)
    dg_other = jax.grad(shaped)(d, other, seen, eps)
    np.testing.assert_array_equal(dg[:, :2], dg_other[:, :2])
    assert not np.array_equal(dg[:, 2], dg_other[:, 2])
    predictor = nets.make_predictor(config, (m, 8, 1), m)
    p = predictor.init(key)
    x = jax.random.normal(key, (4, m, 8, 1))
    a = predictor.apply(p, x, jnp.zeros((4, m)))[0]
    b = predictor.apply(p, x.at[:, 1].add(1.0), jnp.zeros((4, m)))[0]
    np.testing.assert_array_equal(np.delete(a, 1, 1), np.delete(b, 1, 1))


def test_mean_of_inputs_maps_the_series_next_values_to_the_target(ws):
    combine = ablation_variants.mean_of_inputs(ws)
    np.testing.assert_allclose(combine(ws.test.ir_targets), ws.test.targets, atol=2e-6)
    chex.assert_shape(combine(jnp.zeros((2, 5, 3))), (2, 5, 1))


@pytest.mark.parametrize("name", ["bm_merged", "bm_split_mean", "bm_monolithic",
                                  "fixed_noise"])
def test_table3_entries_run_on_a_tiny_toy_task(ws, name):
    task = methods.Task(tiny_config(epochs=2), {"n3": ws}, toy.make_metric(), (0, 1),
                        verbose=False)
    run = methods.run(name, task, usecase="toy")
    assert np.isfinite(run.rows["cost"]).all() and len(run.rows) == 2
    fit = run.fits["n3"]
    if name.startswith("bm_s") or name == "bm_merged":
        assert fit.config.split_irs and fit.config.split_shaper == (name == "bm_split_mean")
        assert fit.shapes.decision_dim == 3  # one decision per series, then combined
        leaves = jax.tree.leaves(fit.params["shaper"])  # [seeds, (m,) ...]
        assert all(leaf.shape[1] == 3 for leaf in leaves) == (name == "bm_split_mean")
    if name == "bm_monolithic":
        assert "irs" not in fit.params["predictor"]
    if name == "fixed_noise":
        assert fit.config.noise_schedule == "fixed"
        np.testing.assert_allclose(fit.config.noise_start,
                                   np.sqrt(0.03 * np.mean(ws.train.targets)), rtol=1e-6)


def test_config_only_entries_are_registered():
    assert {"relu_shaper", "no_noise", "fixed_lr", "exp_lr", "alternating",
            "bm_monolithic", "fixed_noise"} <= set(methods.names())
    assert {"bm_merged", "bm_split_mean"} <= set(methods.names("toy"))
    assert "bm_merged" not in methods.names("netalloc")


def test_the_default_config_builds_the_same_networks(key):
    """New fields default to today's program: the IRs + assembler tree and the one
    plain shaper; Config.literal is LITERAL applied to the defaults."""
    config = l2n.Config()
    assert (config.predictor_kind, config.split_shaper) == ("irs", False)
    params = nets.make_predictor(tiny_config(), (2, 8, 1), 1).init(key)
    assert jax.tree.map(jnp.shape, params) == {
        "irs": {"Dense_0": {"bias": (2, 8), "kernel": (2, 8, 8)},
                "Dense_1": {"bias": (2, 1), "kernel": (2, 8, 1)}},
        "Dense_0": {"bias": (8,), "kernel": (8 * 2 + 2 + 1, 8)},
        "Dense_1": {"bias": (1,), "kernel": (8, 1)},
        "forecast_skip": {"kernel": (2, 1)},
    }
    shaper = shaper_net.make_shaper(tiny_config(), 2)
    assert jax.tree.map(jnp.shape, shaper.init(key)) == {
        "_SirenLayer_0": {"bias": (16,), "kernel": (2, 16)},
        "_SirenLayer_1": {"bias": (16,), "kernel": (16, 16)},
        "_SirenLayer_2": {"bias": (1,), "kernel": (16, 1)},
    }
    # The decision_dim argument changes nothing for the plain shaper.
    assert _leaves_equal(shaper.init(key), shaper_net.make_shaper(tiny_config(), 2, 1).init(key))
    assert l2n.Config.literal() == l2n.Config(**LITERAL)
    assert tiny_config(replay_size=64).as_literal() == tiny_config(**LITERAL)


def test_incompatible_variants_are_refused():
    with pytest.raises(ValueError, match="monolithic"):
        tiny_config(predictor_kind="monolithic", split_irs=True)
    with pytest.raises(ValueError, match="split_shaper"):
        tiny_config(split_shaper=True, shaper_input="error")
    with pytest.raises(ValueError, match="predictor_kind"):
        tiny_config(predictor_kind="lstm")
