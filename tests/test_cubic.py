"""Tests of the soft top-k (l2n_jax.softsort) and the cubic use case."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2n_jax import softsort, taskmet
from l2n_jax.usecases import cubic, cubic_loss2net, cubic_taskmet

TINY = cubic.CubicConfig(
    n_items=8,
    n_train=24,
    n_valid=8,
    n_test=16,
    sinkhorn_iters=20,
    batch=4,
    max_iters=20,
    val_every=5,
    patience=2,
    metric_hidden=8,
    inner_init_steps=5,
    inner_steps=3,
    inner_batch=4,
    implicit_batch=4,
)


def _two_anchor_plan(scores, k, epsilon, n_iter):
    """The generic Sinkhorn plan on the soft top-k's cost (the reference)."""
    n = scores.shape[-1]
    cost = (-scores[:, None] - jnp.array([0.0, 1.0])) ** 2
    cost = cost / cost.max()
    plan = softsort.sinkhorn_log(
        cost,
        jnp.full(n, -jnp.log(n)),
        jnp.log(jnp.array([k / n, (n - k) / n])),
        epsilon,
        n_iter,
    )
    return plan[:, 0] * n


def test_soft_top_k_matches_the_generic_sinkhorn_plan():
    scores = jax.random.normal(jax.random.key(0), (12,))
    for k, eps in ((1, 0.05), (3, 0.02)):
        z = softsort.soft_top_k(scores, k, eps, 300)
        np.testing.assert_allclose(z, _two_anchor_plan(scores, k, eps, 300), atol=2e-3)
        np.testing.assert_allclose(z.sum(), k, atol=1e-2)
        assert np.all((z >= 0) & (z <= 1 + 1e-6))


def test_soft_top_k_tends_to_the_hard_top_k():
    scores = jnp.array([[0.3, -1.0, 2.0, 0.9, -0.2], [1.0, 0.5, -2.0, 0.0, 3.0]])
    hard = softsort.hard_top_k(scores, 2)
    np.testing.assert_allclose(
        softsort.soft_top_k(scores, 2, 1e-3, 500), hard, atol=1e-2
    )
    soft = softsort.soft_top_k(scores, 2, 0.5, 500)
    assert np.max(np.abs(soft - hard)) > 0.1  # a large epsilon really is soft


def test_soft_top_k_gradient_matches_finite_differences():
    scores = jax.random.uniform(jax.random.key(1), (10,), minval=-1, maxval=1)
    util = jax.random.normal(jax.random.key(2), (10,))
    f = jax.jit(lambda s: jnp.sum(softsort.soft_top_k(s, 1, 0.05, 200) * util))
    g = jax.jit(jax.grad(f))(scores)
    assert np.max(np.abs(g)) > 1e-2
    for i in range(3):
        d = jax.random.normal(jax.random.fold_in(jax.random.key(3), i), (10,))
        h = 1e-3
        fd = (f(scores + h * d) - f(scores - h * d)) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=2e-2, atol=2e-3)


def test_soft_top_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 < k < n"):
        softsort.soft_top_k(jnp.zeros(4), k=4)
    with pytest.raises(ValueError, match="epsilon"):
        softsort.soft_top_k(jnp.zeros(4), k=1, epsilon=0.0)


def test_decision_quality_is_one_at_the_truth_and_negative_when_reversed():
    data = cubic.make_data(TINY)
    y = data.y_test
    assert float(cubic.decision_quality(TINY, y, y)) == pytest.approx(1.0)
    worst = float(cubic.decision_quality(TINY, -y, y))
    expected = (y.min(-1).mean() - y.mean()) / (y.max(-1).mean() - y.mean())
    assert worst == pytest.approx(float(expected), rel=1e-5) and worst < -0.5


def test_data_is_fixed_by_the_data_seed():
    a, b = cubic.make_data(TINY), cubic.make_data(TINY)
    c = cubic.make_data(dataclasses.replace(TINY, data_seed=1))
    np.testing.assert_array_equal(a.x_fit, b.x_fit)
    assert not np.allclose(a.x_fit, c.x_fit)
    assert a.x_fit.shape == (16, 8) and a.x_valid.shape == (8, 8)
    np.testing.assert_allclose(a.y_fit, 10 * (a.x_fit**3 - 0.65 * a.x_fit), rtol=1e-6)


