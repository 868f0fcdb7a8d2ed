"""The variants of Loss2Net's step, as values chosen when a program is built.

Each has an identity default, so the paper's step is the step with every variant at
its default (``Config.literal()``):

* shaper target: ``reported_cost`` (the paper) or ``cost_to_go`` (a stateful
  metric's discounted later costs of the segment as well);
* shaper memory: ``no_memory`` (the shaper fits this batch's costs) or ``replay``
  (a ring buffer of past (decision, obs, cost) samples it also refits each step);
* shaper features: ``decision_features`` (the paper's ``f_l(y_hat + eps, obs)``) or
  ``error_features`` (``f_l(y_hat + eps - y, obs)``, ``y`` the first m obs);
* the predictor's objective: ``shaped_loss`` (the mean learned loss), optionally
  ``with_range_penalty`` (decisions outside the training targets' range cost more);
* optimisers: the predictor's Adam on the LR schedule, with ``optax.conditionally_mask``
  for a shaper warm-up (the predictor's update is zero, its Adam state unchanged,
  for the first epochs); the shaper's Adam, or ``optax.set_to_zero`` for a frozen
  (transferred) shaper; with ``Config.alternate_steps`` = k both are masked in turn
  (k shaper-only steps, k predictor-only steps: alternating training, Grabocka et
  al. 2019), the same step with other optimiser values.

The non-finite guard and epoch selection are generic: ``engine.skip_nonfinite``,
``engine.keep_best``.
"""

from typing import Callable, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from l2n_jax.config import Config
from l2n_jax.data import Split


@struct.dataclass
class Replay:
    """Ring buffer of past (decision, obs, cost) samples for the shaper."""

    decisions: jax.Array  # [R, m]
    obs: jax.Array  # [R, k + j]
    costs: jax.Array  # [R]
    count: jax.Array  # () int32, samples written so far


class Memory(NamedTuple):
    """What the shaper fits besides the current batch.

    ``init() -> Replay | None``; ``update(replay, key, decisions, seen, costs) ->
    ((decisions, seen, costs, weights), replay)``: the samples to fit, with a
    weight each, and the memory after this step.
    """

    init: Callable
    update: Callable


def no_memory() -> Memory:
    """The shaper fits the current batch only (the paper)."""

    def update(replay, key, decisions, seen, costs):
        del key
        return (decisions, seen, costs, jnp.ones((decisions.shape[0],))), replay

    return Memory(lambda: None, update)


def replay(size: int, decision_dim: int, seen_dim: int) -> Memory:
    """The shaper also refits as many past samples as the batch has, drawn from a
    ring buffer of the last ``size`` ones (weight 0 while the buffer is empty)."""

    def init():
        return Replay(jnp.zeros((size, decision_dim)), jnp.zeros((size, seen_dim)),
                      jnp.zeros((size,)), jnp.array(0))

    def update(memory, key, decisions, seen, costs):
        b = decisions.shape[0]
        filled = jnp.minimum(memory.count, size)
        idx = jax.random.randint(key, (b,), 0, jnp.maximum(filled, 1))
        samples = (
            jnp.concatenate([decisions, memory.decisions[idx]]),
            jnp.concatenate([seen, memory.obs[idx]]),
            jnp.concatenate([costs, memory.costs[idx]]),
            jnp.concatenate([jnp.ones((b,)), jnp.full((b,), filled > 0, jnp.float32)]),
        )
        slot = (memory.count + jnp.arange(b)) % size
        memory = Replay(
            memory.decisions.at[slot].set(decisions),
            memory.obs.at[slot].set(seen),
            memory.costs.at[slot].set(costs),
            memory.count + b,
        )
        return samples, memory

    return Memory(init, update)


def memory(config: Config, decision_dim: int, seen_dim: int) -> Memory:
    """``replay`` of ``config.replay_size`` samples, or none. A frozen shaper is not
    fitted, so it needs no replay of past costs."""
    if config.replay_size > 0 and not config.freeze_shaper:
        return replay(config.replay_size, decision_dim, seen_dim)
    return no_memory()


def reported_cost(costs):
    """The shaper fits each decision's own reported cost (the paper)."""
    return costs


