"""From a ``Config`` to a training program: Loss2Net's trainer and the fixed-loss one.

``make_program(config, shapes, metric=..., loss=None)`` picks every variant of the
step once, from the config (``l2n_jax.variants``), builds the step's parts
(``l2n_jax.steps``) and hands a ``Trainer`` to the generic engine
(``l2n_jax.engine.build``). Loss2Net (``loss=None``) co-trains predictor and shaper
after optional MSE pre-training; a fixed loss trains the same predictor on
``loss(prediction, target)`` with eps = 0.

Stateful (time-correlated) metrics, ``l2n.StatefulMetric``: Loss2Net's batches are
then ``segments`` contiguous time segments (``batching.segmented``); the metric
runs over each segment in time order inside the step, its state carried from one
step to the next in ``TrainState.metric_state`` and reset at every epoch start; its
``v`` (produced from the predictor's own noisy decisions) is an extra shaper input,
``f_l(y_hat + eps, obs, v)``. Validation scans the whole validation split in order.

Padded sites (``data.Split`` with a traced ``n``, ``fit_sites`` on sites of different
lengths): each site draws its own shuffle, runs its own number of live steps and
uses its own run length in its schedules; validation means are masked. A site's run
equals its run alone through the same path (``batching.shuffled``).

Transfer (paper D.3): ``init(key, {'shaper': params})`` starts from a given shaper,
and ``Config.freeze_shaper`` keeps it fixed (the predictor trains on it; the
shaper's fit error on the new costs is still logged).
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2n_jax import batching, engine, grids, heads, nets, schedules, shaper_net, steps, variants
from l2n_jax.config import Config
from l2n_jax.data import Split, Windows
from l2n_jax.metrics import StatefulMetric, batch_metric, cost_model, v_dim

# Re-exported: the state and program types of every trainer.
TrainState, Program = engine.TrainState, engine.Program


class Shapes(NamedTuple):
    """Static facts about the data a program is compiled for."""

    input_shape: tuple[int, int, int]  # (n_series, lookback, n_features)
    decision_dim: int  # m
    obs_dim: int  # k
    n_train: int  # training windows (with padded sites: the longest)
    v_dim: int = 0  # j, length of a StatefulMetric's v (extra shaper inputs); 0: none

    @classmethod
    def of(cls, windows: Windows) -> "Shapes":
        return cls(
            tuple(int(s) for s in windows.inputs.shape[1:]),
            int(windows.targets.shape[1]),
            int(windows.obs.shape[1]),
            int(windows.inputs.shape[0]),
        )


def _valid_mean(valid: Split, values):
    """Mean over the live rows of the validation split."""
    if not valid.padded:
        return jnp.mean(values)
    live = jnp.arange(values.shape[0]) < valid.n
    return jnp.sum(jnp.where(live, values, 0.0)) / valid.n


def _no_pretrain(key, state, train):
    del key, train
    return state


def mse_pretrain(config: Config, predictor) -> Callable:
    """MSE pre-training of the IRs (their own next values) and the assembler (the
    targets) for ``config.pretrain_epochs`` shuffled epochs (paper remark 4)."""
    tx = optax.adam(config.pretrain_lr)
    fit = heads.fit_loss(heads.make_head(config))

    def pretrain(key, state, train: Split):
        layout = batching.for_split(config.batch_size, train)
        key = jax.random.fold_in(key, engine.PRETRAIN)

        def step(carry, xs):
            idx, live = xs
            p, opt = carry
            batch = train.windows.take(idx)

            def objective(q):
                eps = jnp.zeros(batch.targets.shape, jnp.float32)
                raw, forecasts = predictor.raw(q, batch.inputs, eps)
                # MSE of the amounts (an admit head's logits wait), or a quantile
                # head's pinball loss.
                return fit(raw, batch.targets) + jnp.mean(
                    (forecasts - batch.ir_targets) ** 2
                )

            value, grad = jax.value_and_grad(objective)(p)
            updates, new_opt = tx.update(grad, opt, p)
            return layout.keep(live, (optax.apply_updates(p, updates), new_opt), (p, opt)), value

        def epoch(carry, e):
            return jax.lax.scan(step, carry, layout.batches(key, e))[0], None

        p = state.params["predictor"]
        (p, _), _ = jax.lax.scan(epoch, (p, tx.init(p)), jnp.arange(config.pretrain_epochs))
        params = dict(state.params, predictor=p)
        if variants.AVERAGE in params:  # a run without co-training delivers p
            params[variants.AVERAGE] = p
        return state.replace(params=params, best_params=params)

    return pretrain


def _per_decision_losses(config: Config, seen_dim: int, features):
    """``Config.split_shaper``: the sum over decisions i of shaper i's own fit loss
    and own shaped loss (the paper's losses, ``variants``, on decision i alone), so
    each shaper and each decision gets exactly its own instance's gradient."""
    one = shaper_net.make_shaper(config.replace(split_shaper=False), 1 + seen_dim)
    fit_one = variants.shaper_fit_loss(one.apply, features)
    shaped_one = variants.shaped_loss(one.apply, features)

    def shaper_loss(shaper, decisions, seen, costs, weights):
        per = jax.vmap(fit_one, (0, 1, None, None, None))
        return jnp.sum(per(shaper, decisions[..., None], seen, costs, weights))

    def shaped_loss(decisions, shaper, seen, eps):
        per = jax.vmap(shaped_one, (1, 0, None, 1))
        return jnp.sum(per(decisions[..., None], shaper, seen, eps[..., None]))

    return shaper_loss, shaped_loss


def _shaper_losses(config: Config, shaper, seen_dim: int):
    """(the shaper's fit loss, the predictor's shaped loss): the paper's, or with
    ``Config.split_shaper`` the per-decision sums."""
    features = variants.features(config)
    if config.split_shaper:
        return _per_decision_losses(config, seen_dim, features)
    return (variants.shaper_fit_loss(shaper.apply, features),
            variants.shaped_loss(shaper.apply, features))


def _cost_validator(predictor, metric_b, m: int) -> Callable:
    """``validate(state, valid) -> (criterion, logged)``: the true mean cost of the
    predictor's decisions on the validation split, which also selects the epoch."""

    def validate(state, valid: Split):
        params = variants.delivered(state.params)["predictor"]
        pred = nets.predict(predictor, params, valid.windows.inputs, m)
        cost_value = _valid_mean(valid, metric_b(pred, valid.windows.obs))
        return cost_value, {"valid_cost": cost_value}

    return validate


def _loss2net_init(config: Config, predictor, shaper, shaper_tx, memory, cost,
                   hyper: bool) -> Callable:
    """Loss2Net's ``init(key, start_params) -> TrainState``: fresh networks (or the
    given start shaper), optimiser states, an empty replay and metric state, and
    the run's grid values (``hyper``)."""

    def init(key, start_params=None):
        start_params = start_params or {}
        key_p, key_s = jax.random.split(jax.random.fold_in(key, engine.INIT))
        s, values = start_params.get("shaper"), start_params.get("hyper", ())
        if values and not hyper:
            raise ValueError("this Loss2Net program was built without hyper=True: it "
                             "would ignore the run's values")
        grids.check_fields(values)
        params = {"predictor": predictor.init(key_p),
                  "shaper": shaper.init(key_s) if s is None else s}
        if config.predictor_average > 0:  # set at the first co-training step
            params[variants.AVERAGE] = params["predictor"]
        # The optimiser states' structure does not depend on the schedule.
        p_tx = variants.predictor_optimizer(schedules.constant(0.0),
                                            config.shaper_warmup_epochs, 1,
                                            config.alternate_steps)
        opt_state = {"predictor": p_tx.init(params["predictor"]),
                     "shaper": shaper_tx.init(params["shaper"])}
        return engine.new_state(params, opt_state, memory.init(), cost.init(),
                                hyper=values)

    return init


def _metric_layout(config: Config, shapes: Shapes, metric, segments: int, stateful: bool):
    """(the width j of the metric's v, the batch lanes, steps per epoch): a
    StatefulMetric's batches are ``segments`` contiguous lanes, others shuffled."""
    m, k = shapes.decision_dim, shapes.obs_dim
    j = shapes.v_dim or (v_dim(metric, np.zeros((8, m)), np.zeros((8, k))) if stateful else 0)
    n_steps = (batching.segmented(config.batch_size, shapes.n_train, segments) if stateful
               else batching.shuffled(config.batch_size, shapes.n_train)).steps
    return j, segments if stateful else None, n_steps


def _anchor(config: Config, predictor, head):
    """The predictor's gradient as is (the paper's), or with ``Config.ir_anchor``
    its IRs' forecasting term and/or ``Config.spread_anchor`` its errors' spread
    added; with a head whose forecasts train apart from the shaper (margin,
    quantile) their fixed loss, ``Head.fit``, which trains them."""
    anchors = []
    amounts = lambda p, x, e: head.amount(predictor.raw(p, x, e)[0])
    if head.fit is not None:  # forecasts that train apart from the shaper
        raw = lambda p, x, e: predictor.raw(p, x, e)[0]
        anchors.append(variants.forecast_anchor(raw, head.fit))
    if config.ir_anchor > 0:
        anchors.append(variants.ir_anchor(
            config.ir_anchor, lambda p, x, e: predictor.raw(p, x, e)[1]))
    if config.spread_anchor > 0:
        anchors.append(variants.spread_anchor(
            config.spread_anchor, amounts))
    if not anchors:
        return steps.Loss2NetParts._field_defaults["anchor"]
    return variants.chain(*anchors)


def _average(config: Config):
    """The step's parameters as they are (the paper's), or with
    ``Config.predictor_average`` a moving average of the predictor's beside them."""
    if config.predictor_average > 0:
        return variants.moving_average(config.predictor_average)
    return variants.no_average


def loss2net_trainer(config: Config, shapes: Shapes, metric, segments: int = 1,
                     hyper: bool = False):
    """Loss2Net: the predictor learns through a shaper fitted to reported costs.

    With ``hyper`` a run's values of ``grids.FIELDS`` (noise stds, learning rates)
    come from ``init(key, {'hyper': {field: value}})`` and its step builds its
    schedules and the shaper's optimiser from them, so a grid of values trains as
    one program (``fit.fit_grid``); the other fields are ``config``'s.
    """
    if metric is None:
        raise ValueError("make_program: Loss2Net needs a metric")
    m, k = shapes.decision_dim, shapes.obs_dim
    stateful = isinstance(metric, StatefulMetric)
    j, lanes, n_steps = _metric_layout(config, shapes, metric, segments, stateful)
    predictor = nets.make_predictor(config, shapes.input_shape, m)
    head = heads.make_head(config)
    shaper = shaper_net.make_shaper(config, variants.feature_dim(config, m, k + j), m)
    cost = cost_model(metric, j, lanes or 1)
    metric_b = batch_metric(metric)
    memory = variants.memory(config, m, k + j)
    shaper_loss, shaped_loss = _shaper_losses(config, shaper, k + j)
    shaper_tx = variants.shaper_optimizer(config)
    n_epochs = config.cotrain_epochs
    target = (variants.cost_to_go(config.cost_to_go, lanes) if stateful and config.cost_to_go
              else variants.reported_cost)

    def predict(params, inputs, eps):
        return predictor.raw(params, inputs, eps)[0]

    def layout(train):
        return batching.for_split(config.batch_size, train, lanes)

    init = _loss2net_init(config, predictor, shaper, shaper_tx, memory, cost, hyper)

    def step(train: Split):
        # What depends on the data: the schedules' run length (a padded site's
        # own), the range penalty's bounds.
        live = layout(train).live_steps
        decision_loss = shaped_loss
        if config.range_penalty > 0:
            decision_loss = variants.with_range_penalty(
                shaped_loss, variants.target_bounds(train), config.range_penalty)

        def parts(values):
            # ``values`` {}: config's own numbers, as Python constants (a plain run).
            c = grids.view(config, values)
            lr = schedules.learning_rate(c, n_epochs * live)
            return steps.Loss2NetParts(
                predict=predict, head=head, cost=cost, average=_average(config),
                noise=schedules.noise_std(c, n_epochs * live),
                lr=lr, target=target, memory=memory, shaper_loss=shaper_loss,
                decision_loss=decision_loss, anchor=_anchor(config, predictor, head),
                shaper_tx=variants.shaper_optimizer(c) if values else shaper_tx,
                predictor_tx=variants.predictor_optimizer(
                    lr, config.shaper_warmup_epochs, live, config.alternate_steps),
            )

        if hyper:  # a grid point's values are the run's own traced inputs
            def co_update(key, state, batch):
                return steps.loss2net_step(parts(state.hyper), key, state, batch)
        else:
            co_update = functools.partial(steps.loss2net_step, parts({}))
        # The cost and both losses (and the parameters) can go NaN; the schedules and
        # the mean error (finite when they are) need no check.
        return engine.skip_nonfinite(co_update,
                                     watch=("cost", "shaper_loss", "predictor_loss"))

    return engine.Trainer(
        n_epochs=n_epochs,
        steps_per_epoch=n_steps,
        networks={"predictor": predictor, "shaper": shaper},
        init=init,
        pretrain=mse_pretrain(config, predictor) if config.pretrain_epochs else _no_pretrain,
        layout=layout,
        step=step,
        validate=_cost_validator(predictor, metric_b, m),
        epoch_start=lambda state: state.replace(metric_state=cost.init()),
        pretrain_epochs=config.pretrain_epochs,
    )


def fixed_loss_trainer(config: Config, shapes: Shapes, loss: Callable, metric=None,
                       hyper: bool = False):
    """A baseline: the same predictor trained on a fixed per-sample loss, eps = 0.

    It stops early on its own validation loss (standard practice); ``metric``, when
    given, is logged (train and validation) but chooses nothing. With ``hyper`` the
    loss is ``loss(pred, target, theta)`` and each run's ``theta`` comes from
    ``init(key, {'hyper': theta})`` (a grid of them on the run axis).
    """
    m = shapes.decision_dim
    predictor = nets.make_predictor(config, shapes.input_shape, m)
    family = loss if hyper else (lambda pred, target, theta: loss(pred, target))
    loss_b = jax.vmap(family, in_axes=(0, 0, None))
    stateful = isinstance(metric, StatefulMetric)
    metric_b = batch_metric(metric) if metric is not None else None
    n_steps = batching.shuffled(config.batch_size, shapes.n_train).steps

    def train_cost(pred, obs):
        # A stateful metric's cost is not defined on a shuffled batch.
        if metric_b is None or stateful:
            return {}
        return {"cost": jnp.mean(metric_b(pred, obs))}

    def init(key, start_params=None):
        start_params = dict(start_params or {})
        theta = start_params.pop("hyper", ())
        if start_params:
            raise ValueError(f"a fixed-loss baseline cannot start from {sorted(start_params)}")
        params = {"predictor": predictor.init(jax.random.split(
            jax.random.fold_in(key, engine.INIT))[0])}
        tx = variants.predictor_optimizer(schedules.constant(0.0))
        return engine.new_state(params, {"predictor": tx.init(params["predictor"])},
                                hyper=theta)

    def step(train: Split):
        live = batching.for_split(config.batch_size, train).live_steps
        lr = schedules.learning_rate(config, config.epochs * live)
        parts = steps.FixedLossParts(
            predict=lambda p, x: nets.predict(predictor, p, x, m),
            loss=loss_b, lr=lr, tx=variants.predictor_optimizer(lr),
            train_cost=train_cost,
        )
        # Not guarded: fixed losses are library-defined (no black box can go NaN).
        return functools.partial(steps.fixed_loss_step, parts)

    def validate(state, valid: Split):
        pred = nets.predict(predictor, state.params["predictor"], valid.windows.inputs, m)
        logged = {}
        if metric_b is not None:
            logged["valid_cost"] = _valid_mean(valid, metric_b(pred, valid.windows.obs))
        # Any knob (margin, tau) is tuned on the true metric by the caller.
        logged["valid_loss"] = _valid_mean(
            valid, loss_b(pred, valid.windows.targets, state.hyper))
        return logged["valid_loss"], logged

    return engine.Trainer(
        n_epochs=config.epochs,
        steps_per_epoch=n_steps,
        networks={"predictor": predictor},
        init=init,
        pretrain=_no_pretrain,
        layout=lambda train: batching.for_split(config.batch_size, train),
        step=step,
        validate=validate,
        epoch_start=lambda state: state,
    )


def make_program(config: Config, shapes: Shapes, metric=None, loss: Callable | None = None,
                 segments: int = 1, hyper: bool = False) -> Program:
    """The training program of Loss2Net (``loss=None``) or of a fixed loss.

    Args:
      config: hyper-parameters; every variant of the step is chosen from it here.
      shapes: static data shapes (``Shapes.of(train)``; ``v_dim`` is found from a
        StatefulMetric when left at 0).
      metric: per-sample true metric or a ``StatefulMetric``; drives Loss2Net and,
        for both kinds, the logged validation cost. Required for Loss2Net.
      loss: per-sample ``loss(prediction [m], target [m])`` of a fixed-loss
        baseline.
      segments: StatefulMetric only: contiguous time segments per Loss2Net batch;
        ``batch_size`` must be a multiple of it.
      hyper: a fixed loss: ``loss(prediction, target, theta)`` with a run's
        ``theta`` from ``init(key, {'hyper': theta})``; Loss2Net: the run's values
        of ``grids.FIELDS`` from ``init(key, {'hyper': {field: value}})``.
    """
    if loss is None:
        trainer = loss2net_trainer(config, shapes, metric, segments, hyper)
    else:
        trainer = fixed_loss_trainer(config, shapes, loss, metric, hyper)
    return engine.build(trainer, engine.keep_best if config.select_best else engine.keep_last)