def test_mse_learns_the_negative_least_squares_slope():
    cfg = dataclasses.replace(TINY, max_iters=300, val_every=10, patience=30)
    result = cubic.run("mse", seeds=(0,), cfg=cfg)
    data = cubic.make_data(cfg)
    slope, _ = np.polyfit(np.ravel(data.x_fit), np.ravel(data.y_fit), 1)
    assert slope < 0
    assert float(result.kept["theta"]["w"][0]) == pytest.approx(slope, abs=0.25)
    assert result.test_dq[0] < 0  # it picks the worst items


def test_taskmet_under_vmap_equals_the_per_seed_loop():
    train, _ = cubic.make_train("taskmet", TINY)
    data = cubic.make_data(TINY)
    keys = jax.vmap(jax.random.key)(jnp.array([0, 1]))
    batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, data)
    single = jax.jit(train)
    for i in range(2):
        one = single(keys[i], data)
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(batched)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)
    # allclose treats NaN == NaN: the comparison is only meaningful on finite runs.
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(batched))
    assert int(batched.rounds.min()) >= 3  # it ran several validation rounds


def test_run_rejects_bad_inputs():
    with pytest.raises(ValueError, match="unknown cubic method 'sgd'"):
        cubic.run("sgd", cfg=TINY)
    with pytest.raises(ValueError, match="batch"):
        cubic.run("mse", cfg=dataclasses.replace(TINY, batch=100))
    with pytest.raises(ValueError, match="n_valid"):
        cubic.validate(dataclasses.replace(TINY, n_valid=24))
    with pytest.raises(ValueError, match="distinct"):
        cubic.run("mse", seeds=(1, 1), cfg=TINY)
    with pytest.raises(ValueError, match="learns no metric"):
        cubic.metric_curve(cubic.run("mse", seeds=(0,), cfg=TINY), jnp.zeros(3))


def _tiny_parts():
    data = cubic.make_data(TINY)
    metric = taskmet.metric_net(1, 1, TINY.metric_hidden)
    return cubic_taskmet.taskmet_parts(TINY, data, metric), metric, data


def test_precomputed_metric_gives_the_same_inner_loss():
    parts, metric, _ = _tiny_parts()
    phi = metric.init(jax.random.key(0))
    theta = cubic.init_predictor(jax.random.key(1))
    idx = jnp.array([3, 0, 7, 5])
    inner = jax.jit(lambda th, p: parts.inner_loss(th, parts.prepare(p), idx))
    np.testing.assert_allclose(
        inner(theta, phi), jax.jit(parts.pred_loss)(theta, phi, idx), rtol=1e-6
    )


def test_cubic_hypergradient_matches_the_closed_form_inner_solution():
    # With a linear predictor the inner problem is a weighted least squares in
    # (w, b): theta*(phi) has a closed form, differentiable end to end.
    parts, metric, data = _tiny_parts()
    phi = metric.init(jax.random.key(2))
    idx = jnp.arange(data.x_fit.shape[0])
    x, y = data.x_fit.ravel(), data.y_fit.ravel()

    def solve(phi):
        lam = metric.apply(phi, data.x_fit[..., None])[..., 0, 0].ravel()
        design = jnp.stack([x, jnp.ones_like(x)], axis=1)
        wb = jnp.linalg.solve(design.T @ (lam[:, None] * design), design.T @ (lam * y))
        return {"w": wb[0], "b": wb[1]}

    task = lambda theta: parts.task_loss(theta, idx)

    @jax.jit
    def both(phi):
        theta = solve(phi)
        g = taskmet.implicit_grad(
            lambda t, p: jax.grad(parts.pred_loss)(t, p, idx),
            theta,
            phi,
            jax.grad(task)(theta),
            n_iter=10,
            ridge=0.0,
        )
        return g, jax.grad(lambda p: task(solve(p)))(phi)

    g, exact = both(phi)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(exact)):
        np.testing.assert_allclose(
            a, b, rtol=2e-2, atol=2e-4 * np.max(np.abs(b)) + 1e-6
        )
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves((g, exact)))
    assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(exact)) > 1e-4


