"""TaskMet on window data: the engine's trainer for ``l2n_jax.taskmet``'s bilevel
metric learning, and its registry entries ``taskmet`` and ``taskmet_shaper``.

One engine step takes ``inner_steps`` (K) batches of ``Config.batch_size`` windows:
the predictor makes K Adam steps on the metric-weighted loss
``(f(x) - y)^T Lambda_phi(x) (f(x) - y)`` (one per batch, so it gets as many
updates per epoch, on the same schedule, as every other method), then phi makes
one Adam step down the implicit hypergradient of the task loss on those K batches
(``taskmet.implicit_grad``: CG on the normal equations of the inner optimality
condition). Pre-training and epoch selection are Loss2Net's: MSE pre-training for
``Config.pretrain_epochs`` (the same initial predictor, the same key), then the
epoch of the lowest *true* validation cost is kept.

The task loss must be differentiable, which the system's cost is not:
* ``taskmet``: an expert surrogate, ``surrogate(pred, target)`` per sample (the
  use case's alpha-OMC);
* ``taskmet_shaper``: a Loss2Net shaper trained on the system's reports (frozen,
  seed by seed, in ``params['shaper']``), so TaskMet also runs where the metric is
  a black box. Not for a ``StatefulMetric``: its shaper also reads ``v``, which only
  the metric's run in time order produces.
"""

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2n_jax import batching, engine, losses, nets, schedules, shaper_net, taskmet, variants
from l2n_jax.combinators import from_fit, train_sites, with_margin
from l2n_jax.fit import _run as fit_run  # l2n_jax.fit is shadowed by l2n.fit
from l2n_jax.metrics import StatefulMetric, batch_metric
from l2n_jax.registry import Task, register
from l2n_jax.train import Shapes, _valid_mean, mse_pretrain


class Settings(NamedTuple):
    """TaskMet's own knobs (the predictor's are the shared ``Config``'s).

    Attributes:
      inner_steps: K predictor steps (one batch each) per metric step.
      cg_iters, ridge: the implicit gradient's linear solve (the authors': 5, 1e-5).
      metric_lr: Adam learning rate of the metric network (the authors': 1e-3).
      metric_hidden: width of its hidden layer (one ReLU layer, as the authors').
    """

    inner_steps: int = 5
    cg_iters: int = 5
    ridge: float = 1e-5
    metric_lr: float = 1e-3
    metric_hidden: int = 64


class Parts(NamedTuple):
    """What ``_step`` is made of (all chosen when the program is built)."""

    predict: Callable  # (theta, inputs) -> decisions [B, m]
    weighted: Callable  # (theta, lam [B, m, m], batch) -> the metric-weighted loss
    pred_loss: Callable  # (theta, phi, batch) -> the same loss, as a function of phi
    metric_net: taskmet.MetricNet
    task_values: Callable  # (pred, batch, params) -> [B] per-sample task loss
    train_cost: Callable  # (pred, obs) -> {} or {'cost': the true metric}
    inner_tx: optax.GradientTransformation
    outer_tx: optax.GradientTransformation
    lr: Callable  # predictor update count -> learning rate (logged)
    settings: Settings


def _flat(inputs):
    return inputs.reshape(inputs.shape[0], -1)


def _task_values(shaper, features, surrogate) -> Callable:
    """``(pred, batch, params) -> [B]`` per-sample task loss, chosen at build time."""
    if shaper is not None:
        return lambda pred, batch, params: shaper.apply(
            params["shaper"], features(pred, batch.obs))
    return lambda pred, batch, params: jax.vmap(surrogate)(pred, batch.targets)


