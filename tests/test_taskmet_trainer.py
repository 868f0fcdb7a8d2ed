"""TaskMet on window data (``l2n_jax.taskmet_trainer``): K inner steps per metric
step, the metric moves, vmap equals the per-seed loop, the registry entries."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import losses, methods, runs, taskmet_trainer
from l2n_jax.train import Shapes

from conftest import UNDER_WEIGHT, asymmetric_cost, make_series, tiny_config

SURROGATE = losses.pinball(UNDER_WEIGHT / (UNDER_WEIGHT + 1))
SETTINGS = taskmet_trainer.Settings(inner_steps=3, metric_hidden=8)


def _program(train, config=None, settings=SETTINGS, surrogate=SURROGATE):
    make = taskmet_trainer.make(settings, surrogate)
    return make(config or tiny_config(), Shapes.of(train), metric=asymmetric_cost)


def test_one_step_is_k_predictor_updates_and_one_metric_update(train_windows):
    program = _program(train_windows)
    key = jax.random.key(0)
    state = program.start(key, train_windows)
    batch = train_windows.take(np.arange(3 * 32))
    new, metrics = jax.jit(program.step(train_windows))(key, state, batch)
    assert int(new.opt_state["predictor"][0].count) == 3
    assert int(new.opt_state["metric"][0].count) == 1
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params["metric"],
                         state.params["metric"])
    assert any(jax.tree.leaves(moved)) and np.isfinite(float(metrics["hypergrad_norm"]))
    assert float(metrics["hypergrad_norm"]) > 0


def test_vmapped_seeds_equal_the_per_seed_loop(train_windows, valid_windows):
    config = tiny_config(epochs=2, pretrain_epochs=1)
    program = _program(train_windows, config)
    keys = runs.seed_keys((0, 1))
    together, _ = jax.jit(jax.vmap(program.run, in_axes=(0, None, None)))(
        keys, train_windows, valid_windows)
    for i in range(2):
        alone, _ = jax.jit(program.run)(keys[i], train_windows, valid_windows)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], together.params),
                                    alone.params, atol=1e-5, rtol=1e-4)


def test_bad_settings_and_a_stateful_shaper_task_are_refused(train_windows):
    with pytest.raises(ValueError, match="inner_steps"):
        _program(train_windows, settings=taskmet_trainer.Settings(inner_steps=0))
    stateful = l2n.StatefulMetric(init=lambda: jnp.zeros(()),
                                  step=lambda s, d, o: (jnp.sum(d - o) ** 2, s, jnp.zeros(1)))
    with pytest.raises(ValueError, match="StatefulMetric"):
        taskmet_trainer.taskmet_trainer(tiny_config(), Shapes.of(train_windows), stateful,
                                        SETTINGS, surrogate=None)


def test_the_registry_entries_train_and_keep_the_loss2net_shaper_frozen(tmp_path):
    ws = l2n.make_windows(make_series(400), ["load"], lookback=8)
    task = methods.Task(tiny_config(), {"s": ws}, asymmetric_cost, (0, 1),
                        options=methods.Options(alpha=UNDER_WEIGHT), verbose=False,
                        checkpoint_dir=str(tmp_path))
    plain = methods.run("taskmet", task)
    assert np.isfinite(plain.rows["cost"]).all() and len(plain.rows) == 2
    shaped = methods.run("taskmet_shaper", task)
    l2n_fit = methods.run("loss2net", task).fits["s"]  # restored from the checkpoint
    chex.assert_trees_all_equal(shaped.fits["s"].params["shaper"], l2n_fit.params["shaper"])
    assert np.isfinite(shaped.rows["cost"]).all()
    with pytest.raises(ValueError, match="alpha"):
        methods.run("taskmet", task._replace(options=methods.Options()))