def test_a_diverging_run_is_flagged_and_keeps_its_last_finite_best():
    cfg = dataclasses.replace(TINY, lr=1e30, max_iters=40, val_every=5, patience=3)
    res = cubic.run("mse", seeds=(0,), cfg=cfg)
    assert bool(res.diverged[0])
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(res.kept))
    assert res.best_iter[0] < res.stop_iter[0]


# ------------------------------------------------------------------ Loss2Net
# max_iters sets the noise schedule's length: over TINY's 20 iterations the noise
# would be gone (0.5 -> 0.01) before the shaper has learnt anything.
L2N_SMALL = dataclasses.replace(
    TINY, n_items=20, n_train=60, n_valid=20, n_test=20, batch=10, max_iters=300,
    l2n_pretrain=100,
)


def test_loss2net_cost_is_a_black_box_the_step_never_differentiates():
    d, y = jnp.array([0.1, 2.0, -1.0, 0.5]), jnp.array([1.0, 3.0, -2.0, 0.0])
    # Minus the normalised DQ of the top-1 pick (item 1, the best item here).
    assert float(cubic_loss2net.system_cost(d, y)) == pytest.approx(-1.0)
    with pytest.raises(TypeError, match="black box"):
        jax.grad(cubic_loss2net.system_cost)(d, y)
    # The whole training step goes through the wrapped cost: it runs, so nothing in
    # it differentiates the cost.
    hist = jax.jit(lambda k: cubic_loss2net.trace(TINY, k, cubic.make_data(TINY), 3))(
        jax.random.key(0)
    )
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(hist))
    assert float(hist["shaper_loss"][0]) > 0


def test_loss2net_decisions_pick_what_the_predictor_picks():
    x = jax.random.uniform(jax.random.key(0), (5, 8), minval=-1, maxval=1)
    theta = {"w": jnp.array(-0.3), "b": jnp.array(0.7)}
    d = cubic_loss2net.decisions(theta, x)
    np.testing.assert_array_equal(jnp.argmax(d, -1), jnp.argmax(cubic.predict(theta, x), -1))
    np.testing.assert_allclose(d.std(-1), 1.0, rtol=1e-4)
    sigma = jax.jit(cubic_loss2net.noise_std(TINY))
    np.testing.assert_allclose(
        [sigma(0), sigma(TINY.max_iters)], [TINY.l2n_noise_start, TINY.l2n_noise_end],
        rtol=1e-5,
    )


def test_loss2net_under_vmap_equals_the_per_seed_loop():
    train, _ = cubic.make_train("loss2net", TINY)
    data = cubic.make_data(TINY)
    keys = jax.vmap(jax.random.key)(jnp.array([0, 1]))
    batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, data)
    single = jax.jit(train)
    for i in range(2):
        one = single(keys[i], data)
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(batched)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(batched))
    assert int(batched.rounds.min()) >= 3


def test_loss2net_turns_the_mse_slope_positive():
    # From the least-squares start (w < 0, the worst picks) every seed's slope
    # must turn positive, the sign the decision needs, within 60 co-training steps.
    data = cubic.make_data(L2N_SMALL)
    keys = jax.vmap(jax.random.key)(jnp.arange(4))
    hist = jax.jit(
        jax.vmap(lambda k: cubic_loss2net.trace(L2N_SMALL, k, data, 60))
    )(keys)
    w = np.asarray(hist["w"])
    assert np.all(w[:, 0] < 0)  # the MSE pre-training's slope
    assert np.all(w[:, -1] > 0), w[:, -1]


def test_loss2net_rejects_bad_settings():
    with pytest.raises(ValueError, match="top 1"):
        cubic.make_train("loss2net", dataclasses.replace(TINY, k=2))
    with pytest.raises(ValueError, match="l2n_shaper"):
        cubic.validate(dataclasses.replace(TINY, l2n_shaper="rnn"))
    with pytest.raises(ValueError, match="l2n_warmup"):
        cubic.validate(dataclasses.replace(TINY, l2n_warmup=-1))
