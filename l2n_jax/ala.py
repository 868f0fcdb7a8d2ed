"""Adaptive Loss Alignment (ALA; Huang et al., ICML 2019) for regression, as a trainer
of the engine's shape: the predictor trains on a parametric asymmetric loss whose
parameters Phi a small policy moves every K steps, rewarded by the validation
metric's *values* only (black-box and stateful metrics alike).

The loss family, for a decision ``y_hat``, target ``y`` and ``s`` the training
split's one-step-change std (the target scale; floored), per output::

    r = (y_hat - y) / s - margin
    L_Phi = 2 tau relu(-r) + 2 (1 - tau) relu(r) + w_mse r^2
    Phi = (logit tau, margin [units of s], log w_mse)

tau = 0.5, margin = 0, w_mse -> 0 is the MAE; tau alone is the pinball loss.

One engine step is one *policy period* (``ala_step``): score the N children on the
whole validation split (``metrics.batch_metric``: a StatefulMetric is scanned in
time order), reward the previous period's moves, a REINFORCE update of the shared
policy (``l2n_jax.ala_policy``), sample new moves for every child's Phi, then K
predictor steps of every child (a ``lax.scan``, children ``vmap``-ed). So the
validation metric is evaluated inside the compiled program, with no host round
trip, and the engine's epoch scan, epoch selection, seeds/sites vectorisation,
checkpoints and non-finite guard apply unchanged. The step gets the validation
split through ``engine.Trainer.sees_valid``.

N children (beyond the paper's single learner): one policy shared by N predictors
of different initialisations and shuffles, so each policy update sees N rewards
per period (a lower-variance policy gradient at the same number of periods), and
the run delivers the child of lowest validation cost (best epoch). Budget: the
``Config``'s epochs and batch size, ``pretrain_epochs`` of them MSE pre-training
of every child (as Loss2Net), so each child gets the same budget as one Loss2Net
or baseline predictor; the N children cost N of them.
"""

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2n_jax import ala_policy, batching, engine, nets, schedules, variants
from l2n_jax.combinators import from_fit
from l2n_jax.config import Config
from l2n_jax.data import Split
from l2n_jax.fit import _run as _fit_run  # l2n_jax.fit is shadowed by l2n.fit
from l2n_jax.metrics import batch_metric
from l2n_jax.registry import Task, register
from l2n_jax.train import Shapes, mse_pretrain

PARAMS = ala_policy.PARAMS  # Phi = (logit tau, margin, log w_mse)
ALAConfig = ala_policy.ALAConfig
aligned_loss, target_scale = ala_policy.aligned_loss, ala_policy.target_scale


def period_layout(base: batching.Layout, k: int, periods: int) -> batching.Layout:
    """``periods`` engine steps per epoch, each K consecutive batches of ``base``."""

    def batches(key, epoch):
        idx, live = base.batches(key, epoch)
        idx = idx[: periods * k].reshape(periods, -1)
        return idx, None if live is None else jnp.arange(periods) < base.live_steps // k

    live = base.live_steps // k
    live = min(live, periods) if isinstance(live, int) else jnp.minimum(live, periods)
    return batching.Layout(periods, live, batches, base.keep)


class ALAParts(NamedTuple):
    """What ``ala_step`` is made of (``ala_trainer``)."""

    ala: ALAConfig
    policy: ala_policy.Policy
    child_costs: Callable  # children params -> validation costs [N]
    train_children: Callable  # (children, opts, phi [N,P], batch [K,B..]) -> (.., loss)
    policy_tx: optax.GradientTransformation
    movable: jax.Array  # [P] bool
    bounds: tuple  # (low [P], high [P], step sizes [P])
    total_steps: object  # predictor steps of the run (progress feature)
    k: int
    lr: Callable


