"""The training steps: Loss2Net's co-update (the paper's Algorithm 1) and a fixed
loss's step, each ``step(parts, key, state, batch) -> (state, metrics)``.

``parts`` holds the pieces chosen when the program was built (``l2n_jax.train``):
networks, schedules, the system's cost model, the shaper's memory, the predictor's
objective (and any anchor on its gradient) and the two optimisers. Nothing below
reads a flag.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2n_jax.heads import AMOUNT, Head
from l2n_jax.metrics import CostModel
from l2n_jax.variants import Memory, no_average


class Loss2NetParts(NamedTuple):
    """What ``loss2net_step`` is made of (``l2n_jax.train.loss2net_trainer``)."""

    predict: Callable  # (params, inputs, eps) -> the predictor's raw outputs [B, w]
    cost: CostModel  # the system: report(state, decisions, obs) -> (costs, v, state)
    noise: Callable  # step -> exploration noise std
    lr: Callable  # step -> the predictor's learning rate (logged)
    target: Callable  # costs [B] -> what the shaper fits (the costs, or costs to go)
    memory: Memory  # what the shaper fits besides this batch
    shaper_loss: Callable  # (shaper, decisions, seen, costs, weights) -> fit error
    decision_loss: Callable  # (decisions, shaper, seen, eps) -> the predictor's loss
    shaper_tx: optax.GradientTransformation
    predictor_tx: optax.GradientTransformation
    head: Head = AMOUNT  # raw outputs -> decisions (l2n_jax.heads; the paper's: identity)
    # (predictor, batch, eps, its gradient) -> the gradient stepped (the paper's: as is)
    anchor: Callable = lambda predictor, batch, eps, grad: grad
    # (new params, old params, step) -> the params kept (the paper's: new; or with a
    # moving average of the predictor's, variants.moving_average)
    average: Callable = no_average


def loss2net_step(parts: Loss2NetParts, key, state, batch):
    """Algorithm 1: one co-update of the loss shaper and the predictor."""
    key_noise, key_replay = jax.random.split(key)
    predictor, shaper = state.params["predictor"], state.params["shaper"]
    # 1. Explore: noisy decisions; the predictor sees the noise as an input.
    sigma = parts.noise(state.step)
    eps = sigma * jax.random.normal(key_noise, batch.targets.shape)
    raw, pullback = jax.vjp(lambda p: parts.predict(p, batch.inputs, eps), predictor)
    decisions = parts.head.explore(key, raw, eps, sigma)
    # 2. Decide: the system reports each decision's cost (a black box) and its v.
    costs, v, metric_state = parts.cost.report(state.metric_state, decisions, batch.obs)
    costs, v = jax.lax.stop_gradient((costs, v))
    seen = jnp.concatenate([batch.obs, v], axis=-1)
    # 3. Fit the shaper to the reported costs (and to remembered ones).
    samples, replay = parts.memory.update(state.replay, key_replay, decisions, seen,
                                          parts.target(costs))
    s_loss, s_grad = jax.value_and_grad(parts.shaper_loss)(shaper, *samples)
    s_updates, s_opt = parts.shaper_tx.update(s_grad, state.opt_state["shaper"], shaper)
    shaper = optax.apply_updates(shaper, s_updates)
    # 4. Step the predictor down the *updated* shaper's surface.
    p_loss, r_grad = jax.value_and_grad(
        lambda r: parts.head.loss(parts.decision_loss, key, r, eps, shaper, seen, sigma))(raw)
    (p_grad,) = pullback(r_grad)
    p_grad = parts.anchor(predictor, batch, eps, p_grad)
    p_updates, p_opt = parts.predictor_tx.update(
        p_grad, state.opt_state["predictor"], predictor
    )
    predictor = optax.apply_updates(predictor, p_updates)

    new_state = state.replace(
        params=parts.average({"predictor": predictor, "shaper": shaper}, state.params,
                             state.step),
        opt_state={"predictor": p_opt, "shaper": s_opt},
        step=state.step + 1,
        replay=replay,
        metric_state=metric_state,
    )
    metrics = {
        "cost": jnp.mean(costs),
        "shaper_loss": s_loss,
        "predictor_loss": p_loss,
        "mean_error": jnp.mean(parts.head.amount(raw) - batch.targets),
        "noise_std": sigma,
        "lr": parts.lr(state.step),
        **parts.cost.summary(v),
        **parts.head.summary(raw),
    }
    return new_state, metrics


class FixedLossParts(NamedTuple):
    """What ``fixed_loss_step`` is made of (``l2n_jax.train.fixed_loss_trainer``)."""

    predict: Callable  # (params, inputs) -> predictions [B, m] (eps = 0)
    loss: Callable  # (predictions [B, m], targets [B, m], theta) -> [B]
    lr: Callable  # step -> learning rate (logged)
    tx: optax.GradientTransformation
    train_cost: Callable  # (predictions, obs) -> {} or {'cost': the true metric}


def fixed_loss_step(parts: FixedLossParts, key, state, batch):
    """One step of a baseline on its fixed loss (eps = 0, no shaper)."""
    del key
    params = state.params["predictor"]

    def objective(p):
        pred = parts.predict(p, batch.inputs)
        return jnp.mean(parts.loss(pred, batch.targets, state.hyper)), pred

    (value, pred), grad = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt = parts.tx.update(grad, state.opt_state["predictor"], params)
    new_state = state.replace(
        params={"predictor": optax.apply_updates(params, updates)},
        opt_state={"predictor": opt},
        step=state.step + 1,
    )
    metrics = {
        "loss": value,
        "mean_error": jnp.mean(pred - batch.targets),
        "lr": parts.lr(state.step),
        **parts.train_cost(pred, batch.obs),
    }
    return new_state, metrics