def cost_to_go(discount: float, lanes: int) -> Callable:
    """``costs [B] -> targets [B]``: in each of the batch's ``lanes`` contiguous time
    segments, the discounted mean of this and the later costs of the segment,
    ``sum_k discount^k c_{t+k} / sum_k discount^k`` over the ``k`` the segment
    holds. With a stateful metric a decision also changes later costs (a backlog
    it leaves, a battery it drains); fitted to this, the shaper learns them too.
    A mean, not a sum, so every position's target has the cost's level, however
    many later steps its segment holds (the last one: its own cost)."""

    def targets(costs):
        lane = costs.reshape(lanes, -1)

        def back(carry, c):
            total, weight = carry
            total, weight = c + discount * total, 1.0 + discount * weight
            return (total, weight), total / weight

        zero = jnp.zeros((lanes,), costs.dtype)
        _, out = jax.lax.scan(back, (zero, zero), lane.T, reverse=True)
        return out.T.reshape(-1)

    return targets


def gradient_anchor(weight: float, term: Callable) -> Callable:
    """An anchor that adds ``weight`` x the gradient of ``term(params, batch, eps)``
    (a scalar) to the predictor's gradient down the shaper."""

    def anchor(params, batch, eps, grad):
        extra = jax.grad(term)(params, batch, eps)
        return jax.tree.map(lambda g, a: g + weight * a, grad, extra)

    return anchor


def ir_anchor(weight: float, forecasts: Callable) -> Callable:
    """``Config.ir_anchor``: the IRs' MSE on their series' next values
    (``forecasts(params, inputs, eps) -> [B, S]``), as a ``gradient_anchor``."""
    return gradient_anchor(weight, lambda p, batch, eps: jnp.mean(
        (forecasts(p, batch.inputs, eps) - batch.ir_targets) ** 2))


def spread_anchor(weight: float, amounts: Callable) -> Callable:
    """``Config.spread_anchor``: the batch variance of the predictor's errors
    (``amounts(params, inputs, eps) -> [B, m]`` minus the targets, per decision,
    averaged over decisions), as a ``gradient_anchor``."""
    return gradient_anchor(weight, lambda p, batch, eps: jnp.mean(
        jnp.var(amounts(p, batch.inputs, eps) - batch.targets, axis=0)))


def forecast_anchor(raw: Callable, fit: Callable) -> Callable:
    """A margin head (``decision_head='margin'...``): the forecasts' fixed loss on the
    targets (``fit(raw(params, inputs, eps), targets)``: MSE, or a quantile head's
    pinball loss), the only gradient they get during co-training (the head stops
    the shaper's), as a ``gradient_anchor``."""
    return gradient_anchor(1.0, lambda p, batch, eps: fit(
        raw(p, batch.inputs, eps), batch.targets))


def chain(*anchors: Callable) -> Callable:
    """Anchors applied one after the other to the predictor's gradient."""

    def anchor(params, batch, eps, grad):
        for one in anchors:
            grad = one(params, batch, eps, grad)
        return grad

    return anchor


AVERAGE = "predictor_average"  # params key of Config.predictor_average's average


def no_average(new: dict, old: dict, step) -> dict:
    """The paper's: the step's new parameters as they are."""
    del old, step
    return new


def moving_average(decay: float) -> Callable:
    """``Config.predictor_average``: the new parameters plus, under ``AVERAGE``, an
    exponential moving average of the predictor's; the first co-training step
    (``step`` 0) starts it at that step's predictor, so pre-training's parameters
    and the initial value carry no weight."""

    def average(new, old, step):
        first = step == 0
        avg = jax.tree.map(lambda a, p: jnp.where(first, p, decay * a + (1 - decay) * p),
                           old[AVERAGE], new["predictor"])
        return {**new, AVERAGE: avg}

    return average


def delivered(params: dict) -> dict:
    """The parameters a run is judged and delivered with: with an average (a key
    of the params' structure, fixed when the program was built), the average in
    the predictor's place."""
    if AVERAGE not in params:
        return params
    out = {k: v for k, v in params.items() if k != AVERAGE}
    return {**out, "predictor": params[AVERAGE]}


def decision_features(decisions, seen):
    """The paper's shaper input: the decision and what the system revealed."""
    return jnp.concatenate([decisions, seen], axis=-1)


def error_features(decisions, seen):
    """The shaper sees the error against the observed target instead."""
    m = decisions.shape[-1]
    return jnp.concatenate([decisions - seen[:, :m], seen], axis=-1)