def ala_step(parts: ALAParts, key, state, batch):
    """One policy period: score, reward, REINFORCE, move Phi, K predictor steps."""
    ala, params = parts.ala, state.params
    low, high, beta = parts.bounds
    # 1. The system reports each child's validation cost (values only).
    costs = jax.lax.stop_gradient(parts.child_costs(params["predictor"]))
    # 2. Reward the moves of the previous period; learn from the replay.
    ctrl, rewards, baseline = ala_policy.observe(
        state.replay, costs, ala.discount, ala.baseline_momentum,
        ala_policy.REWARDS[ala.reward])
    (p_loss, entropy), grad = jax.value_and_grad(ala_policy.reinforce_loss, has_aux=True)(
        params["policy"], parts.policy, ctrl, baseline, parts.movable, ala.entropy)
    updates, policy_opt = parts.policy_tx.update(grad, state.opt_state["policy"])
    policy = optax.apply_updates(params["policy"], updates)
    policy, policy_opt = batching.gate(state.replay.acted, (policy, policy_opt),
                                       (params["policy"], state.opt_state["policy"]))
    # 3. Move every child's Phi.
    progress = state.step.astype(jnp.float32) / jnp.maximum(parts.total_steps, 1)
    phi_unit = 2.0 * (params["phi"] - low) / (high - low) - 1.0
    x = ala_policy.features(ctrl, phi_unit, progress)
    actions = ala_policy.act(key, policy, parts.policy, x, parts.movable)
    phi = jnp.clip(params["phi"] + (actions - 1) * beta, low, high)
    # 4. K predictor steps of every child on its own loss L_Phi.
    batches = jax.tree.map(lambda a: a.reshape(parts.k, -1, *a.shape[1:]), batch)
    children, opts, loss = parts.train_children(
        params["predictor"], state.opt_state["predictor"], phi, batches)
    new_state = state.replace(
        params={"predictor": children, "policy": policy, "phi": phi},
        opt_state={"predictor": opts, "policy": policy_opt},
        step=state.step + parts.k,
        replay=ctrl.replace(features=x, actions=actions, acted=jnp.array(True)),
    )
    tau = jax.nn.sigmoid(phi[:, 0])
    metrics = {
        "loss": jnp.mean(loss), "period_valid_cost": jnp.mean(costs),
        "period_valid_best": jnp.min(costs), "reward": jnp.mean(rewards),
        "baseline": baseline, "policy_loss": p_loss, "entropy": entropy,
        "tau": jnp.mean(tau), "margin": jnp.mean(phi[:, 1]),
        "mse_weight": jnp.mean(jnp.exp(phi[:, 2])), "lr": parts.lr(state.step),
    }
    return new_state, metrics


def _children_trainer(predict, tx, k):
    """(children, opts, phi, batches [K, B, ...]) -> (children, opts, losses [N])."""

    def one_child(p, opt, phi, batches, scale):
        def body(carry, b):
            p, opt = carry

            def objective(q):
                pred = predict(q, b.inputs)
                return jnp.mean(jax.vmap(aligned_loss, (0, 0, None, None))(
                    pred, b.targets, phi, scale))

            value, grad = jax.value_and_grad(objective)(p)
            updates, opt = tx.update(grad, opt, p)
            return (optax.apply_updates(p, updates), opt), value

        (p, opt), values = jax.lax.scan(body, (p, opt), batches, length=k)
        return p, opt, jnp.mean(values)

    return one_child


def _vmap_pretrain(config: Config, predictor, children: int):
    """MSE pre-training of every child (``train.mse_pretrain``), its own shuffles."""
    one = mse_pretrain(config, predictor)

    def pretrain(key, state, train: Split):
        def child(i, p):
            s = engine.new_state({"predictor": p}, {})
            return one(jax.random.fold_in(key, i), s, train).params["predictor"]

        ps = jax.vmap(child)(jnp.arange(children), state.params["predictor"])
        params = dict(state.params, predictor=ps)
        return state.replace(params=params, best_params=params)

    return pretrain


def _period_steps(config: Config, shapes: Shapes, ala: ALAConfig) -> int:
    """K, the predictor steps of one policy period."""
    steps = batching.shuffled(config.batch_size, shapes.n_train).steps
    k = steps // ala.periods_per_epoch
    if k < 1:
        raise ValueError(
            f"ALAConfig.periods_per_epoch ({ala.periods_per_epoch}) exceeds the {steps} "
            "steps of an epoch: lower it, or Config.batch_size")
    return k


def _child_costs(predict, metric_b, children, valid: Split):
    """[N] mean validation cost of each child (live rows only on a padded site)."""
    pred = jax.vmap(predict, (0, None))(children, valid.windows.inputs)
    costs = jax.vmap(metric_b, (0, None))(pred, valid.windows.obs)  # [N, rows]
    if not valid.padded:
        return jnp.mean(costs, axis=1)
    live = jnp.arange(costs.shape[1]) < valid.n
    return jnp.sum(jnp.where(live, costs, 0.0), axis=1) / valid.n


