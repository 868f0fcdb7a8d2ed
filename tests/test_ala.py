"""Adaptive Loss Alignment (``l2n_jax.ala``): the policy moves Phi toward a known
optimum, the vmapped trainer equals its per-seed loop, the registry entry runs, and
bad inputs raise named errors."""

import math

import jax
import numpy as np
import pytest
from conftest import UNDER_WEIGHT, asymmetric_cost, make_series, tiny_config

import l2n_jax as l2n
from l2n_jax import ala, methods
from l2n_jax.train import Shapes

# asymmetric_cost = (UNDER_WEIGHT + 1) x the pinball loss at this quantile, so with
# the margin at 0 and no MSE term the best loss of the family is this tau.
BEST_TAU = UNDER_WEIGHT / (UNDER_WEIGHT + 1.0)


@pytest.fixture(scope="module")
def noisy():
    """~1400 training windows of a noisy series (the best quantile matters)."""
    return l2n.make_windows(make_series(2000, noise=0.5), ["load"], lookback=8)


def _tau_only(start_tau, **changes):
    return ala.ALAConfig(
        children=8, periods_per_epoch=4, moves=("asymmetry",), replay=2,
        phi_init=(math.log(start_tau / (1 - start_tau)), 0.0, math.log(1e-3)),
        policy_lr=3e-3, **changes)


@pytest.mark.parametrize("start_tau", [0.5, 0.95])
def test_policy_moves_tau_toward_the_known_best_quantile(noisy, start_tau):
    config = tiny_config(epochs=12, lr_schedule="fixed", lr_max=1e-2)
    result = ala.fit_ala(config, noisy.train, asymmetric_cost, valid=noisy.valid,
                         seeds=(0, 1), ala=_tau_only(start_tau), verbose=False)
    tau = result.history.groupby("step")["tau"].mean()  # over seeds; children inside
    # The early moves go toward the optimum, from either side ...
    early = tau.iloc[len(tau) // 4]
    assert abs(early - BEST_TAU) < abs(start_tau - BEST_TAU)
    assert (early > start_tau) == (start_tau < BEST_TAU)
    # ... and the kept epoch's Phi is closer to it than where the run started.
    phi = np.asarray(result.params["phi"])[..., 0]  # [seeds, children]
    kept = 1.0 / (1.0 + np.exp(-phi.mean()))
    assert abs(kept - BEST_TAU) < abs(start_tau - BEST_TAU)
    # Only the movable parameter moved.
    np.testing.assert_allclose(np.asarray(result.params["phi"])[..., 1:],
                               np.broadcast_to([0.0, math.log(1e-3)], phi.shape + (2,)),
                               rtol=1e-6)


def test_vmapped_trainer_equals_its_per_seed_loop(windowset):
    config = tiny_config(epochs=2)  # 1 of pre-training, 1 of ALA (4 policy periods)
    shapes = Shapes.of(windowset.train)
    program = ala.make_program(config, shapes, asymmetric_cost,
                               ala=ala.ALAConfig(children=2, periods_per_epoch=4))
    keys = jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32))
    args = (windowset.train, windowset.valid)
    both, hist = jax.jit(jax.vmap(program.run, in_axes=(0, None, None)))(keys, *args)
    run_one = jax.jit(program.run)
    for i in range(2):
        alone, hist_alone = run_one(keys[i], *args)
        for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(np.asarray(a)[i], b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(hist["tau"])[i], hist_alone["tau"],
                                   rtol=1e-5)
    # The seeds are different runs, and Phi really moved.
    assert not np.allclose(np.asarray(both.params["phi"])[0], both.params["phi"][1])
    assert np.ptp(np.asarray(hist["tau"])) > 0


def test_registry_smoke_on_two_sites_of_different_lengths(windowset):
    other = l2n.make_windows(make_series(300, seed=1, extra_column=True), ["load"],
                             lookback=8)
    task = methods.Task(tiny_config(epochs=2), {"a": windowset, "b": other},
                        asymmetric_cost, seeds=(0, 1), verbose=False)
    run = methods.run("ala", task)
    assert set(run.rows["site"]) == {"a", "b"} and len(run.rows) == 4
    assert np.isfinite(run.rows["cost"]).all()
    assert ((run.rows["knob"] > 0) & (run.rows["knob"] < 1)).all()  # the kept tau
    fit = run.fits["a"]
    assert fit.predict(windowset.test.inputs).shape == (2, len(windowset.test), 1)


def test_stateful_metric_is_scored_in_time_order(windowset):
    from l2n_jax.usecases.power import make_metric

    result = ala.fit_ala(tiny_config(), windowset.train, make_metric(),
                         valid=windowset.valid, seeds=(0,),
                         ala=ala.ALAConfig(children=2), verbose=False)
    scored = l2n.evaluate(result, windowset.valid, make_metric())["cost"].iloc[0]
    child = int(result.params["child"][0])
    # The delivered child's validation cost is the whole split scanned in order.
    np.testing.assert_allclose(result.params["child_valid_cost"][0, child], scored,
                               rtol=1e-5)


@pytest.mark.parametrize("changes, field", [
    (dict(children=0), "ALAConfig.children"),
    (dict(moves=("tau",)), "ALAConfig.moves"),
    (dict(phi_init=(9.0, 0.0, 0.0)), "ALAConfig.phi_init"),
    (dict(reward="siblings", children=1), "ALAConfig.reward"),
    (dict(discount=1.0), "ALAConfig.discount"),
])
def test_bad_alaconfig_raises_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ala.ALAConfig(**changes)


def test_bad_calls_raise_clear_errors(windowset):
    with pytest.raises(ValueError, match="needs validation windows"):
        ala.fit_ala(tiny_config(), windowset.train, asymmetric_cost, valid=None)
    with pytest.raises(ValueError, match="periods_per_epoch"):
        ala.fit_ala(tiny_config(), windowset.train, asymmetric_cost,
                    valid=windowset.valid, ala=ala.ALAConfig(periods_per_epoch=1000))
    with pytest.raises(ValueError, match="must be an ALAConfig"):
        ala.fit_ala(tiny_config(), windowset.train, asymmetric_cost,
                    valid=windowset.valid, ala={"children": 2})