def admission_features(decisions, seen):
    """The paper's input and, per decision, whether it admits (d > 0; the admission
    heads reject with exactly 0): a rejection's jump in cost (lost revenue, no
    opex, no churn) is then one input away, where a smooth shaper on d alone has to
    bend sharply at 0 from the few rejected draws it sees."""
    admitted = (decisions > 0).astype(decisions.dtype)
    return jnp.concatenate([decisions, admitted, seen], axis=-1)


_FEATURES = {"decision": decision_features, "error": error_features,
             "admission": admission_features}


def features(config: Config) -> Callable:
    return _FEATURES[config.shaper_input]


def feature_dim(config: Config, decision_dim: int, seen_dim: int) -> int:
    """The shaper's input width for ``features(config)`` (read off its output shape)."""
    out = jax.eval_shape(features(config), jax.ShapeDtypeStruct((1, decision_dim), jnp.float32),
                         jax.ShapeDtypeStruct((1, seen_dim), jnp.float32))
    return out.shape[-1]


def shaper_fit_loss(shaper_apply, features_fn) -> Callable:
    """``(shaper, decisions, seen, costs, weights) -> weighted MSE`` of the shaper."""

    def loss(shaper, decisions, seen, costs, weights):
        err = shaper_apply(shaper, features_fn(decisions, seen)) - costs
        return jnp.sum(weights * err**2) / jnp.sum(weights)

    return loss


def shaped_loss(shaper_apply, features_fn) -> Callable:
    """``(decisions, shaper, seen, eps) -> the mean learned loss`` (Algorithm 1)."""

    def loss(decisions, shaper, seen, eps):
        del eps
        return jnp.mean(shaper_apply(shaper, features_fn(decisions, seen)))

    return loss


def with_range_penalty(loss: Callable, bounds, weight: float) -> Callable:
    """Adds ``weight`` x the squared distance of the noise-free decisions from
    ``bounds = (lo, hi)``."""
    lo, hi = bounds

    def penalised(decisions, shaper, seen, eps):
        y = decisions - eps
        out = jnp.maximum(lo - y, 0.0) ** 2 + jnp.maximum(y - hi, 0.0) ** 2
        return loss(decisions, shaper, seen, eps) + weight * jnp.mean(jnp.sum(out, -1))

    return penalised


def target_bounds(train: Split):
    """The (live) training targets' range, widened by 10% on each side."""
    targets = train.windows.targets
    if not train.padded:
        lo, hi = targets.min(axis=0), targets.max(axis=0)
    else:
        live = (jnp.arange(targets.shape[0]) < train.n)[:, None]
        lo = jnp.where(live, targets, jnp.inf).min(axis=0)
        hi = jnp.where(live, targets, -jnp.inf).max(axis=0)
    pad = 0.1 * (hi - lo)
    return lo - pad, hi + pad


def _phase(alternate_steps: int, shaper_turn: bool) -> Callable:
    """``count -> bool``: is it this network's turn in a k-step alternation (the
    shaper's turn comes first: it fits the pre-trained predictor's costs before the
    predictor follows it)."""
    return lambda count: ((count // alternate_steps) % 2 == 0) == shaper_turn


def predictor_optimizer(learning_rate, warmup_epochs: int = 0, steps_per_epoch=None,
                        alternate_steps: int = 0) -> optax.GradientTransformation:
    """Adam on the LR schedule; with ``warmup_epochs`` the update is zero (and Adam's
    state unchanged) for the first epochs' steps, while the shaper alone learns
    (``steps_per_epoch`` may be traced: a padded site's own); with
    ``alternate_steps`` = k, also in the shaper's turns of the alternation.

    The schedule reads optax's own update count, which advances exactly when the
    run's step counter does (a gated step, dead or frozen, keeps both)."""
    adam = optax.scale_by_adam()
    turn = _phase(alternate_steps, shaper_turn=False) if alternate_steps else None
    if warmup_epochs or turn:
        def active(count):
            warm = count >= warmup_epochs * steps_per_epoch if warmup_epochs else True
            return warm & turn(count) if turn else warm

        adam = optax.conditionally_mask(adam, active)
    return optax.chain(adam, optax.scale_by_learning_rate(learning_rate))


def shaper_optimizer(config: Config) -> optax.GradientTransformation:
    """The shaper's Adam; in alternation only in its turns; no update at all for a
    frozen (transferred) shaper."""
    if config.freeze_shaper:
        return optax.set_to_zero()
    adam = optax.adam(config.shaper_lr)
    if config.alternate_steps:
        adam = optax.conditionally_mask(adam, _phase(config.alternate_steps, True))
    return adam
