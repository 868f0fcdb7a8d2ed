"""Every registered use case loads finite windows and has a finite per-sample metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import methods
from l2n_jax.methods import Options
from l2n_jax.metrics import batch_metric
from l2n_jax.usecases import REGISTRY, netalloc, toy


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def usecase(request):
    uc = REGISTRY[request.param]
    return uc, uc.load(uc.sites[0])


def test_registry_names_match_use_case_names():
    assert set(REGISTRY) >= {"netalloc", "toy"}
    for name, uc in REGISTRY.items():
        assert uc.name == name
        assert len(uc.sites) >= 1
        assert set(uc.methods) <= set(methods.names(name))
        assert isinstance(uc.options(), Options)
        assert isinstance(uc.get_config(quick=True), l2n.Config)
        assert isinstance(uc.get_config(), l2n.Config)


def test_load_gives_finite_windows_with_matching_shapes(usecase):
    uc, ws = usecase
    for split in (ws.train, ws.valid, ws.test):
        n = len(split)
        assert n > 0
        assert split.inputs.ndim == 4
        n_series = split.inputs.shape[1]
        m = split.targets.shape[1]
        assert split.targets.shape == (n, m)
        assert split.obs.shape[0] == n
        assert split.ir_targets.shape == (n, n_series)
        assert split.current.shape == (n, m)
        for x in split:
            assert np.isfinite(np.asarray(x)).all()
    # MinMax scaling on the training rows: training inputs lie in [0, 1]. acra (v2)
    # scales by the training-split peak of the targets; its inputs reach into
    # days outside the split (Monday, the previous day) and may exceed 1.
    assert ws.train.inputs.min() >= -1e-6
    assert uc.name == "acra" or ws.train.inputs.max() <= 1 + 1e-6
    # The quick config's batch fits the training data.
    assert len(ws.train) >= uc.get_config(quick=True).batch_size


def test_metric_gives_a_finite_scalar_per_sample(usecase):
    uc, ws = usecase
    metric = uc.make_metric()
    test = ws.test
    decisions = np.asarray(test.targets) + np.linspace(-0.2, 0.2, len(test))[:, None]
    # batch_metric: vmapped per sample; a StatefulMetric (power) scans the split.
    cost_fn = batch_metric(metric)
    one = cost_fn(jnp.asarray(decisions[:1]), jnp.asarray(test.obs[:1]))[0]
    assert jnp.shape(one) == ()
    costs = np.asarray(jax.jit(cost_fn)(decisions, test.obs))
    assert costs.shape == (len(test),)
    assert np.isfinite(costs).all()
    if uc.name in ("acra", "acra_pjm"):  # a cost is minus a profit; admission can beat "serve all"
        return
    assert (costs >= 0).all()
    # Exact decisions cost no more than perturbed ones.
    exact = np.asarray(cost_fn(test.targets, test.obs))
    assert exact.mean() <= costs.mean()


def test_unknown_site_is_rejected():
    with pytest.raises(ValueError, match="atlantis"):
        netalloc.load("atlantis")
    with pytest.raises(ValueError, match="atlantis"):
        toy.load("atlantis")


@pytest.mark.parametrize("beta, gamma", [(0.5, 1.0), (2.0, 3.0)])
def test_netalloc_metric_on_hand_made_cases(beta, gamma):
    metric = jax.jit(netalloc.make_metric(beta=beta, gamma=gamma))

    def cost(decision, demand):
        return float(metric(jnp.array([decision]), jnp.array([demand])))

    assert cost(0.3, 0.5) == pytest.approx(beta)  # under-provision: the SLA fee
    assert cost(0.0, 0.9) == pytest.approx(beta)  # however large the shortfall
    assert cost(0.7, 0.5) == pytest.approx(gamma * 0.2, rel=1e-5)  # over by 0.2
    assert cost(0.9, 0.1) == pytest.approx(gamma * 0.8, rel=1e-5)
    assert cost(0.5, 0.5) == pytest.approx(0.0, abs=1e-7)  # exact: no fee, no waste


def test_netalloc_metric_rejects_non_positive_prices():
    with pytest.raises(ValueError):
        netalloc.make_metric(beta=0.0)
    with pytest.raises(ValueError):
        netalloc.make_metric(gamma=-1.0)


def test_toy_metric_is_absolute_error_against_the_mean_of_next_values():
    metric = toy.make_metric()
    assert float(metric(jnp.array([0.2]), jnp.array([0.5]))) == pytest.approx(0.3)
    ws = toy.load("n2")
    # The target/obs is the mean of the inputs' next values.
    frame = toy.generate(2)
    raw_next = ws.scaler.inverse(ws.train.ir_targets, ["x0", "x1"]).mean(axis=1)
    np.testing.assert_allclose(ws.scaler.inverse(ws.train.obs, ["mean"])[:, 0], raw_next,
                               rtol=1e-4, atol=1e-4)
    assert frame.shape == (toy.LENGTH, 3)


def test_toy_generate_is_deterministic_and_rejects_no_inputs():
    np.testing.assert_array_equal(toy.generate(3, length=100), toy.generate(3, length=100))
    with pytest.raises(ValueError):
        toy.generate(0)
