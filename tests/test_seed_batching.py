"""Config.seed_batching='map': seeds run one after another in one program.

Each seed then trains bitwise as it does alone, and the results agree with the
default vmapped program up to float rounding.
"""

import jax
import numpy as np

import l2n_jax as l2n

from conftest import asymmetric_cost, tiny_config


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_mapped_seeds_equal_their_runs_alone_bitwise(windowset):
    config = tiny_config(seed_batching="map")
    both = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(3, 5),
                   valid=windowset.valid)
    for i, seed in enumerate((3, 5)):
        alone = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(seed,),
                        valid=windowset.valid)
        for a, b in zip(_leaves(both.params), _leaves(alone.params)):
            np.testing.assert_array_equal(a[i], b[0])
        assert both.best_epoch[i] == alone.best_epoch[0]
    # The seeds are really different runs.
    assert not np.array_equal(_leaves(both.params)[0][0], _leaves(both.params)[0][1])


def test_mapped_and_vmapped_seeds_agree(windowset):
    results = {
        batching: l2n.fit(tiny_config(seed_batching=batching), windowset.train,
                          asymmetric_cost, seeds=(0, 1), valid=windowset.valid)
        for batching in ("map", "vmap")
    }
    for a, b in zip(_leaves(results["map"].params), _leaves(results["vmap"].params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    test = windowset.test.inputs
    np.testing.assert_allclose(results["map"].predict(test), results["vmap"].predict(test),
                               rtol=1e-3, atol=1e-4)


def test_mapped_sites_equal_vmapped_sites_for_fixed_losses(windowset):
    config = tiny_config(seed_batching="map")
    # Sites of different lengths: the padded path, vmapped over sites.
    sites = {"a": windowset.train, "b": windowset.train.take(slice(0, 200))}
    mapped = l2n.fit_fixed_loss_sites(config, sites, l2n.losses.mse, seeds=(0, 1))
    vmapped = l2n.fit_fixed_loss_sites(config.replace(seed_batching="vmap"), sites,
                                       l2n.losses.mse, seeds=(0, 1))
    for site in sites:
        for a, b in zip(_leaves(mapped[site].params), _leaves(vmapped[site].params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
