"""Loss2Net co-training and fixed-loss training as pure, vmappable programs.

``train_step(key, state, batch)`` does the paper's four moves (Algorithm 1) in one
jitted function: draw ``eps``; decide ``y_hat = f_p(X, eps)`` and get the reported
cost ``M = metric(y_hat + eps, v)`` (no gradient through it); fit the shaper on
``(f_l(y_hat + eps, v) - M)^2``; update the predictor on ``f_l(y_hat + eps, v)``
through the *updated* shaper. An epoch is a ``lax.scan`` over steps; a whole run is a
pure function of a key (``Program.run``), so ``jax.vmap`` trains all seeds in one
compiled program. ``fit`` drives the same epoch function in chunks so it can log
progress between chunks (one host sync per chunk, never per step); chunking does
not change results, because every key is ``fold_in``-derived from the run key and
the epoch/step counters.

Stateful (time-correlated) metrics, ``metrics.StatefulMetric``: Loss2Net's batches
are then not shuffled. The training split is cut into ``segments`` equal stretches,
and step ``i`` takes the ``i``-th contiguous run of ``batch_size // segments``
windows of every stretch, so a batch is ``segments`` contiguous time segments. The
metric runs as a ``lax.scan`` over each segment (vmapped over segments) inside the
jitted step, its state is carried from one step to the next in
``TrainState.metric_state`` and reset to ``metric.init()`` at every epoch start (the
start of each stretch's sequence). The metric's ``v`` for each sample, produced from
the predictor's own noisy decisions, is an extra input of the loss shaper:
``f_l(y_hat + eps, obs, v)``. Validation scans the whole validation split in order.

Padded data (``make_program(..., padded=True)``, used by ``fit_sites`` when sites
have different lengths): the train/valid arrays are padded to a common length and
the functions take ``sizes = (n_train, n_valid)``, the real counts (traced, so one
program serves every site). Each epoch draws a permutation of the first ``n_train``
windows only (a per-index random key, so the draw does not depend on the padded
length), runs ``n_train // batch_size`` live steps and gates the remaining steps of
the longest site's epoch to no-ops (state unchanged); schedules use the site's own
run length, and validation means are masked. A site's run therefore equals its run
alone through the same path. Padded rows are never read by a live step.

Transfer (paper D.3): ``init(key, shaper_params)`` starts from a given shaper, and
``Config.freeze_shaper`` keeps it fixed (the predictor trains on it; the shaper's
fit error on the new costs is still logged).
"""

import functools

from typing import Any, Callable, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2n_jax import nets, schedules
from l2n_jax.config import Config
from l2n_jax.data import Windows
from l2n_jax.metrics import StatefulMetric, batch_metric, scan_metric

PyTree = Any
Metrics = dict[str, jax.Array]

# fold_in tags that split a run key into independent streams.
_INIT, _PRETRAIN, _PERM, _STEP = 0, 1, 2, 3


@struct.dataclass
class Replay:
    """Ring buffer of past (decision, obs, cost) samples for the shaper."""

    decisions: jax.Array  # [R, m]
    obs: jax.Array  # [R, k]
    costs: jax.Array  # [R]
    count: jax.Array  # () int32, samples written so far


@struct.dataclass
class TrainState:
    """Everything a run carries between steps; arrays only, so it stacks under vmap."""

    params: dict  # {'predictor': ..., 'shaper': ...} ('shaper' absent for baselines)
    opt_state: dict  # same keys as params
    step: jax.Array  # () int32, optimisation steps taken after pre-training
    best_params: dict  # params of the best validation epoch so far
    best_valid: jax.Array  # () float32, its true validation cost
    best_epoch: jax.Array  # () int32
    replay: Replay | None
    bad_step: jax.Array  # () int32, first step with a non-finite cost/loss/param, -1
    # Stateful metrics only: the metric state of each training segment after the
    # last step, leaves [segments, ...]; None otherwise (no leaves, so stateless
    # states, programs and checkpoints are unchanged).
    metric_state: Any = None