def taskmet_trainer(config, shapes: Shapes, metric, settings: Settings = Settings(),
                    surrogate: Callable | None = None) -> engine.Trainer:
    """The TaskMet trainer: ``surrogate`` as the task loss, or (None) the frozen
    Loss2Net shaper given as ``init(key, {'shaper': params})``."""
    if settings.inner_steps < 1:
        raise ValueError(f"taskmet: inner_steps must be >= 1, got {settings.inner_steps}")
    m, k_steps = shapes.decision_dim, settings.inner_steps
    if surrogate is None and isinstance(metric, StatefulMetric):
        raise ValueError("taskmet_shaper: a StatefulMetric's shaper reads v, which only "
                         "its run in time order gives; use taskmet (a surrogate) there")
    predictor = nets.make_predictor(config, shapes.input_shape, m)
    metric_net = taskmet.metric_net(math.prod(shapes.input_shape), m, settings.metric_hidden)
    shaper = None if surrogate else shaper_net.make_shaper(
        config, variants.feature_dim(config, m, shapes.obs_dim))
    task_values = _task_values(shaper, variants.features(config), surrogate)
    metric_b = batch_metric(metric)
    stateful = isinstance(metric, StatefulMetric)
    outer_tx = optax.adam(settings.metric_lr)
    n_epochs = config.cotrain_epochs

    def predict(theta, inputs):
        return nets.predict(predictor, theta, inputs, m)

    def weighted(theta, lam, batch):
        return jnp.mean(taskmet.mahalanobis(lam, predict(theta, batch.inputs) - batch.targets))

    def pred_loss(theta, phi, batch):
        return weighted(theta, metric_net.apply(phi, _flat(batch.inputs)), batch)

    def layout(train):
        return batching.for_split(config.batch_size * k_steps, train)

    def init(key, start_params=None):
        start = dict(start_params or {})
        key_p, key_s = jax.random.split(jax.random.fold_in(key, engine.INIT))
        params = {"predictor": predictor.init(key_p), "metric": metric_net.init(key_s)}
        if shaper is not None:  # a template when none is given (shape checks)
            params["shaper"] = start.pop("shaper", None) or shaper.init(key_s)
        if start:
            raise ValueError(f"taskmet cannot start from {sorted(start)}")
        p_tx = variants.predictor_optimizer(schedules.constant(0.0))
        return engine.new_state(params, {"predictor": p_tx.init(params["predictor"]),
                                         "metric": outer_tx.init(params["metric"])})

    def step(train):
        lr = schedules.learning_rate(config, n_epochs * layout(train).live_steps * k_steps)
        parts = Parts(
            predict=predict, weighted=weighted, pred_loss=pred_loss, metric_net=metric_net,
            task_values=task_values,
            # A stateful metric's cost is not defined on a shuffled batch.
            train_cost=(lambda pred, obs: {}) if stateful else (
                lambda pred, obs: {"cost": jnp.mean(metric_b(pred, obs))}),
            inner_tx=variants.predictor_optimizer(lr), outer_tx=outer_tx, lr=lr,
            settings=settings)
        return engine.skip_nonfinite(functools.partial(taskmet_window_step, parts),
                                     watch=("inner_loss", "task_loss", "hypergrad_norm"))

    def validate(state, valid):
        pred = predict(state.params["predictor"], valid.windows.inputs)
        cost = _valid_mean(valid, metric_b(pred, valid.windows.obs))
        return cost, {"valid_cost": cost}

    return engine.Trainer(
        n_epochs=n_epochs,
        steps_per_epoch=batching.shuffled(config.batch_size * k_steps, shapes.n_train).steps,
        networks={"predictor": predictor, "metric": metric_net,
                  **({"shaper": shaper} if shaper else {})},
        init=init,
        pretrain=(mse_pretrain(config, predictor) if config.pretrain_epochs
                  else lambda key, state, train: state),
        layout=layout, step=step, validate=validate, epoch_start=lambda state: state,
        pretrain_epochs=config.pretrain_epochs,
    )