def ala_trainer(config: Config, shapes: Shapes, metric, ala: ALAConfig) -> engine.Trainer:
    """ALA as an ``engine.Trainer`` (its step sees the validation split)."""
    if metric is None:
        raise ValueError("ALA needs a metric (its reward is the validation cost)")
    m, n, p = shapes.decision_dim, ala.children, len(PARAMS)
    predictor = nets.make_predictor(config, shapes.input_shape, m)
    n_in = ala_policy.n_features(ala.history, p)
    policy = ala_policy.make_policy(n_in, p, ala.policy_hidden)
    policy_tx = optax.adam(ala.policy_lr)
    metric_b = batch_metric(metric)
    k = _period_steps(config, shapes, ala)
    movable = jnp.asarray([name in ala.moves for name in PARAMS])
    bounds = tuple(jnp.asarray(v, jnp.float32)
                   for v in (ala.phi_low, ala.phi_high, ala.step_sizes))
    n_epochs = config.cotrain_epochs

    def predict(params, inputs):
        return nets.predict(predictor, params, inputs, m)

    def layout(train):
        return period_layout(batching.for_split(config.batch_size, train), k,
                             ala.periods_per_epoch)

    def child_costs(children, valid: Split):
        return _child_costs(predict, metric_b, children, valid)

    def init(key, start_params=None):
        if start_params:
            raise ValueError(f"ALA cannot start from {sorted(start_params)}")
        keys = jax.random.split(jax.random.fold_in(key, engine.INIT), n + 1)
        children = jax.vmap(predictor.init)(keys[:n])
        policy_params = policy.init(keys[n])
        phi = jnp.broadcast_to(jnp.asarray(ala.phi_init, jnp.float32), (n, p))
        tx = variants.predictor_optimizer(schedules.constant(0.0))
        params = {"predictor": children, "policy": policy_params, "phi": phi}
        opt = {"predictor": jax.vmap(tx.init)(children),
               "policy": policy_tx.init(policy_params)}
        ctrl = ala_policy.init_controller(n, ala.history, p, ala.replay * n)
        return engine.new_state(params, opt, replay=ctrl)

    def step(train: Split, valid: Split | None):
        if valid is None:
            raise ValueError("ALA needs validation windows (valid=...): its reward is "
                             "the validation cost")
        periods = layout(train).live_steps
        total = n_epochs * periods * k
        lr = schedules.learning_rate(config, total)
        tx = variants.predictor_optimizer(lr)
        one = _children_trainer(predict, tx, k)
        scale = target_scale(train)

        def train_children(children, opts, phi, batches):
            return jax.vmap(one, (0, 0, 0, None, None))(children, opts, phi, batches, scale)

        parts = ALAParts(ala, policy, lambda c: child_costs(c, valid), train_children,
                         policy_tx, movable, bounds, total, k, lr)
        return engine.skip_nonfinite(functools.partial(ala_step, parts),
                                     watch=("loss", "period_valid_cost", "policy_loss"))

    def validate(state, valid: Split):
        costs = child_costs(state.params["predictor"], valid)
        # Epoch selection keeps the epoch of the best child (the one delivered).
        return jnp.min(costs), {"valid_cost": jnp.min(costs),
                                "valid_cost_mean": jnp.mean(costs)}

    return engine.Trainer(
        n_epochs=n_epochs,
        steps_per_epoch=ala.periods_per_epoch,
        networks={"predictor": predictor},
        init=init,
        pretrain=(_vmap_pretrain(config, predictor, n) if config.pretrain_epochs
                  else lambda key, state, train: state),
        layout=layout,
        step=step,
        validate=validate,
        epoch_start=lambda state: state,
        pretrain_epochs=config.pretrain_epochs,
        sees_valid=True,
    )


def make_program(config: Config, shapes: Shapes, metric=None, loss=None, segments=1,
                 hyper=False, *, ala: ALAConfig | None = None) -> engine.Program:
    """ALA's Program; the signature of ``train.make_program`` (for ``fit._run``)."""
    del segments  # ALA's loss is memoryless: shuffled batches, even for a stateful metric
    if loss is not None or hyper:
        raise ValueError("ALA learns its own loss: it takes no loss or hyper")
    trainer = ala_trainer(config, shapes, metric, ala or ALAConfig())
    return engine.build(trainer, engine.keep_best if config.select_best else engine.keep_last)


@functools.lru_cache(maxsize=64)
def _child_scorer(config: Config, input_shape, m: int, metric):
    """jit: (children [S, N, ...], inputs, obs) -> mean true cost [S, N]."""
    predictor, metric_b = nets.make_predictor(config, input_shape, m), batch_metric(metric)

    def one(p, x, obs):
        return jnp.mean(metric_b(nets.predict(predictor, p, x, m), obs))

    return jax.jit(jax.vmap(jax.vmap(one, (0, None, None)), (0, None, None)))