class Shapes(NamedTuple):
    """Static facts about the data a program is compiled for."""

    input_shape: tuple[int, int, int]  # (n_series, lookback, n_features)
    decision_dim: int  # m
    obs_dim: int  # k
    n_train: int
    v_dim: int = 0  # j, length of a StatefulMetric's v (extra shaper inputs); 0: none

    @classmethod
    def of(cls, windows: Windows) -> "Shapes":
        return cls(
            tuple(int(s) for s in windows.inputs.shape[1:]),
            int(windows.targets.shape[1]),
            int(windows.obs.shape[1]),
            int(windows.inputs.shape[0]),
        )


class Program(NamedTuple):
    """The pure functions of one training method, all vmappable over a run key.

    ``init(key, shaper_params=None) -> state`` (start from these shaper
    params); ``pretrain(key, state, train, sizes=None) -> state``;
    ``epochs(key, state, train, valid, first_epoch, n, sizes=None) -> (state,
    history)`` (``n`` static; ``sizes`` only for a padded program); ``run(key,
    train, valid) -> (state, history)`` the whole run; ``train_step(key, state,
    batch) -> (state, metrics)``.
    """

    init: Callable
    pretrain: Callable
    epochs: Callable
    run: Callable
    train_step: Callable
    predictor: nets.Network
    shaper: nets.Network | None
    steps_per_epoch: int  # with padded data: of the longest site


def _steps_per_epoch(config: Config, n_train: int) -> int:
    steps = n_train // config.batch_size
    if steps < 1:
        raise ValueError(
            f"Config.batch_size ({config.batch_size}) exceeds the {n_train} training "
            "windows: lower batch_size or bring more data"
        )
    return steps


def _segment_layout(config: Config, n_train: int, segments: int) -> tuple[int, int, int]:
    """(steps per epoch, segment length, stretch length) of stateful training."""
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments must be a positive int, got {segments!r}")
    if config.batch_size % segments:
        raise ValueError(
            f"Config.batch_size ({config.batch_size}) must be a multiple of segments "
            f"({segments}): a batch is segments contiguous runs of equal length"
        )
    seg_len = config.batch_size // segments
    stretch = n_train // segments
    steps = stretch // seg_len
    if steps < 1:
        raise ValueError(
            f"{segments} segments of {seg_len} windows do not fit in the {n_train} "
            "training windows: lower batch_size or segments, or bring more data"
        )
    return steps, seg_len, stretch


def _gate(active, new, old):
    """``new`` where ``active`` else ``old``, leaf by leaf (branch-free)."""
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)


def _guard(state, new_state, *values):
    """Freezes the run at the first non-finite value, branch-free.

    Returns ``new_state`` if every value and parameter is finite and the run is
    still healthy, else ``state`` with ``bad_step`` recording the first bad step;
    ``fit`` reports it after the scan (no host round trip per step).
    """
    leaves = list(values) + jax.tree.leaves(new_state.params)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
    healthy = state.bad_step < 0
    kept = _gate(finite & healthy, new_state, state)
    bad_step = jnp.where(healthy & ~finite, state.step, state.bad_step)
    return kept.replace(bad_step=bad_step)


def _adam_step(tx, grads, opt_state, params, lr):
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state


def predict(predictor, params, inputs, decision_dim):
    eps = jnp.zeros((inputs.shape[0], decision_dim), jnp.float32)
    return predictor.apply(params, inputs, eps)[0]


def _as_arrays(windows: Windows | None) -> Windows | None:
    # NumPy windows (what make_windows returns) cannot be indexed by traced
    # batch indices; jnp arrays can, inside or outside jit.
    return None if windows is None else Windows(*(jnp.asarray(x) for x in windows))


def _target_bounds(train: Windows, n_train=None):
    targets = train.targets
    if n_train is None:
        lo, hi = targets.min(axis=0), targets.max(axis=0)
    else:
        live = (jnp.arange(targets.shape[0]) < n_train)[:, None]
        lo = jnp.where(live, targets, jnp.inf).min(axis=0)
        hi = jnp.where(live, targets, -jnp.inf).max(axis=0)
    pad = 0.1 * (hi - lo)
    return lo - pad, hi + pad


