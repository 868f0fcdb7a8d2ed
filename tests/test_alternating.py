"""Alternating training (Grabocka et al.; ``Config.alternate_steps``): k shaper-only
steps, then k predictor-only steps, exactly, with the rest of Loss2Net's step as is."""

import chex
import jax
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import methods
from l2n_jax.train import Shapes

from conftest import asymmetric_cost, make_series, tiny_config


def _changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("k", [1, 3])
def test_each_network_trains_exactly_in_its_k_step_turns(train_windows, k):
    config = tiny_config(epochs=4, pretrain_epochs=1, alternate_steps=k)
    program = l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost)
    key = jax.random.key(0)
    state = program.start(key, train_windows)
    step = jax.jit(program.step(train_windows))
    batch = train_windows.take(np.arange(config.batch_size))
    turns = []
    for i in range(4 * k):
        new, _ = step(jax.random.fold_in(key, i), state, batch)
        turns.append((_changed(new.params["shaper"], state.params["shaper"]),
                      _changed(new.params["predictor"], state.params["predictor"])))
        state = new
    expected = [(True, False)] * k + [(False, True)] * k
    assert turns == 2 * expected


def test_alternate_steps_zero_is_loss2nets_co_update(train_windows):
    """The default builds the same optimiser states and the same step: both nets
    move in every step."""
    a = l2n.make_program(tiny_config(), Shapes.of(train_windows), metric=asymmetric_cost)
    key = jax.random.key(1)
    state = a.start(key, train_windows)
    new, _ = jax.jit(a.step(train_windows))(key, state, train_windows.take(np.arange(32)))
    assert _changed(new.params["shaper"], state.params["shaper"])
    assert _changed(new.params["predictor"], state.params["predictor"])


def test_alternating_with_a_frozen_shaper_is_refused():
    with pytest.raises(ValueError, match="alternate_steps"):
        tiny_config(alternate_steps=4, freeze_shaper=True)
    with pytest.raises(ValueError, match="alternate_steps"):
        tiny_config(alternate_steps=-1)


def test_the_registry_entry_alternates_one_epoch_each():
    ws = l2n.make_windows(make_series(400), ["load"], lookback=8)
    task = methods.Task(tiny_config(epochs=4), {"s": ws}, asymmetric_cost, (0, 1),
                        verbose=False)
    run = methods.run("alternating", task)
    fit = run.fits["s"]
    assert fit.config.alternate_steps == len(ws.train.targets) // 32
    assert np.isfinite(run.rows["cost"]).all() and len(run.rows) == 2
    chex.assert_shape(fit.predict(ws.test.inputs), (2, len(ws.test.targets), 1))


def test_alternating_seeds_vmapped_equal_the_per_seed_loop(train_windows, valid_windows):
    config = tiny_config(epochs=3, pretrain_epochs=1, alternate_steps=2)
    program = l2n.make_program(config, Shapes.of(train_windows), metric=asymmetric_cost)
    keys = jax.vmap(jax.random.key)(np.arange(2))
    together, _ = jax.jit(jax.vmap(program.run, in_axes=(0, None, None)))(
        keys, train_windows, valid_windows)
    for i in range(2):
        alone, _ = jax.jit(program.run)(keys[i], train_windows, valid_windows)
        mine = jax.tree.map(lambda x: x[i], together.params)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(mine))
        chex.assert_trees_all_close(mine, alone.params, atol=1e-5, rtol=1e-4)


def test_l2n_train_runs_the_loss_learning_family(tmp_path):
    """CLI smoke: alternating, TaskMet (three ways) and ALA from ``l2n_train``."""
    import os
    import shutil
    import subprocess
    import sys

    import pandas as pd

    script = shutil.which("l2n_train") or os.path.join(os.path.dirname(sys.executable),
                                                       "l2n_train")
    family = ["alternating", "taskmet", "taskmet_margin", "taskmet_shaper", "ala"]
    proc = subprocess.run(
        [script, "--usecase=netalloc", "--quick", "--sites=eu", "--seeds=2",
         f"--method={','.join(family)}", "--workdir=out"],
        cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(set(df["method"])) == sorted(family)
    assert np.isfinite(df["test_cost"]).all() and len(df) == 2 * len(family)
