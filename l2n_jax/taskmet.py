"""TaskMet: task-driven metric learning (Bansal, Chen, Mukadam, Amos, NeurIPS 2023).

A metric ``Lambda_phi(x) = L_phi(x) L_phi(x)^T + e^s I`` (an MLP on the features
gives ``L``, ``s`` is learned) weights the prediction loss
``(f_theta(x) - y)^T Lambda_phi(x) (f_theta(x) - y)``. Bilevel training:

* inner: K Adam steps of the predictor under that loss, warm-started (theta and its
  optimiser state persist across outer steps), a ``lax.scan``;
* outer: Adam on phi with ``d task(theta*(phi)) / d phi`` by the implicit function
  theorem. With ``F(theta, phi) = grad_theta L_pred = 0`` at the inner solution and
  ``A = dF/dtheta``, the hypergradient is ``-(dF/dphi)^T u`` where ``A^T u =
  grad_theta task``; ``u`` comes from a few conjugate-gradient iterations on the
  normal equations ``(A A^T + ridge I) u = A grad_theta task`` (a ridge keeps the
  system well posed when the inner problem is flat or not converged).

The pieces are generic (any predictor, any pytree of parameters, any differentiable
task loss) so that window-data trainers can reuse them; ``usecases/cubic.py`` is
the anchor problem. Everything is float32; nothing here needs float64.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree


# --------------------------------------------------------------------- the metric
class MetricNet(NamedTuple):
    """A metric network as a pure pair.

    ``init(key) -> phi``; ``apply(phi, x [..., d]) -> Lambda [..., m, m]``.
    """

    init: Callable
    apply: Callable
    n_out: int


def metric_net(n_features: int, n_out: int, hidden: int = 200) -> MetricNet:
    """``Lambda(x) = L L^T + e^s I`` with ``L`` from a d-hidden-(m*m) ReLU MLP.

    Initialised like a PyTorch ``Linear`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) with
    ``s = 0``, as in the authors' code, so the starting metric is about the identity.
    """
    for name, v in (("n_features", n_features), ("n_out", n_out), ("hidden", hidden)):
        if v < 1:
            raise ValueError(f"metric_net needs {name} >= 1, got {v}")

    def init(key: jax.Array) -> dict:
        k1, k2, k3, k4 = jax.random.split(key, 4)
        b1, b2 = 1.0 / jnp.sqrt(n_features), 1.0 / jnp.sqrt(hidden)
        u = jax.random.uniform
        return {
            "w1": u(k1, (n_features, hidden), minval=-b1, maxval=b1),
            "b1": u(k2, (hidden,), minval=-b1, maxval=b1),
            "w2": u(k3, (hidden, n_out * n_out), minval=-b2, maxval=b2),
            "b2": u(k4, (n_out * n_out,), minval=-b2, maxval=b2),
            "log_scale": jnp.zeros((), jnp.float32),
        }

    def apply(phi: dict, x: jax.Array) -> jax.Array:
        if x.shape[-1] != n_features:
            raise ValueError(
                f"metric_net expects {n_features} features, got shape {x.shape}"
            )
        h = jax.nn.relu(x @ phi["w1"] + phi["b1"])
        low = (h @ phi["w2"] + phi["b2"]).reshape(*x.shape[:-1], n_out, n_out)
        eye = jnp.eye(n_out, dtype=low.dtype)
        return low @ jnp.swapaxes(low, -1, -2) + jnp.exp(phi["log_scale"]) * eye

    return MetricNet(init, apply, n_out)


def mahalanobis(lam: jax.Array, err: jax.Array) -> jax.Array:
    """``err^T Lambda err``: lam [..., m, m], err [..., m] -> [...]."""
    return jnp.einsum("...i,...ij,...j->...", err, lam, err)


# --------------------------------------------------------------------- the inner fit
def inner_fit(
    tx: optax.GradientTransformation,
    loss_fn: Callable,
    sample: Callable,
    key: jax.Array,
    theta: Any,
    opt_state: Any,
    n_steps: int,
    grad_tol: float = 0.0,
):
    """``n_steps`` optimiser steps of ``loss_fn(theta, sample(key_t))``, a lax.scan.

    Once a step's gradient norm falls below ``grad_tol`` the remaining steps leave
    theta unchanged (the authors' early break, branch-free). Step keys are
    ``fold_in(key, t)``.

    Returns:
      (theta, opt_state, last loss, steps taken).
    """

    def step(carry, t):
        theta, opt_state, done, taken, last = carry
        value, grad = jax.value_and_grad(loss_fn)(
            theta, sample(jax.random.fold_in(key, t))
        )
        updates, new_opt = tx.update(grad, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        keep = lambda new, old: jax.tree.map(
            lambda a, b: jnp.where(done, b, a), new, old
        )
        theta, opt_state = keep(new_theta, theta), keep(new_opt, opt_state)
        taken = taken + jnp.where(done, 0, 1)
        last = jnp.where(done, last, value)
        done = done | (optax.tree.norm(grad) < grad_tol)
        return (theta, opt_state, done, taken, last), None

    start = (
        theta,
        opt_state,
        jnp.array(False),
        jnp.array(0, jnp.int32),
        jnp.array(jnp.nan, jnp.float32),
    )
    (theta, opt_state, _, taken, last), _ = jax.lax.scan(
        step, start, jnp.arange(n_steps)
    )
    return theta, opt_state, last, taken


# --------------------------------------------------------------------- linear solves
def cg(op: Callable, b: jax.Array, n_iter: int) -> jax.Array:
    """``n_iter`` conjugate-gradient iterations on ``op(x) = b`` (op SPD), from 0.

    Fixed iteration count (vmappable, no data-dependent exit); a step whose
    denominator vanishes (already converged) is skipped instead of dividing by 0.
    """

    def body(_, carry):
        x, r, p, rs = carry
        ap = op(p)
        denom = jnp.vdot(p, ap)
        alpha = jnp.where(denom > 0, rs / jnp.where(denom > 0, denom, 1.0), 0.0)
        x, r = x + alpha * p, r - alpha * ap
        rs_new = jnp.vdot(r, r)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        return x, r, r + beta * p, rs_new

    start = (jnp.zeros_like(b), b, b, jnp.vdot(b, b))
    return jax.lax.fori_loop(0, n_iter, body, start)[0]


def normal_cg(
    matvec: Callable, rmatvec: Callable, b: jax.Array, n_iter: int, ridge: float
) -> jax.Array:
    """Solves ``M x = b`` by CG on ``(M^T M + ridge I) x = M^T b``.

    ``matvec(x) = M x`` and ``rmatvec(y) = M^T y`` on flat vectors.
    """
    op = lambda x: rmatvec(matvec(x)) + ridge * x
    return cg(op, rmatvec(b), n_iter)


def implicit_grad(
    optimality: Callable,
    theta: Any,
    phi: Any,
    v: Any,
    n_iter: int = 5,
    ridge: float = 1e-5,
) -> Any:
    """Hypergradient ``d task(theta*(phi)) / d phi`` by the implicit function theorem.

    Args:
      optimality: ``(theta, phi) -> F`` (same structure as theta), zero at the inner
        solution, e.g. ``grad_theta L_pred``.
      theta: the inner solution; phi: the outer parameters.
      v: ``grad_theta task`` at theta (same structure as theta).
      n_iter, ridge: CG iterations and ridge of the normal equations.

    Returns:
      The gradient with respect to phi (same structure as phi).
    """
    flat_theta, unravel = ravel_pytree(theta)
    flat_v, _ = ravel_pytree(v)
    flat_f = lambda t: ravel_pytree(optimality(unravel(t), phi))[0]
    # A = dF/dtheta; we need u with A^T u = v, so M = A^T (a VJP) and M^T = A (a JVP).
    _, vjp_theta = jax.vjp(flat_f, flat_theta)
    matvec = lambda u: vjp_theta(u)[0]
    rmatvec = lambda w: jax.jvp(flat_f, (flat_theta,), (w,))[1]
    u = normal_cg(matvec, rmatvec, flat_v, n_iter, ridge)
    _, vjp_phi = jax.vjp(lambda p: ravel_pytree(optimality(theta, p))[0], phi)
    return jax.tree.map(jnp.negative, vjp_phi(u)[0])


# --------------------------------------------------------------------- the method
@struct.dataclass
class TaskMetState:
    """One TaskMet run; arrays only, so it stacks under vmap over seeds."""

    theta: Any  # predictor parameters
    theta_opt: Any  # its (inner) optimiser state, kept across outer steps
    phi: Any  # metric parameters
    phi_opt: Any  # the outer optimiser state
    step: jax.Array  # () int32, outer steps taken


class TaskMetParts(NamedTuple):
    """What ``taskmet_step`` is made of (all chosen when the program is built).

    Attributes:
      prepare: ``phi -> ctx``, computed once per inner fit (e.g. the metric at every
        training input, so the K inner steps do not re-run the metric network).
      inner_loss: ``(theta, ctx, batch) -> scalar`` metric-weighted prediction loss.
      pred_loss: ``(theta, phi, batch) -> scalar``, the same loss as a function of
        phi, whose theta-gradient is the optimality condition.
      task_loss: ``(theta, batch) -> scalar``, differentiable in theta.
      sample_inner, sample_implicit: ``key -> batch`` for an inner step and for the
        optimality residual of the implicit gradient.
      inner_tx, outer_tx: optimisers of theta and phi.
      inner_steps: K inner steps per outer step; cg_iters, ridge: the linear solve;
      grad_tol: inner early-exit gradient norm (0: never).
    """

    prepare: Callable
    inner_loss: Callable
    pred_loss: Callable
    task_loss: Callable
    sample_inner: Callable
    sample_implicit: Callable
    inner_tx: optax.GradientTransformation
    outer_tx: optax.GradientTransformation
    inner_steps: int = 100
    cg_iters: int = 5
    ridge: float = 1e-5
    grad_tol: float = 0.0


def shaped_task_loss(shaper_apply: Callable, shaper_params: Any, decide: Callable):
    """A frozen learned cost model (e.g. a trained Loss2Net shaper) as the task loss.

    For black-box metrics: ``task_loss(theta, batch) = mean(shaper_apply(params,
    decide(theta, batch), batch))``; the shaper's parameters are constants (no
    gradient flows into them). Only the adapter: training the shaper is the caller's.
    """
    frozen = jax.lax.stop_gradient(shaper_params)

    def task_loss(theta, batch):
        return jnp.mean(shaper_apply(frozen, decide(theta, batch), batch))

    return task_loss


def init_state(parts: TaskMetParts, theta: Any, phi: Any) -> TaskMetState:
    """The state before any inner or outer step."""
    return TaskMetState(
        theta=theta,
        theta_opt=parts.inner_tx.init(theta),
        phi=phi,
        phi_opt=parts.outer_tx.init(phi),
        step=jnp.array(0, jnp.int32),
    )


def taskmet_inner(
    parts: TaskMetParts, key: jax.Array, state: TaskMetState, n_steps: int | None = None
):
    """Warm-started inner fit of the predictor under the current metric."""
    ctx = parts.prepare(state.phi)
    loss_fn = lambda theta, batch: parts.inner_loss(theta, ctx, batch)
    theta, theta_opt, last, taken = inner_fit(
        parts.inner_tx,
        loss_fn,
        parts.sample_inner,
        key,
        state.theta,
        state.theta_opt,
        parts.inner_steps if n_steps is None else n_steps,
        parts.grad_tol,
    )
    metrics = {"inner_loss": last, "inner_steps": taken}
    return state.replace(theta=theta, theta_opt=theta_opt), metrics


def taskmet_outer(parts: TaskMetParts, key: jax.Array, state: TaskMetState, batch):
    """One outer Adam step on phi with the implicit hypergradient at state.theta."""
    task, v = jax.value_and_grad(parts.task_loss)(state.theta, batch)
    residual_batch = parts.sample_implicit(key)
    optimality = lambda theta, phi: jax.grad(parts.pred_loss)(
        theta, phi, residual_batch
    )
    g_phi = implicit_grad(
        optimality, state.theta, state.phi, v, parts.cg_iters, parts.ridge
    )
    updates, phi_opt = parts.outer_tx.update(g_phi, state.phi_opt, state.phi)
    new = state.replace(
        phi=optax.apply_updates(state.phi, updates),
        phi_opt=phi_opt,
        step=state.step + 1,
    )
    return new, {"task_loss": task, "hypergrad_norm": optax.tree.norm(g_phi)}


def taskmet_step(parts: TaskMetParts, key: jax.Array, state: TaskMetState, batch):
    """``step(parts, key, state, batch) -> (state, metrics)``: inner fit, then outer."""
    key_inner, key_outer = jax.random.split(key)
    state, inner = taskmet_inner(parts, key_inner, state)
    state, outer = taskmet_outer(parts, key_outer, state, batch)
    return state, {**inner, **outer}
