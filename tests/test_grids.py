"""Grids on the run axis (``l2n.fit_grid``): a grid of Config values trains as ONE
program and each point equals its own ``fit``; tiny budget."""

import importlib

import chex
import jax
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import compiles, grids, studies

from conftest import asymmetric_cost, make_series, tiny_config

# `l2n_jax.fit` the module (the package re-exports the function under that name).
fit_lib = importlib.import_module("l2n_jax.fit")


@pytest.fixture(scope="module")
def ws():
    return l2n.make_windows(make_series(300, seed=3), ["load"], lookback=8)


@pytest.fixture
def builds(monkeypatch):
    """The programs built (calls of ``make_program``), as their configs."""
    seen = []
    real = fit_lib.make_program
    monkeypatch.setattr(fit_lib, "make_program",
                        lambda config, *a, **k: seen.append(config) or real(config, *a, **k))
    return seen


def _grid_equals_separate_fits(config, ws, field, values, builds):
    with compiles.counting() as seen:
        grid = l2n.fit_grid(config, ws.train, asymmetric_cost, {field: values},
                            seeds=(0, 1), valid=ws.valid, verbose=False)
    assert len(builds) == 1  # one program for the whole grid...
    assert compiles.training_programs(seen) == 2  # ...compiled once: start + epochs
    with compiles.counting() as alone:
        for value, g in zip(values, grid):
            r = l2n.fit(config.replace(**{field: value}), ws.train, asymmetric_cost,
                        seeds=(0, 1), valid=ws.valid, verbose=False)
            assert g.config == r.config and getattr(g.config, field) == value
            # The same runs, up to the float rounding of the batched program.
            chex.assert_trees_all_close(g.params, r.params, atol=1e-5, rtol=1e-5)
            for name in ("cost", "noise_std", "lr", "valid_cost"):
                np.testing.assert_allclose(g.history[name], r.history[name],
                                           rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(g.best_epoch, r.best_epoch)
    assert compiles.training_programs(alone) == 2 * len(values)  # before: per value
    return grid


def test_a_noise_std_grid_is_one_program_equal_to_separate_fits(ws, builds):
    grid = _grid_equals_separate_fits(tiny_config(noise_schedule="fixed"), ws,
                                      "noise_start", [0.0, 0.02, 0.1], builds)
    for g, std in zip(grid, [0.0, 0.02, 0.1]):
        np.testing.assert_allclose(g.history["noise_std"], std, rtol=1e-6)


def test_an_lr_max_grid_is_one_program_equal_to_separate_fits(ws, builds):
    _grid_equals_separate_fits(tiny_config(), ws, "lr_max", [3e-4, 1e-3, 3e-3], builds)


def test_no_noise_is_a_fixed_std_of_zero(ws):
    """What lets noise_sensitivity put 'none' in the fixed stds' program."""
    none = l2n.fit(tiny_config(noise_schedule="none"), ws.train, asymmetric_cost,
                   valid=ws.valid, verbose=False)
    zero = l2n.fit(tiny_config(noise_schedule="fixed", noise_start=0.0), ws.train,
                   asymmetric_cost, valid=ws.valid, verbose=False)
    chex.assert_trees_all_equal(none.params, zero.params)


def test_a_grid_refuses_fields_that_change_the_program(ws):
    def grid(config, values):
        return l2n.fit_grid(config, ws.train, asymmetric_cost, values, verbose=False)

    with pytest.raises(ValueError, match=r"only vary the Config fields \['noise_start'"):
        grid(tiny_config(), {"epochs": [3, 4]})
    with pytest.raises(ValueError, match="no effect"):
        grid(tiny_config(noise_schedule="none"), {"noise_start": [0.1, 0.2]})
    with pytest.raises(ValueError, match="as many values"):
        grid(tiny_config(), {"lr_max": [1e-3, 2e-3], "shaper_lr": [1e-3]})
    with pytest.raises(ValueError, match="lr_min"):  # a point's config is validated
        grid(tiny_config(), {"lr_max": [1e-6]})
    program = l2n.make_program(tiny_config(), l2n.Shapes.of(ws.train),
                               metric=asymmetric_cost)
    with pytest.raises(ValueError, match="without hyper=True"):
        program.init(jax.random.key(0), {"hyper": {"lr_max": 1e-3}})


def test_group_splits_configs_by_what_they_compile():
    base = tiny_config(noise_schedule="fixed")
    configs = [base.replace(noise_start=0.01), tiny_config(),
               base.replace(noise_start=0.1), base.replace(noise_start=0.1, noise_end=0.5)]
    (b0, i0, g0), (b1, i1, g1) = grids.group(configs)
    assert (i0, i1) == ([0, 2, 3], [1]) and b0 == configs[0] and b1 == configs[1]
    assert g0 == {"noise_start": [0.01, 0.1, 0.1]} and g1 == {}  # noise_end: unused


def test_noise_sensitivity_compiles_two_programs(builds):
    wss = {"a": l2n.make_windows(make_series(300, seed=3), ["load"], lookback=8)}
    settings = studies.noise_settings(n_fixed=3, low=0.01, high=0.1)
    with compiles.counting() as seen:
        rows, curves = studies.noise_sensitivity(tiny_config(), wss, asymmetric_cost,
                                                 (0,), settings)
    # none + 3 fixed stds in one program, the decay in another (before: 5).
    assert [c.noise_schedule for c in builds] == ["fixed", "exp"]
    assert compiles.training_programs(seen) == 4
    assert list(dict.fromkeys(rows["noise"])) == ["none", "fixed", "exp"]
    assert len(rows) == 5 and len(curves) == 5 * tiny_config().cotrain_epochs
    np.testing.assert_allclose(rows["noise_std"][1:4], np.geomspace(0.01, 0.1, 3))
