"""Tests of l2n_jax.taskmet: linear solves, the implicit hypergradient, the metric,
the warm-started inner fit and the vmapped TaskMet step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2n_jax import taskmet


def _spd(key, n):
    b = jax.random.normal(key, (n, n))
    return b.T @ b / n + jnp.eye(n)


def test_cg_matches_direct_solve():
    a = _spd(jax.random.key(0), 6)
    b = jax.random.normal(jax.random.key(1), (6,))
    x = jax.jit(lambda b: taskmet.cg(lambda v: a @ v, b, 12))(b)
    np.testing.assert_allclose(x, jnp.linalg.solve(a, b), rtol=1e-4, atol=1e-5)


def test_cg_with_too_few_iterations_is_not_exact():
    a = _spd(jax.random.key(0), 6)
    b = jax.random.normal(jax.random.key(1), (6,))
    x = taskmet.cg(lambda v: a @ v, b, 1)
    assert np.max(np.abs(x - jnp.linalg.solve(a, b))) > 1e-3


def test_cg_is_finite_after_convergence():
    # More iterations than dimensions: the residual hits zero and the guards must
    # keep the iterate instead of dividing 0 by 0.
    a = jnp.diag(jnp.array([1.0, 2.0]))
    x = taskmet.cg(lambda v: a @ v, jnp.array([1.0, 0.0]), 10)
    np.testing.assert_allclose(x, jnp.array([1.0, 0.0]), atol=1e-6)


def test_normal_cg_matches_direct_solve_of_the_ridged_normal_equations():
    m = jax.random.normal(jax.random.key(2), (5, 5)) + 3 * jnp.eye(5)  # not symmetric
    b = jax.random.normal(jax.random.key(3), (5,))
    ridge = 1e-2
    x = taskmet.normal_cg(lambda v: m @ v, lambda w: m.T @ w, b, 15, ridge)
    direct = jnp.linalg.solve(m.T @ m + ridge * jnp.eye(5), m.T @ b)
    np.testing.assert_allclose(x, direct, rtol=1e-3, atol=1e-4)


# A tiny quadratic bilevel problem: weighted ridge regression whose sample weights
# are exp(phi); the task is the distance of theta* to a target.
_A = jax.random.normal(jax.random.key(4), (8, 3))
_Y = jax.random.normal(jax.random.key(5), (8,))
_TARGET = jnp.array([0.5, -1.0, 0.25])
_LAM = 0.5


def _inner_loss(theta, phi):
    return (
        0.5 * jnp.sum(jnp.exp(phi) * (_A @ theta - _Y) ** 2)
        + 0.5 * _LAM * theta @ theta
    )


def _solve(phi):
    w = jnp.exp(phi)
    return jnp.linalg.solve(
        _A.T @ (w[:, None] * _A) + _LAM * jnp.eye(3), _A.T @ (w * _Y)
    )


def _task(theta):
    return jnp.sum((theta - _TARGET) ** 2)


def _hypergrad(phi, n_iter=10, ridge=0.0):
    theta = _solve(phi)
    return taskmet.implicit_grad(
        jax.grad(_inner_loss), theta, phi, jax.grad(_task)(theta), n_iter, ridge
    )


PHI = 0.3 * jax.random.normal(jax.random.key(6), (8,))


def test_implicit_gradient_matches_finite_differences():
    g = _hypergrad(PHI)
    h = 1e-2
    fd = np.array(
        [
            (_task(_solve(PHI.at[i].add(h))) - _task(_solve(PHI.at[i].add(-h))))
            / (2 * h)
            for i in range(8)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-3)
    assert np.max(np.abs(fd)) > 1e-2  # the check is not vacuous


def test_implicit_gradient_matches_the_unrolled_inner_loop():
    def unrolled(phi):
        lr = 1.0 / jnp.linalg.eigvalsh(jax.hessian(_inner_loss)(jnp.zeros(3), phi))[-1]
        step = lambda th, _: (th - lr * jax.grad(_inner_loss)(th, phi), None)
        theta, _ = jax.lax.scan(step, jnp.zeros(3), None, length=2000)
        return _task(theta)

    np.testing.assert_allclose(
        _hypergrad(PHI), jax.grad(unrolled)(PHI), rtol=1e-2, atol=1e-3
    )


def test_implicit_gradient_with_a_ridge_and_few_iterations_is_approximate():
    exact = jax.grad(lambda p: _task(_solve(p)))(PHI)
    np.testing.assert_allclose(_hypergrad(PHI), exact, rtol=1e-3, atol=1e-4)
    rough = _hypergrad(PHI, n_iter=1, ridge=1e-5)
    assert np.max(np.abs(rough - exact)) > 1e-4


def test_metric_is_symmetric_positive_definite():
    net = taskmet.metric_net(3, 4, hidden=16)
    phi = net.init(jax.random.key(7))
    phi = {**phi, "w2": 10 * phi["w2"], "log_scale": jnp.array(-4.0)}
    x = jax.random.normal(jax.random.key(8), (64, 3))
    lam = net.apply(phi, x)
    assert lam.shape == (64, 4, 4)
    np.testing.assert_allclose(lam, jnp.swapaxes(lam, -1, -2), rtol=1e-5, atol=1e-5)
    eig = np.linalg.eigvalsh(np.asarray(lam, np.float64))
    assert eig.min() >= np.exp(-4.0) * (1 - 1e-3)


def test_metric_rejects_wrong_feature_count():
    net = taskmet.metric_net(3, 1)
    with pytest.raises(ValueError, match="3 features"):
        net.apply(net.init(jax.random.key(0)), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="hidden"):
        taskmet.metric_net(3, 1, hidden=0)


def _regression_loss(theta, batch):
    x, y = batch
    return jnp.mean((x @ theta - y) ** 2)


def test_inner_fit_is_warm_startable():
    x = jax.random.normal(jax.random.key(9), (16, 2))
    batch = (x, x @ jnp.array([1.0, -2.0]))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1))
    theta = jnp.zeros(2)
    key = jax.random.key(10)
    sample = lambda k: batch
    fit = lambda th, opt, n: taskmet.inner_fit(
        tx, _regression_loss, sample, key, th, opt, n
    )
    once = fit(theta, tx.init(theta), 20)
    half = fit(theta, tx.init(theta), 10)
    twice = fit(half[0], half[1], 10)
    np.testing.assert_allclose(once[0], twice[0], rtol=1e-5)
    assert int(once[3]) == 20 and _regression_loss(once[0], batch) < _regression_loss(
        theta, batch
    )


def test_inner_fit_stops_below_the_gradient_tolerance():
    x = jnp.eye(2)
    batch = (x, jnp.array([1.0, 1.0]))
    tx = optax.sgd(0.1)
    theta = jnp.zeros(2)
    theta1, _, _, taken = taskmet.inner_fit(
        tx,
        _regression_loss,
        lambda k: batch,
        jax.random.key(0),
        theta,
        tx.init(theta),
        50,
        grad_tol=1e9,
    )
    assert int(taken) == 1  # the first step is taken, then the run freezes
    one = optax.apply_updates(
        theta, tx.update(jax.grad(_regression_loss)(theta, batch), tx.init(theta))[0]
    )
    np.testing.assert_allclose(theta1, one)


def _toy_parts():
    """Linear fit of y = |x0| (misspecified); the task only cares about x0 > 0."""
    x = jax.random.uniform(jax.random.key(11), (32, 2), minval=-1, maxval=1)
    y = jnp.abs(x[:, 0])
    net = taskmet.metric_net(2, 1, hidden=8)
    care = (x[:, 0] > 0).astype(jnp.float32)
    pred = lambda th, idx: x[idx] @ th["w"] + th["b"]
    weighted = lambda th, lam, idx: jnp.mean(lam * (pred(th, idx) - y[idx]) ** 2)
    lam_of = lambda phi, idx: net.apply(phi, x[idx])[:, 0, 0]
    every = jnp.arange(32)
    parts = taskmet.TaskMetParts(
        prepare=lambda phi: lam_of(phi, every),
        inner_loss=lambda th, lam_all, idx: weighted(th, lam_all[idx], idx),
        pred_loss=lambda th, phi, idx: weighted(th, lam_of(phi, idx), idx),
        task_loss=lambda th, idx: (
            jnp.sum(care[idx] * (pred(th, idx) - y[idx]) ** 2) / jnp.sum(care[idx])
        ),
        sample_inner=lambda k: jax.random.permutation(k, 32)[:16],
        sample_implicit=lambda k: jax.random.permutation(k, 32)[:16],
        inner_tx=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
        outer_tx=optax.adam(0.05),
        inner_steps=30,
        cg_iters=5,
        ridge=1e-5,
    )
    return parts, net, every


def _toy_run(key, n_steps):
    parts, net, every = _toy_parts()
    key_phi, key_loop = jax.random.split(key)
    theta = {"w": jnp.zeros(2), "b": jnp.zeros(())}
    state = taskmet.init_state(parts, theta, net.init(key_phi))
    step = lambda s, t: taskmet.taskmet_step(
        parts, jax.random.fold_in(key_loop, t), s, every
    )
    return jax.lax.scan(step, state, jnp.arange(n_steps))


def test_taskmet_step_under_vmap_equals_the_per_seed_loop():
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    batched = jax.jit(jax.vmap(lambda k: _toy_run(k, 3)))(keys)
    single = jax.jit(lambda k: _toy_run(k, 3))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(batched))
    for i in range(3):
        one = single(keys[i])
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(batched)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-6)


def test_taskmet_lowers_the_task_loss_on_a_misspecified_fit():
    _, history = jax.jit(lambda k: _toy_run(k, 40))(jax.random.key(0))
    task = np.asarray(history["task_loss"])
    assert np.all(np.isfinite(task))
    assert task[-5:].mean() < 0.8 * task[:3].mean()


def test_a_frozen_shaper_can_be_the_task_loss():
    # A "shaper" that learned the cost (decision - 2)^2 gives the gradient of that cost.
    shaper = lambda params, decision, batch: params["a"] * (decision - batch) ** 2
    task = taskmet.shaped_task_loss(
        shaper, {"a": jnp.array(1.0)}, lambda theta, batch: theta * jnp.ones_like(batch)
    )
    batch = jnp.full((4,), 2.0)
    np.testing.assert_allclose(jax.grad(task)(jnp.array(3.0), batch), 2.0, rtol=1e-6)