def make_program(
    config: Config,
    shapes: Shapes,
    metric=None,
    loss: Callable | None = None,
    segments: int = 1,
    padded: bool = False,
) -> Program:
    """Builds the training program of Loss2Net (``loss=None``) or of a fixed loss.

    Args:
      config: hyper-parameters.
      shapes: static data shapes (``Shapes.of(train)``; for a StatefulMetric with
        ``v_dim`` set to the length of its ``v``).
      metric: per-sample true metric or a ``StatefulMetric``; drives Loss2Net and,
        for both kinds, the validation cost used by ``select_best``. Required for
        Loss2Net.
      loss: per-sample ``loss(prediction [m], target [m])`` for a fixed-loss
        baseline; the predictor then trains on it with eps = 0, no shaper.
      segments: StatefulMetric only: contiguous time segments per Loss2Net batch
        (module docstring); ``batch_size`` must be a multiple of it.
      padded: the data will be padded, and ``pretrain``/``epochs`` take ``sizes``
        (module docstring); ``shapes.n_train`` is then the padded length.

    With a StatefulMetric, ``train_step`` takes batches with leaves
    ``[segments, batch_size // segments, ...]`` (consecutive windows along axis 1).
    """
    m, k = shapes.decision_dim, shapes.obs_dim
    steps = steps_shuffled = _steps_per_epoch(config, shapes.n_train)
    cotrain = loss is None
    if cotrain and metric is None:
        raise ValueError("make_program: Loss2Net needs a metric")
    stateful = isinstance(metric, StatefulMetric)
    stateful_train = cotrain and stateful
    j = shapes.v_dim
    if stateful and j < 1:
        raise ValueError(
            "make_program: a StatefulMetric needs shapes.v_dim = len(v) >= 1 "
            "(fit sets it from metrics.v_dim)"
        )
    if padded and stateful:
        raise ValueError(
            "make_program: a StatefulMetric is scanned over the whole split in time "
            "order, which padding would break; truncate the sites to a common length"
        )
    if stateful_train:
        steps, seg_len, stretch = _segment_layout(config, shapes.n_train, segments)
        # [steps, segments, seg_len]: segment i of stretch s, in time order.
        segment_idx = (
            np.arange(segments)[None, :, None] * stretch
            + np.arange(steps)[:, None, None] * seg_len
            + np.arange(seg_len)[None, None, :]
        ).astype(np.int32)
    epochs_main = config.cotrain_epochs if cotrain else config.epochs
    total = epochs_main * steps
    lr_fn = schedules.learning_rate(config, total)
    noise_fn = schedules.noise_std(config, total) if cotrain else schedules.constant(0.0)
    predictor = nets.make_predictor(config, shapes.input_shape, m)
    shaper = nets.make_shaper(config, m + k + j) if cotrain else None
    metric_b = batch_metric(metric) if metric is not None else None
    loss_b = jax.vmap(loss) if loss is not None else None
    tx = optax.scale_by_adam()
    tx_shaper = optax.adam(config.shaper_lr)
    tx_pre = optax.adam(config.pretrain_lr)
    # A frozen shaper is not fitted, so it needs no replay of past costs.
    replay_on = cotrain and config.replay_size > 0 and not config.freeze_shaper

    def schedules_for(total_run):
        """(lr, noise) schedules; ``total_run`` is a padded site's own run length."""
        if total_run is None:
            return lr_fn, noise_fn
        noise = schedules.noise_std(config, total_run) if cotrain else noise_fn
        return schedules.learning_rate(config, total_run), noise

    def shaper_input(decisions, obs):
        if config.shaper_input == "error":
            decisions = decisions - obs[:, :m]
        return jnp.concatenate([decisions, obs], axis=-1)

    def init_segments():
        return jax.tree.map(
            lambda x: jnp.broadcast_to(jnp.asarray(x), (segments, *jnp.shape(x))),
            metric.init(),
        )

    def init(key, shaper_params=None):
        key_p, key_s = jax.random.split(jax.random.fold_in(key, _INIT))
        params = {"predictor": predictor.init(key_p)}
        opt_state = {"predictor": tx.init(params["predictor"])}
        if cotrain:
            params["shaper"] = shaper.init(key_s) if shaper_params is None else shaper_params
            opt_state["shaper"] = tx_shaper.init(params["shaper"])
        replay = None
        if replay_on:
            r = config.replay_size
            replay = Replay(
                jnp.zeros((r, m)), jnp.zeros((r, k + j)), jnp.zeros((r,)), jnp.array(0)
            )
        return TrainState(
            params=params,
            opt_state=opt_state,
            step=jnp.array(0, jnp.int32),
            best_params=params,
            best_valid=jnp.array(jnp.inf, jnp.float32),
            best_epoch=jnp.array(-1, jnp.int32),
            replay=replay,
            bad_step=jnp.array(-1, jnp.int32),
            metric_state=init_segments() if stateful_train else None,
        )

    def cotrain_step(key, state, batch, active=True, bounds=None, total_run=None):
        """Algorithm 1: one co-update of shaper and predictor."""
        lr_at, noise_at = schedules_for(total_run)
        key_noise, key_replay = jax.random.split(key)
        if stateful_train:
            # [segments, seg_len, ...] -> [batch, ...] for the networks; the metric
            # gets the segments back below.
            lanes = batch.targets.shape[:2]
            batch = Windows(*(x.reshape(-1, *x.shape[2:]) for x in batch))
        b = batch.targets.shape[0]
        sigma = noise_at(state.step)
        lr = lr_at(state.step)
        eps = sigma * jax.random.normal(key_noise, (b, m))
        p, s = state.params["predictor"], state.params["shaper"]
        y_hat, pullback = jax.vjp(lambda q: predictor.apply(q, batch.inputs, eps)[0], p)
        decisions = jax.lax.stop_gradient(y_hat) + eps
        metric_state = state.metric_state
        if stateful_train:
            # The system runs through each segment in time order, carrying its state
            # from the previous step's segment; v comes from our own decisions.
            seg = lambda x: x.reshape(*lanes, x.shape[-1])
            costs, v, metric_state = jax.vmap(functools.partial(scan_metric, metric))(
                metric_state, seg(decisions), seg(batch.obs)
            )
            costs = jax.lax.stop_gradient(costs.reshape(b))
            v = jax.lax.stop_gradient(v.reshape(b, j))
            obs = jnp.concatenate([batch.obs, v], axis=-1)  # the shaper's view
        else:
            costs = jax.lax.stop_gradient(metric_b(decisions, batch.obs))
            obs = batch.obs

        fit_x, fit_obs, fit_cost = decisions, obs, costs
        weights = jnp.ones((b,))
        replay = state.replay
        if replay_on:
            filled = jnp.minimum(replay.count, config.replay_size)
            idx = jax.random.randint(key_replay, (b,), 0, jnp.maximum(filled, 1))
            fit_x = jnp.concatenate([fit_x, replay.decisions[idx]])
            fit_obs = jnp.concatenate([fit_obs, replay.obs[idx]])
            fit_cost = jnp.concatenate([fit_cost, replay.costs[idx]])
            weights = jnp.concatenate([weights, jnp.full((b,), filled > 0, jnp.float32)])
            slot = (replay.count + jnp.arange(b)) % config.replay_size
            replay = Replay(
                replay.decisions.at[slot].set(decisions),
                replay.obs.at[slot].set(obs),
                replay.costs.at[slot].set(costs),
                replay.count + b,
            )

        def shaper_loss(sp):
            err = shaper.apply(sp, shaper_input(fit_x, fit_obs)) - fit_cost
            return jnp.sum(weights * err**2) / jnp.sum(weights)

        if config.freeze_shaper:
            s_loss, s_new, s_opt = shaper_loss(s), s, state.opt_state["shaper"]
        else:
            s_loss, s_grad = jax.value_and_grad(shaper_loss)(s)
            s_updates, s_opt = tx_shaper.update(s_grad, state.opt_state["shaper"], s)
            s_new = optax.apply_updates(s, s_updates)

        if config.range_penalty > 0 and bounds is None:
            raise ValueError("train_step: range_penalty > 0 needs bounds=(lo, hi)")

        def shaped_loss(d):
            value = jnp.mean(shaper.apply(s_new, shaper_input(d, obs)))
            if config.range_penalty > 0:
                lo, hi = bounds
                y = d - eps
                out = jnp.maximum(lo - y, 0.0) ** 2 + jnp.maximum(y - hi, 0.0) ** 2
                value = value + config.range_penalty * jnp.mean(jnp.sum(out, axis=-1))
            return value

        p_loss, d_grad = jax.value_and_grad(shaped_loss)(decisions)
        (p_grad,) = pullback(d_grad)
        p_new, p_opt = _adam_step(tx, p_grad, state.opt_state["predictor"], p, lr)
        p_new, p_opt = _gate(active, (p_new, p_opt), (p, state.opt_state["predictor"]))

        new_state = state.replace(
            params={"predictor": p_new, "shaper": s_new},
            opt_state={"predictor": p_opt, "shaper": s_opt},
            step=state.step + 1,
            replay=replay,
            metric_state=metric_state,
        )
        metrics = {
            "cost": jnp.mean(costs),
            "shaper_loss": s_loss,
            "predictor_loss": p_loss,
            "mean_error": jnp.mean(y_hat - batch.targets),
            "noise_std": sigma,
            "lr": lr,
        }
        if stateful_train:
            metrics["v_mean"] = jnp.mean(v)
        return _guard(state, new_state, costs, s_loss, p_loss), metrics

    def fixed_step(key, state, batch, active=True, bounds=None, total_run=None):
        """One step of a baseline on its fixed loss (eps = 0, no shaper)."""
        del key, active, bounds
        lr = schedules_for(total_run)[0](state.step)
        p = state.params["predictor"]

        def objective(q):
            pred = predict(predictor, q, batch.inputs, m)
            return jnp.mean(loss_b(pred, batch.targets)), pred

        (value, pred), grad = jax.value_and_grad(objective, has_aux=True)(p)
        p_new, p_opt = _adam_step(tx, grad, state.opt_state["predictor"], p, lr)
        new_state = state.replace(
            params={"predictor": p_new},
            opt_state={"predictor": p_opt},
            step=state.step + 1,
        )
        metrics = {"loss": value, "mean_error": jnp.mean(pred - batch.targets), "lr": lr}
        # A stateful metric's cost is not defined on a shuffled batch.
        if metric_b is not None and not stateful:
            metrics["cost"] = jnp.mean(metric_b(pred, batch.obs))
        # Not guarded: fixed losses are library-defined, and the guard's extra ops
        # change XLA's fusion (and so the last bits) of the committed baselines.
        return new_state, metrics

    step_fn = cotrain_step if cotrain else fixed_step

    def _batches(key, epoch):
        perm_key = jax.random.fold_in(jax.random.fold_in(key, _PERM), epoch)
        perm = jax.random.permutation(perm_key, shapes.n_train)
        return perm[: steps_shuffled * config.batch_size].reshape(
            steps_shuffled, config.batch_size
        )

    def _padded_batches(key, epoch, n_train):
        """[steps, batch] indices of a random order of the first ``n_train`` windows,
        and [steps] which steps are live (the site's own ``n_train // batch``)."""
        perm_key = jax.random.fold_in(jax.random.fold_in(key, _PERM), epoch)
        n_all = shapes.n_train
        # One key per index: the order of the live windows is the same whatever
        # the padded length (a site batched with longer ones runs as alone).
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(perm_key, i)))(
            jnp.arange(n_all)
        )
        perm = jnp.argsort(jnp.where(jnp.arange(n_all) < n_train, u, 2.0))
        # Dead steps read live rows too (mod n_train), so padding is never computed on.
        pos = jnp.arange(steps_shuffled * config.batch_size) % n_train
        idx = perm[pos].reshape(steps_shuffled, config.batch_size)
        return idx, jnp.arange(steps_shuffled) < n_train // config.batch_size

    def _schedule(key, epoch, sizes):
        """(batches, live steps or None) of one epoch."""
        if sizes is None:
            return _batches(key, epoch), None
        return _padded_batches(key, epoch, sizes[0])

    def pretrain(key, state, train, sizes=None):
        """MSE pre-training of IRs (own next values) and assembler (targets)."""
        if not cotrain or config.pretrain_epochs == 0:
            return state
        train = _as_arrays(train)
        key = jax.random.fold_in(key, _PRETRAIN)

        def step(carry, xs):
            idx, live = xs  # live: None unless padded
            p, opt = carry
            batch = train.take(idx)

            def objective(q):
                eps = jnp.zeros((idx.shape[0], m), jnp.float32)
                pred, forecasts = predictor.apply(q, batch.inputs, eps)
                return jnp.mean((pred - batch.targets) ** 2) + jnp.mean(
                    (forecasts - batch.ir_targets) ** 2
                )

            value, grad = jax.value_and_grad(objective)(p)
            updates, new_opt = tx_pre.update(grad, opt, p)
            new = (optax.apply_updates(p, updates), new_opt)
            if live is not None:
                new = _gate(live, new, (p, opt))
            return new, value

        def epoch(carry, e):
            return jax.lax.scan(step, carry, _schedule(key, e, sizes))[0], None

        p = state.params["predictor"]
        (p, _), _ = jax.lax.scan(epoch, (p, tx_pre.init(p)), jnp.arange(config.pretrain_epochs))
        params = dict(state.params, predictor=p)
        return state.replace(params=params, best_params=params)

    def validation(params, valid, n_valid=None):
        """(selection criterion, logged values) on the validation split."""
        pred = predict(predictor, params["predictor"], valid.inputs, m)
        if n_valid is None:
            mean = jnp.mean
        else:  # padded rows do not count
            live = jnp.arange(pred.shape[0]) < n_valid
            mean = lambda x: jnp.sum(jnp.where(live, x, 0.0)) / n_valid
        logged = {}
        if metric_b is not None:
            logged["valid_cost"] = mean(metric_b(pred, valid.obs))
        if cotrain:
            return logged["valid_cost"], logged
        # Baselines stop early on their own loss (standard practice); any knob
        # (margin, tau) is then tuned on the true metric by the caller.
        logged["valid_loss"] = mean(loss_b(pred, valid.targets))
        return logged["valid_loss"], logged

    def epochs(key, state, train, valid, first_epoch, n, sizes=None):
        """Runs epochs ``first_epoch .. first_epoch + n - 1`` of the main phase."""
        if padded != (sizes is not None):
            raise ValueError("epochs: pass sizes exactly when the program is padded")
        train, valid = _as_arrays(train), _as_arrays(valid)
        n_train, n_valid = (None, None) if sizes is None else sizes
        bounds = _target_bounds(train, n_train)
        total_run = None if sizes is None else epochs_main * (n_train // config.batch_size)
        key_step = jax.random.fold_in(key, _STEP)

        def one_epoch(state, e):
            active = e >= config.shaper_warmup_epochs

            def body(state, xs):
                idx, live = xs  # live: None unless padded
                step_key = jax.random.fold_in(key_step, state.step)
                new_state, metrics = step_fn(
                    step_key, state, train.take(idx), active, bounds, total_run
                )
                if live is not None:  # a dead step of a padded site changes nothing
                    new_state = _gate(live, new_state, state)
                return new_state, metrics

            if stateful_train:
                # Each epoch replays every stretch from its start: a sequence start.
                state = state.replace(metric_state=init_segments())
                schedule = (jnp.asarray(segment_idx), None)
            else:
                schedule = _schedule(key, e, sizes)
            state, history = jax.lax.scan(body, state, schedule)
            if valid is not None:
                cost, logged = validation(state.params, valid, n_valid)
                for name, value in logged.items():
                    history[name] = jnp.broadcast_to(value, (steps,))
                if config.select_best:
                    better = cost < state.best_valid
                    state = state.replace(
                        best_params=_gate(better, state.params, state.best_params),
                        best_valid=jnp.where(better, cost, state.best_valid),
                        best_epoch=jnp.where(better, e, state.best_epoch),
                    )
            return state, history

        return jax.lax.scan(one_epoch, state, first_epoch + jnp.arange(n))

    def run(key, train, valid=None):
        state = pretrain(key, init(key), train)
        return epochs(key, state, train, valid, 0, epochs_main)

    return Program(
        init=init,
        pretrain=pretrain,
        epochs=epochs,
        run=run,
        train_step=step_fn,
        predictor=predictor,
        shaper=shaper,
        steps_per_epoch=steps,
    )


def final_params(config: Config, state: TrainState, has_valid: bool) -> dict:
    """The parameters a run delivers: best validation epoch if selected, else last."""
    if config.select_best and has_valid:
        return state.best_params
    return state.params
