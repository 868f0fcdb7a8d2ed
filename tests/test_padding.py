"""Sites of different lengths in one program: padded, masked, and equal to alone."""

import importlib

import chex
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import losses

from conftest import asymmetric_cost, make_series, tiny_config


@pytest.fixture(scope="module")
def uneven():
    """Two sites: 'short' (~200 train windows) and 'long' (~330)."""
    short = l2n.make_windows(make_series(300, seed=1), ["load"], lookback=8)
    long = l2n.make_windows(make_series(480, seed=2), ["load"], lookback=8)
    return {"short": short, "long": long}


def _fit(config, sets, **kwargs):
    return l2n.fit_sites(config, {s: w.train for s, w in sets.items()}, asymmetric_cost,
                         seeds=(0, 1), valids={s: w.valid for s, w in sets.items()},
                         **kwargs)


def test_a_padded_site_runs_as_alone(uneven):
    config = tiny_config()
    batched = _fit(config, uneven)
    for site in uneven:
        alone = _fit(config, {site: uneven[site]}, pad=True)[site]
        chex.assert_trees_all_close(batched[site].params, alone.params, rtol=1e-4,
                                    atol=1e-5)
        np.testing.assert_array_equal(batched[site].best_epoch, alone.best_epoch)
        # Its own steps per epoch and its own schedules (lr over its run length).
        steps = len(uneven[site].train) // config.batch_size
        assert batched[site].history.groupby(["seed", "epoch"]).size().eq(steps).all()
        np.testing.assert_allclose(batched[site].history["lr"], alone.history["lr"],
                                   rtol=1e-6)
        np.testing.assert_allclose(batched[site].history["cost"], alone.history["cost"],
                                   rtol=1e-4, atol=1e-6)
    assert not np.allclose(batched["short"].history["lr"].iloc[:5],
                           batched["long"].history["lr"].iloc[:5])
    n = [len(w.train) // config.batch_size for w in uneven.values()]
    waste = batched["short"].timing["padding_waste"]
    assert waste == pytest.approx(1 - sum(n) / (2 * max(n)))


def test_padding_is_never_read(uneven, monkeypatch):
    config = tiny_config()
    zeros = _fit(config, uneven)

    def pad_with_nan(w, n):
        extra = n - w.inputs.shape[0]
        return l2n.Windows(*(np.concatenate([x, np.full((extra, *x.shape[1:]), np.nan,
                                                        np.float32)]) for x in w))

    monkeypatch.setattr(importlib.import_module("l2n_jax.sites"), "pad_to", pad_with_nan)
    nans = _fit(config, uneven)  # NaN rows would freeze the run (NonFiniteError)
    for site in uneven:
        chex.assert_trees_all_equal(nans[site].params, zeros[site].params)


def test_fixed_loss_sites_padded_equal_alone(uneven):
    config = tiny_config()
    trains = {s: w.train for s, w in uneven.items()}
    valids = {s: w.valid for s, w in uneven.items()}
    batched = l2n.fit_fixed_loss_sites(config, trains, losses.mse, seeds=(0, 1),
                                       valids=valids)
    alone = l2n.fit_fixed_loss_sites(config, {"short": trains["short"]}, losses.mse,
                                     seeds=(0, 1), valids={"short": valids["short"]},
                                     pad=True)
    chex.assert_trees_all_close(batched["short"].params, alone["short"].params,
                                rtol=1e-4, atol=1e-5)


def test_uneven_sites_refused_without_padding(uneven):
    with pytest.raises(ValueError, match="different window counts"):
        _fit(tiny_config(), uneven, pad=False)
