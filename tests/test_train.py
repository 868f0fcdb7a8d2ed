"""The training program: pure, deterministic, vmappable, compiled once."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import losses
from l2n_jax.train import Shapes

from conftest import asymmetric_cost, tiny_config

COTRAIN_METRICS = {"cost", "shaper_loss", "predictor_loss", "mean_error", "noise_std", "lr"}


@pytest.fixture(scope="module")
def program(config, train_windows):
    return l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost)


@pytest.fixture(scope="module")
def jitted_run(program):
    return jax.jit(program.run)


@pytest.fixture(scope="module")
def jitted_epochs(program):
    return jax.jit(program.epochs, static_argnums=5)


@pytest.fixture(scope="module")
def train(train_windows):
    # Program functions take device arrays (fit() converts them the same way).
    return jax.tree.map(jnp.asarray, train_windows)


@pytest.fixture(scope="module")
def valid(valid_windows):
    return jax.tree.map(jnp.asarray, valid_windows)


def _batch(windows, start, size=32):
    return windows.take(np.arange(start, start + size))


def test_shapes_of_windows_reads_static_shapes(train_windows):
    shapes = Shapes.of(train_windows)
    assert shapes.input_shape == (2, 8, 1)
    assert shapes.decision_dim == 1
    assert shapes.obs_dim == 1
    assert shapes.n_train == len(train_windows)


def test_loss2net_program_needs_a_metric(config, train_windows):
    with pytest.raises(ValueError, match="metric"):
        l2n.make_program(config, Shapes.of(train_windows))


def test_batch_size_larger_than_the_data_is_rejected(train_windows):
    config = tiny_config(batch_size=len(train_windows) + 1)
    with pytest.raises(ValueError, match="batch_size"):
        l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost)


def test_run_is_deterministic_given_a_key(jitted_run, train, valid):
    state_a, history_a = jitted_run(jax.random.key(3), train, valid)
    state_b, history_b = jitted_run(jax.random.key(3), train, valid)
    chex.assert_trees_all_equal(state_a.params, state_b.params)
    chex.assert_trees_all_equal(history_a, history_b)


def test_runs_with_different_keys_give_different_params(jitted_run, train, valid):
    state_a, _ = jitted_run(jax.random.key(0), train, valid)
    state_b, _ = jitted_run(jax.random.key(1), train, valid)
    diffs = jax.tree.leaves(
        jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state_a.params, state_b.params)
    )
    assert max(diffs) > 1e-3


def test_run_changes_the_parameters(program, jitted_run, train, valid, key):
    initial = program.init(key)
    final, _ = jitted_run(key, train, valid)
    for name in ("predictor", "shaper"):
        with pytest.raises(AssertionError):
            chex.assert_trees_all_close(initial.params[name], final.params[name], atol=1e-6)
    assert int(final.step) == program.steps_per_epoch * 2  # 3 epochs - 1 pre-training


def test_vmap_over_seeds_equals_a_loop_over_seeds(program, jitted_run, train, valid):
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    batched_run = jax.jit(jax.vmap(program.run, in_axes=(0, None, None)))
    states, histories = batched_run(keys, train, valid)
    for i in range(3):
        state, history = jitted_run(keys[i], train, valid)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x[i], states.params), state.params, rtol=1e-4, atol=1e-5
        )
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x[i], histories), history, rtol=1e-4, atol=1e-5
        )


def test_train_step_is_traced_once_for_many_calls(program, train_windows, key):
    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(program.step(train_windows), n=1))
    state = program.init(key)
    other_state = program.init(jax.random.key(42))
    for i in range(4):
        state, metrics = step(jax.random.fold_in(key, i), state, _batch(train_windows, 32 * i))
    # A state that did not come out of the step, and another batch: still no retrace.
    step(jax.random.key(9), other_state, _batch(train_windows, 100))
    assert int(state.step) == 4


def test_train_step_returns_finite_metrics_with_expected_keys(program, train_windows, key):
    state = program.init(key)
    step = program.step(train_windows)
    new_state, metrics = jax.jit(step)(key, state, _batch(train_windows, 0))
    assert set(metrics) == COTRAIN_METRICS
    for name, value in metrics.items():
        chex.assert_shape(value, ())
        chex.assert_tree_all_finite(value)
    assert float(metrics["shaper_loss"]) >= 0.0
    assert float(metrics["cost"]) >= 0.0
    assert int(new_state.step) == int(state.step) + 1
    chex.assert_trees_all_equal_structs(new_state.params, state.params)


def test_fixed_loss_train_step_returns_loss_and_cost(config, train_windows, key):
    program = l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost,
                               loss=losses.mse)
    assert program.shaper is None
    state = program.init(key)
    assert set(state.params) == {"predictor"}
    batch = _batch(train_windows, 0)
    _, metrics = jax.jit(program.step(train_windows))(key, state, batch)
    assert set(metrics) == {"loss", "mean_error", "lr", "cost"}
    pred = program.predictor.apply(state.params["predictor"], batch.inputs,
                                   jnp.zeros((32, 1)))[0]
    # The reported loss is the MSE of the parameters before the update.
    np.testing.assert_allclose(metrics["loss"], np.mean((pred - batch.targets) ** 2),
                               rtol=1e-5)


def test_predictor_update_goes_through_the_updated_shaper(train_windows, key):
    # No exploration noise (decisions = predictions), a constant predictor lr and a
    # large shaper lr, so one shaper update visibly changes the shaped loss.
    config = tiny_config(noise_schedule="none", noise_start=0.0, noise_end=0.0,
                         lr_schedule="fixed", lr_max=1e-3, shaper_lr=0.05)
    program = l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost)
    state = program.init(key)
    batch = _batch(train_windows, 0)
    new_state, metrics = jax.jit(program.step(train_windows))(key, state, batch)

    p_old = state.params["predictor"]
    eps = jnp.zeros((32, 1))

    def shaped(shaper_params):
        def loss(p):
            d = program.predictor.apply(p, batch.inputs, eps)[0]
            x = jnp.concatenate([d, batch.obs], axis=-1)
            return jnp.mean(program.shaper.apply(shaper_params, x))
        return loss

    s_old, s_new = state.params["shaper"], new_state.params["shaper"]
    loss_new, g_new = jax.value_and_grad(shaped(s_new))(p_old)
    loss_old, g_old = jax.value_and_grad(shaped(s_old))(p_old)
    assert abs(float(loss_new) - float(loss_old)) > 1e-3  # the shaper really moved
    np.testing.assert_allclose(metrics["predictor_loss"], loss_new, rtol=1e-4)

    # The first Adam step moves each parameter by -lr * g / (|g| + 1e-8).
    def adam_first_step(g):
        return jax.tree.map(lambda p, gi: p - 1e-3 * gi / (jnp.abs(gi) + 1e-8), p_old, g)

    p_new = new_state.params["predictor"]
    chex.assert_trees_all_close(p_new, adam_first_step(g_new), atol=2e-5)
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(p_new, adam_first_step(g_old), atol=2e-5)


def test_chunked_epochs_equal_the_whole_run(program, jitted_epochs, train, valid, key):
    start = jax.jit(program.pretrain)(key, program.init(key), train)
    whole, history_whole = jitted_epochs(key, start, train, valid, 0, 2)
    half, history_1 = jitted_epochs(key, start, train, valid, 0, 1)
    chunked, history_2 = jitted_epochs(key, half, train, valid, 1, 1)
    chex.assert_trees_all_close(chunked.params, whole.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(chunked.best_params, whole.best_params, rtol=1e-5, atol=1e-6)
    assert int(chunked.best_epoch) == int(whole.best_epoch)
    joined = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), history_1, history_2)
    chex.assert_trees_all_close(joined, history_whole, rtol=1e-5, atol=1e-6)


def test_run_equals_pretrain_then_all_epochs(program, jitted_run, jitted_epochs, train, valid,
                                             key):
    state, _ = jitted_run(key, train, valid)
    start = jax.jit(program.pretrain)(key, program.init(key), train)
    manual, _ = jitted_epochs(key, start, train, valid, 0, 2)
    chex.assert_trees_all_close(state.params, manual.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(state.best_params, manual.best_params, rtol=1e-5, atol=1e-6)


def test_select_best_keeps_the_epoch_of_lowest_validation_cost(jitted_run, train, valid, key):
    state, history = jitted_run(key, train, valid)
    per_epoch = np.asarray(history["valid_cost"])[:, -1]  # [epochs]
    assert int(state.best_epoch) == int(np.argmin(per_epoch))
    np.testing.assert_allclose(state.best_valid, per_epoch.min(), rtol=1e-6)


def test_run_accepts_the_numpy_windows_of_make_windows_without_jit(program, train_windows,
                                                                   valid_windows, jitted_run,
                                                                   train, valid, key):
    # Windows documents numpy arrays as valid fields; make_windows returns them.
    state, _ = program.run(key, train_windows, valid_windows)
    expected, _ = jitted_run(key, train, valid)
    chex.assert_trees_all_close(state.params, expected.params, rtol=1e-4, atol=1e-5)


def test_shaper_warmup_freezes_the_predictor_but_trains_the_shaper(train, key):
    config = tiny_config(epochs=4, pretrain_epochs=1, shaper_warmup_epochs=1)
    program = l2n.make_program(config, Shapes.of(train), metric=asymmetric_cost)
    epochs = jax.jit(program.epochs, static_argnums=5)
    start = jax.jit(program.pretrain)(key, program.init(key), train)
    warm, _ = epochs(key, start, train, None, 0, 1)
    chex.assert_trees_all_equal(warm.params["predictor"], start.params["predictor"])
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(warm.params["shaper"], start.params["shaper"], atol=1e-7)
    after, _ = epochs(key, warm, train, None, 1, 1)
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(after.params["predictor"], warm.params["predictor"],
                                    atol=1e-7)


def test_pretraining_lowers_the_predictor_mse(program, train, key):
    init = program.init(key)
    config = tiny_config(pretrain_epochs=5, epochs=6, pretrain_lr=3e-3)
    longer = l2n.make_program(config, Shapes.of(train), metric=asymmetric_cost)
    pretrained = jax.jit(longer.pretrain)(key, init, train)

    def mse(params):
        pred = program.predictor.apply(params, train.inputs, jnp.zeros((len(train), 1)))[0]
        return float(jnp.mean((pred - train.targets) ** 2))

    assert mse(pretrained.params["predictor"]) < 0.9 * mse(init.params["predictor"])
    chex.assert_trees_all_equal(pretrained.params["shaper"], init.params["shaper"])


def test_every_added_measure_and_variant_trains_to_finite_values(train, valid, key):
    # LSTM IRs, ReLU shaper on errors, replay buffer, range penalty, no eps input.
    config = tiny_config(ir_kind="lstm", predictor_lstm=(4,), shaper_activation="relu",
                         shaper_input="error", replay_size=64, range_penalty=0.5,
                         feed_eps=False, noise_schedule="fixed")
    program = l2n.make_program(config, Shapes.of(train), metric=asymmetric_cost)
    state, history = jax.jit(program.run)(key, train, valid)
    chex.assert_tree_all_finite(state.params)
    chex.assert_tree_all_finite(history)
    assert int(state.replay.count) == int(state.step) * config.batch_size
    assert set(history) == COTRAIN_METRICS | {"valid_cost"}


def test_a_nan_cost_stops_fit_with_the_seed_and_step(windowset):
    def nan_above(decision, obs):  # NaN whenever the decision exceeds the demand
        x = decision - obs
        return jnp.sum(jnp.where(x > 0, jnp.nan, -x))

    config = tiny_config()
    with pytest.raises(l2n.NonFiniteError, match=r"seed 0 at step \d+.*seed 1 at step \d+"):
        l2n.fit(config, windowset.train, nan_above, seeds=(0, 1))


def test_the_guard_freezes_the_state_at_the_first_bad_step(train, key):
    def nan_cost(decision, obs):
        return jnp.sum(decision) * jnp.nan

    program = l2n.make_program(tiny_config(), Shapes.of(train), metric=nan_cost)
    state = program.init(key)
    batch = train.take(jnp.arange(8))
    new, _ = jax.jit(program.step(train))(key, state, batch)
    assert int(new.bad_step) == 0
    chex.assert_trees_all_equal(new.params, state.params)
    chex.assert_trees_all_equal(new.step, state.step)
