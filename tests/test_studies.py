"""Transfer (frozen / fine-tuned shaper) and noise-sensitivity code paths, tiny budget."""

import dataclasses

import chex
import jax
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import methods, studies
from l2n_jax.train import Shapes, make_program

from conftest import asymmetric_cost, make_series, tiny_config


@pytest.fixture(scope="module")
def sites():
    return {
        "a": l2n.make_windows(make_series(300, seed=3), ["load"], lookback=8),
        "b": l2n.make_windows(make_series(400, seed=4, noise=0.5), ["load"], lookback=8),
    }


@pytest.fixture(scope="module")
def learned(sites):
    """Loss2Net at both sites (one padded program): the shapers to transfer."""
    return l2n.fit_sites(tiny_config(), {s: w.train for s, w in sites.items()},
                         asymmetric_cost, seeds=(0, 1),
                         valids={s: w.valid for s, w in sites.items()})


def _distance(x, y):
    return sum(float(np.sum((np.asarray(a) - np.asarray(b)) ** 2))
               for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


def test_frozen_shaper_stays_fixed_and_trains_the_predictor(sites, learned):
    config = tiny_config(freeze_shaper=True)
    shaper = learned["a"].params["shaper"]
    r = l2n.fit(config, sites["b"].train, asymmetric_cost, seeds=(0, 1),
                valid=sites["b"].valid, shaper=shaper)
    chex.assert_trees_all_equal(r.params["shaper"], shaper)
    fresh = l2n.fit(tiny_config(), sites["b"].train, asymmetric_cost, seeds=(0, 1),
                    valid=sites["b"].valid)
    # Same seeds, same predictor init: only the (frozen) loss differs.
    assert _distance(r.params["predictor"], fresh.params["predictor"]) > 0
    assert np.isfinite(r.history["shaper_loss"]).all()


def test_finetuned_shaper_starts_from_the_given_one(sites, learned):
    config, train, valid = tiny_config(), sites["b"].train, sites["b"].valid
    # Handing in the very shaper init() draws reproduces the plain run bitwise...
    program = make_program(config, Shapes.of(train), metric=asymmetric_cost)
    own = jax.vmap(program.init)(l2n.runs.seed_keys((0, 1)))
    plain = l2n.fit(config, train, asymmetric_cost, seeds=(0, 1), valid=valid)
    same = l2n.fit(config, train, asymmetric_cost, seeds=(0, 1), valid=valid,
                   shaper=own.params["shaper"])
    chex.assert_trees_all_equal(same.params, plain.params)
    # ...and a's learned shaper is co-trained from (it moves, and changes the run).
    shaper = learned["a"].params["shaper"]
    tuned = l2n.fit(config, train, asymmetric_cost, seeds=(0, 1), valid=valid,
                    shaper=shaper)
    assert _distance(tuned.params["shaper"], shaper) > 0
    assert _distance(tuned.params["predictor"], plain.params["predictor"]) > 0


def test_transfer_rows_cover_every_pair_and_seed(sites, learned):
    shapers = {s: r.params["shaper"] for s, r in learned.items()}
    for finetune in (False, True):
        df = studies.transfer(tiny_config(), sites, asymmetric_cost, (0, 1), shapers,
                              finetune=finetune)
        assert set(zip(df["source"], df["site"])) == {("a", "b"), ("b", "a")}
        assert len(df) == 4 and np.isfinite(df["test_cost"]).all()
        assert set(df["method"]) == {"finetune" if finetune else "frozen"}


def test_transfer_errors(sites, learned):
    with pytest.raises(ValueError, match="freeze_shaper needs a shaper"):
        l2n.fit(tiny_config(freeze_shaper=True), sites["a"].train, asymmetric_cost)
    wrong = jax.tree.map(lambda x: x[:1], learned["a"].params["shaper"])  # 1 seed, not 2
    with pytest.raises(ValueError, match="shaper params do not match"):
        l2n.fit(tiny_config(), sites["a"].train, asymmetric_cost, seeds=(0, 1),
                shaper=wrong)
    with pytest.raises(ValueError, match="at least one source"):
        studies.transfer(tiny_config(), {"a": sites["a"]}, asymmetric_cost, (0,),
                         {"a": learned["a"].params["shaper"]})


def test_noise_settings_are_the_papers_grid():
    grid = studies.noise_settings()
    assert [g[0] for g in grid] == ["none"] + ["fixed"] * 10 + ["exp"]
    stds = [g[1] for g in grid if g[0] == "fixed"]
    np.testing.assert_allclose(stds[0], 1e-3)
    np.testing.assert_allclose(stds[-1], 1e-1)
    np.testing.assert_allclose(np.diff(np.log(stds)), np.log(10) * 2 / 9)


def test_noise_settings_reach_the_training(sites):
    """The noise each setting actually used in training, read from the history."""
    config = tiny_config()
    for name, std, changes in studies.noise_settings(n_fixed=1, low=0.05, high=0.05):
        r = methods.train_sites(config.replace(**changes), {"a": sites["a"]}, (0,), name,
                                None, metric=asymmetric_cost)["a"]
        used = r.history["noise_std"].to_numpy()
        if name == "none":
            assert (used == 0).all()
        elif name == "fixed":
            np.testing.assert_allclose(used, std)
        else:
            assert used[0] == pytest.approx(0.05) and (np.diff(used) <= 0).all()


def test_noise_sensitivity_rows_and_curves(sites):
    settings = studies.noise_settings(n_fixed=1, low=0.05, high=0.05)
    rows, curves = studies.noise_sensitivity(tiny_config(), sites, asymmetric_cost,
                                             (0, 1), settings)
    assert len(rows) == len(settings) * 2 * 2
    assert set(rows["noise"]) == {"none", "fixed", "exp"}
    assert np.isfinite(rows["test_cost"]).all()
    epochs = tiny_config().cotrain_epochs
    assert len(curves) == len(settings) * 2 * 2 * epochs
    assert np.isfinite(curves["valid_cost"]).all()


def test_loss_by_error_and_deciles(sites, learned):
    ws = sites["a"]
    idx = studies.demand_deciles(ws.test)
    y = np.asarray(ws.test.targets)[:, 0]
    assert y[idx["low"]].max() <= y[idx["high"]].min()
    errors = np.linspace(-0.2, 0.2, 5)
    curves = studies.loss_by_error(learned["a"], ws.test, errors)
    assert curves["low"].shape == (2, 5) and np.isfinite(curves["high"]).all()
    err = studies.error_deciles(learned["a"].predict(ws.test.inputs), ws.test)
    assert err["low"].shape == (2, len(idx["low"]))
    with pytest.raises(ValueError, match="fraction"):
        studies.demand_deciles(ws.test, 0.7)


def test_shaper_error_falls_with_training(sites, learned):
    """A learned shaper is nearer the true cost than the one init() draws."""
    ws, errors = sites["a"], np.linspace(-0.2, 0.2, 9)
    trained = studies.shaper_error(learned["a"], ws.test, asymmetric_cost, errors)
    program = make_program(tiny_config(), Shapes.of(ws.train), metric=asymmetric_cost)
    init = jax.vmap(program.init)(l2n.runs.seed_keys((0, 1)))
    fresh = dataclasses.replace(learned["a"], params=init.params)
    untrained = studies.shaper_error(fresh, ws.test, asymmetric_cost, errors)
    assert trained.shape == (2,) and np.isfinite(trained).all()
    assert (trained < untrained).all()
