"""Checkpoint and resume: an interrupted run resumed from its checkpoint equals an
uninterrupted one bit for bit; checkpoints of another run, damaged files and
non-finite chunks are refused with named errors."""

import importlib

import chex
import jax
import numpy as np
import pandas as pd
import pytest
from conftest import asymmetric_cost, asymmetric_cost_np, tiny_config

import l2n_jax as l2n
from l2n_jax import checkpoint as ckpt_lib
from l2n_jax.train import Shapes

# `l2n_jax.fit` the module (the package re-exports the function under that name).
fit_lib = importlib.import_module("l2n_jax.fit")


class Interrupted(Exception):
    pass


def _interrupt_after(monkeypatch, n_saves):
    """Makes the run stop right after its n-th checkpoint, as a kill would."""
    real_save = ckpt_lib.save
    calls = []

    def save(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(args[2])
        if len(calls) == n_saves:
            raise Interrupted(f"killed after epoch {args[2]}")

    monkeypatch.setattr(fit_lib.ckpt_lib, "save", save)
    return calls


@pytest.fixture(scope="module")
def resume_config():
    return tiny_config(epochs=5, pretrain_epochs=1, log_every=1)


@pytest.fixture(scope="module")
def uninterrupted(resume_config, windowset):
    return l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                   valid=windowset.valid)


def test_a_resumed_loss2net_run_equals_the_uninterrupted_run(
    resume_config, windowset, uninterrupted, tmp_path, monkeypatch
):
    path = str(tmp_path / "run.ckpt")
    calls = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                valid=windowset.valid, checkpoint=path)
    assert calls == [1, 2]
    monkeypatch.undo()
    resumed = l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                      valid=windowset.valid, checkpoint=path)
    chex.assert_trees_all_equal(resumed.params, uninterrupted.params)
    np.testing.assert_array_equal(resumed.best_epoch, uninterrupted.best_epoch)
    pd.testing.assert_frame_equal(resumed.history, uninterrupted.history)


def test_a_resumed_fixed_loss_run_equals_the_uninterrupted_run(
    resume_config, windowset, tmp_path, monkeypatch
):
    loss = l2n.losses.pinball(0.8)
    args = (resume_config, windowset.train, loss)
    whole = l2n.fit_fixed_loss(*args, seeds=(3,), valid=windowset.valid)
    path = str(tmp_path / "pinball.ckpt")
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupted):
        l2n.fit_fixed_loss(*args, seeds=(3,), valid=windowset.valid, checkpoint=path)
    monkeypatch.undo()
    resumed = l2n.fit_fixed_loss(*args, seeds=(3,), valid=windowset.valid, checkpoint=path)
    chex.assert_trees_all_equal(resumed.params, whole.params)


def test_a_finished_checkpoint_returns_the_result_without_training(
    resume_config, windowset, uninterrupted, tmp_path
):
    path = str(tmp_path / "done.ckpt")
    l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
            valid=windowset.valid, checkpoint=path)
    again = l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                    valid=windowset.valid, checkpoint=path)
    assert again.timing["run_s"] == 0.0
    chex.assert_trees_all_equal(again.params, uninterrupted.params)


def test_chunk_length_may_change_between_the_run_and_its_resume(
    resume_config, windowset, uninterrupted, tmp_path, monkeypatch
):
    path = str(tmp_path / "run.ckpt")
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupted):
        l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                valid=windowset.valid, checkpoint=path)
    monkeypatch.undo()
    resumed = l2n.fit(resume_config.replace(log_every=3), windowset.train,
                      asymmetric_cost, seeds=(0, 1), valid=windowset.valid,
                      checkpoint=path)
    chex.assert_trees_all_equal(resumed.params, uninterrupted.params)


def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(
    resume_config, windowset, tmp_path, monkeypatch
):
    path = str(tmp_path / "run.ckpt")
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupted):
        l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 1),
                checkpoint=path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"different run.*seeds"):
        l2n.fit(resume_config, windowset.train, asymmetric_cost, seeds=(0, 2),
                checkpoint=path)
    with pytest.raises(ValueError, match=r"different run.*config \(shaper_lr\)"):
        l2n.fit(resume_config.replace(shaper_lr=5e-4), windowset.train, asymmetric_cost,
                seeds=(0, 1), checkpoint=path)
    with pytest.raises(ValueError, match=r"different run.*data"):
        l2n.fit(resume_config, windowset.valid, asymmetric_cost, seeds=(0, 1),
                checkpoint=path)


def test_a_damaged_checkpoint_is_refused_with_a_named_error(resume_config, windowset,
                                                            tmp_path):
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match=r"unreadable.*delete it"):
        l2n.fit(resume_config, windowset.train, asymmetric_cost, checkpoint=str(path))


def test_a_nan_mid_run_keeps_the_last_good_checkpoint(resume_config, windowset,
                                                      tmp_path):
    calls = []

    def flaky(decisions, obs):  # turns NaN after ~1.5 epochs of calls
        calls.append(1)
        costs = asymmetric_cost_np(decisions, obs)
        return costs * np.nan if len(calls) > 15 else costs

    metric = l2n.host_metric(flaky, decision_dim=1, obs_dim=1)
    path = str(tmp_path / "run.ckpt")
    with pytest.raises(l2n.NonFiniteError, match=r"seed 0 at step \d+.*kept in .*run.ckpt"):
        l2n.fit(resume_config, windowset.train, metric, seeds=(0,), checkpoint=path)
    fingerprint = fit_lib._fingerprint(
        resume_config, (0,), "loss2net", Shapes.of(windowset.train),
        l2n.data.Split(l2n.sites.as_windows(windowset.train, "train")), None,
    )
    template = _state_template(resume_config, windowset)
    restored = ckpt_lib.restore(path, template, fingerprint)
    assert 1 <= restored.epoch < resume_config.cotrain_epochs
    chex.assert_tree_all_finite(restored.state.params)
    assert int(np.asarray(restored.state.bad_step)[0]) == -1


def _state_template(config, windowset):
    program = l2n.make_program(config, Shapes.of(windowset.train),
                               metric=asymmetric_cost)
    keys = jax.vmap(jax.random.key)(np.asarray([0], np.uint32))
    return jax.eval_shape(jax.vmap(program.init), keys)


def test_checkpoints_and_progress_lines_have_their_own_intervals(
    windowset, uninterrupted, tmp_path, monkeypatch, capsys
):
    # 4 co-training epochs: progress every 3 epochs (and at the end), a checkpoint
    # every 2; the chunks end wherever either is due, and results do not change.
    config = tiny_config(epochs=5, pretrain_epochs=1, log_every=3, checkpoint_every=2)
    calls = _interrupt_after(monkeypatch, 99)
    result = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0, 1),
                     valid=windowset.valid, checkpoint=str(tmp_path / "run.ckpt"))
    assert calls == [2, 4]
    lines = capsys.readouterr().err.splitlines()
    assert [l.split("co-training ")[1].split(")")[0] for l in lines
            if "co-training" in l] == ["3/4", "4/4"]
    chex.assert_trees_all_equal(result.params, uninterrupted.params)
