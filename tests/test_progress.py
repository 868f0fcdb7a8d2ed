"""Progress lines: printed by the library by default, silent on request, with the
whole budget (pre-training included) in view."""

import re

import l2n_jax as l2n
from l2n_jax import loop, progress

from conftest import asymmetric_cost, tiny_config


def test_fit_prints_one_line_per_chunk_by_default(windowset, capsys):
    config = tiny_config(epochs=4, pretrain_epochs=1, log_every=1)
    l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0,), valid=windowset.valid,
            label="demo")
    err = capsys.readouterr().err
    assert "[demo] 1 seed(s) compiled and pre-trained 1 epoch (MSE)" in err
    epochs = re.findall(r"\[demo\] epoch (\d+)/4 \(co-training (\d+)/3\)", err)
    assert epochs == [("2", "1"), ("3", "2"), ("4", "3")]
    assert "steps/s" in err and "ETA" in err and "valid_cost" in err


def test_verbose_false_is_silent(windowset, capsys):
    l2n.fit(tiny_config(), windowset.train, asymmetric_cost, seeds=(0,), verbose=False)
    l2n.fit_fixed_loss(tiny_config(), windowset.train, l2n.losses.mse, verbose=False)
    assert capsys.readouterr().err == ""


def test_baselines_log_the_true_cost_beside_their_loss(windowset, capsys):
    l2n.fit_fixed_loss(tiny_config(log_every=3), windowset.train, l2n.losses.mse,
                       valid=windowset.valid, metric=asymmetric_cost, label="mse")
    line = [l for l in capsys.readouterr().err.splitlines() if "epoch 3/3" in l][0]
    assert "valid_cost" in line and "valid_loss" in line and "train_cost" in line


def test_epoch_text_and_durations():
    assert loop.epoch_text(10, 50, 10) == "epoch 20/60 (co-training 10/50)"
    assert loop.epoch_text(3, 60) == "epoch 3/60"
    assert progress.duration(42.4) == "42 s"
    assert progress.duration(185) == "3 min 05 s"
    assert progress.duration(3720) == "1 h 02 min"
    assert progress.duration(float("nan")) == "?"


def test_the_overall_view_counts_and_estimates():
    lines = []
    overall = progress.Overall(3, lines.append)
    overall.start("a")
    overall.finish()
    overall.start("b")
    assert lines[0].startswith("== 1 of 3: a") and "ETA ?" in lines[0]
    assert lines[1].startswith("== 2 of 3: b") and "ETA ?" not in lines[1]