def taskmet_window_step(parts: Parts, key, state, batch):
    """K inner predictor steps under the current metric, then one metric step."""
    del key
    k_steps = parts.settings.inner_steps
    theta, phi = state.params["predictor"], state.params["metric"]
    # The metric is fixed during the inner fit: computed once for the K batches.
    lam = jax.lax.stop_gradient(parts.metric_net.apply(phi, _flat(batch.inputs)))
    chunks = jax.tree.map(lambda x: x.reshape(k_steps, -1, *x.shape[1:]), (batch, lam))

    def inner(carry, chunk):
        theta, opt = carry
        value, grad = jax.value_and_grad(parts.weighted)(theta, chunk[1], chunk[0])
        updates, opt = parts.inner_tx.update(grad, opt, theta)
        return (optax.apply_updates(theta, updates), opt), value

    (theta, p_opt), inner_losses = jax.lax.scan(
        inner, (theta, state.opt_state["predictor"]), chunks)
    task, v = jax.value_and_grad(lambda t: jnp.mean(
        parts.task_values(parts.predict(t, batch.inputs), batch, state.params)))(theta)
    g_phi = taskmet.implicit_grad(lambda t, p: jax.grad(parts.pred_loss)(t, p, batch),
                                  theta, phi, v, parts.settings.cg_iters,
                                  parts.settings.ridge)
    updates, m_opt = parts.outer_tx.update(g_phi, state.opt_state["metric"], phi)
    new = state.replace(
        params=dict(state.params, predictor=theta, metric=optax.apply_updates(phi, updates)),
        opt_state=dict(state.opt_state, predictor=p_opt, metric=m_opt),
        step=state.step + 1,
    )
    metrics = {"inner_loss": inner_losses[-1], "task_loss": task,
               "hypergrad_norm": optax.tree.norm(g_phi),
               "lr": parts.lr(state.step * k_steps),
               **parts.train_cost(parts.predict(theta, batch.inputs), batch.obs)}
    return new, metrics


def make(settings: Settings, surrogate: Callable | None) -> Callable:
    """A ``fit._run(make=...)`` program builder of TaskMet."""

    def make_program(config, shapes, metric=None, **unused):
        trainer = taskmet_trainer(config, shapes, metric, settings, surrogate)
        return engine.build(trainer, engine.keep_best if config.select_best
                            else engine.keep_last)

    return make_program


def fit_taskmet(task: Task, settings: Settings = Settings(), surrogate=None,
                shapers=None, name: str = "taskmet") -> dict:
    """{site: FitResult}: TaskMet on every site x seed of ``task`` in one program,
    with ``surrogate`` or ({site: shaper params stacked over seeds}) ``shapers`` as
    the task loss."""
    tag = f"{name}[K={settings.inner_steps},cg={settings.cg_iters},ridge={settings.ridge:g}," \
          f"lr={settings.metric_lr:g},h={settings.metric_hidden}]"
    return fit_run(
        task.config, {s: ws.train for s, ws in task.sites.items()},
        {s: ws.valid for s, ws in task.sites.items()}, task.seeds, tag,
        metric=task.metric, label=f"{task.label}/{name}".strip("/"),
        checkpoint=task.checkpoint(name), sites=True, shaper=shapers,
        make=make(settings, surrogate), verbose=task.verbose)


@register("taskmet", doc="TaskMet (Bansal et al. 2023): a learned metric Lambda(x) "
          "for the MSE, trained by implicit differentiation of the alpha-OMC task loss")
def taskmet_alpha_omc(task: Task):
    if task.options.alpha is None:
        raise ValueError("taskmet needs a differentiable task loss: this use case has "
                         "no alpha-OMC surrogate (Options.alpha); try taskmet_shaper")
    surrogate = losses.alpha_omc(task.options.alpha, task.options.omc_e)
    fits = fit_taskmet(task, surrogate=surrogate)
    return {s: from_fit(fits[s], ws) for s, ws in task.sites.items()}


# Lambda(x) only weighs the squared error, so TaskMet's predictor stays a (weighted)
# mean forecast and cannot learn to err on the cheap side; the practitioner's margin
# on top of it can (BUILD_NOTES §15).
register("taskmet_margin", with_margin(taskmet_alpha_omc),
         doc="taskmet + an additive margin tuned on validation with the true metric")


@register("taskmet_shaper", doc="TaskMet with the Loss2Net shaper (trained on the "
          "system's reports) as its task loss: TaskMet for a black-box metric")
def taskmet_shaper(task: Task):
    if isinstance(task.metric, StatefulMetric):
        raise ValueError("taskmet_shaper: a StatefulMetric's shaper reads v; use taskmet")
    # The same Loss2Net training as the loss2net method's (its checkpoint is reused).
    l2n_fits = train_sites(task.config, task.sites, task.seeds, f"{task.label}/loss2net",
                           task.checkpoint("loss2net"), metric=task.metric,
                           verbose=task.verbose)
    shapers = {s: r.params["shaper"] for s, r in l2n_fits.items()}
    fits = fit_taskmet(task, shapers=shapers, name="taskmet_shaper")
    return {s: from_fit(fits[s], ws) for s, ws in task.sites.items()}