def _deliver(result, valid, metric):
    """The FitResult of the child of lowest validation cost (per seed, at the kept
    epoch); every child, the policy and Phi stay in ``params``."""
    children = result.params["predictor"]  # [seeds, N, ...]
    scorer = _child_scorer(result.config, result.shapes.input_shape,
                           result.shapes.decision_dim, metric)
    costs = np.asarray(scorer(children, jnp.asarray(valid.inputs, jnp.float32),
                              jnp.asarray(valid.obs, jnp.float32)))
    best = costs.argmin(axis=1)
    rows = np.arange(len(best))
    params = {"predictor": jax.tree.map(lambda x: x[rows, best], children),
              "children": children, "policy": result.params["policy"],
              "phi": result.params["phi"], "child": best, "child_valid_cost": costs}
    return dataclasses.replace(result, params=params, method="ala")


def _tag(ala: ALAConfig) -> str:
    # The fingerprint of a checkpoint: a different ALAConfig must not resume it.
    return f"ala{dataclasses.astuple(ala)}"


def fit_ala(config: Config, train, metric, *, valid, seeds=(0,),
            ala: ALAConfig | None = None, label: str = "ala",
            checkpoint: str | None = None, verbose: bool = True):
    """Trains ALA for every seed in one program (as ``l2n.fit`` does Loss2Net).

    Args:
      config: the predictor's architecture and budget (epochs, batch size,
        pre-training, LR schedule, epoch selection).
      train, valid: ``Windows``; ``valid`` is required (the reward).
      metric: per-sample metric (jnp or ``l2n.host_metric``) or a StatefulMetric.
      ala: ALA's own hyper-parameters.
      (seeds, label, checkpoint, verbose as in ``l2n.fit``.)

    Returns:
      A FitResult whose ``predict`` uses each seed's best-validation child;
      ``params`` also holds 'children' [seeds, N, ...], 'policy', 'phi' [seeds,
      N, 3] (at the kept epoch), 'child' [seeds] and 'child_valid_cost'.
    """
    ala = ALAConfig() if ala is None else ala
    if not isinstance(ala, ALAConfig):
        raise ValueError(f"fit_ala: ala must be an ALAConfig, got {ala!r}")
    if valid is None:
        raise ValueError("fit_ala: ALA needs validation windows (valid=...): its "
                         "reward is the validation cost")
    make = functools.partial(make_program, ala=ala)
    result = _fit_run(config, train, valid, seeds, _tag(ala), metric=metric,
                          label=label, checkpoint=checkpoint, verbose=verbose, make=make)
    return _deliver(result, valid, metric)


def fit_ala_sites(config: Config, trains, metric, *, valids, seeds=(0,),
                  ala: ALAConfig | None = None, label: str = "ala",
                  checkpoint: str | None = None, pad: bool | None = None,
                  verbose: bool = True) -> dict:
    """``fit_ala`` on several sites: sites x seeds x children in one program
    (window counts may differ: padded, as in ``l2n.fit_sites``)."""
    ala = ALAConfig() if ala is None else ala
    if not isinstance(ala, ALAConfig):
        raise ValueError(f"fit_ala_sites: ala must be an ALAConfig, got {ala!r}")
    if valids is None or set(valids) != set(trains):
        raise ValueError("fit_ala_sites: ALA needs validation windows for every site "
                         "(valids={site: Windows})")
    make = functools.partial(make_program, ala=ala)
    results = _fit_run(config, trains, valids, seeds, _tag(ala), metric=metric,
                           label=label, checkpoint=checkpoint, sites=True, pad=pad,
                           verbose=verbose, make=make)
    return {s: _deliver(r, valids[s], metric) for s, r in results.items()}


def method(ala: ALAConfig | None = None, name: str = "ala") -> Callable:
    """ALA as a registry method: every site x seed in one program; the knob is the
    delivered child's final tau."""

    def run(task: Task):
        common = dict(seeds=task.seeds, ala=ala, label=task.label,
                      checkpoint=task.checkpoint(name), verbose=task.verbose)
        if len(task.sites) == 1:
            ((s, ws),) = task.sites.items()
            results = {s: fit_ala(task.config, ws.train, task.metric, valid=ws.valid,
                                  **common)}
        else:
            results = fit_ala_sites(
                task.config, {s: ws.train for s, ws in task.sites.items()}, task.metric,
                valids={s: ws.valid for s, ws in task.sites.items()}, **common)
        out = {}
        for s, ws in task.sites.items():
            r = results[s]
            phi = np.asarray(r.params["phi"])[np.arange(len(task.seeds)), r.params["child"]]
            out[s] = from_fit(r, ws)._replace(knob=1.0 / (1.0 + np.exp(-phi[:, 0])))
        return out

    return run


# Registered when l2n_jax.methods imports this module.
register("ala", method(), doc="Adaptive Loss Alignment: a REINFORCE policy moves "
             "an asymmetric loss's parameters on validation-cost rewards (N=4 children)")
