"""The generic training engine: a ``Trainer`` (values) becomes a ``Program`` (pure
functions of a run key), whatever the method.

    step(key, state, batch) -> (state, metrics)       one optimisation step
    epochs(key, state, train, valid, first, n)        lax.scan of epochs: steps, then
                                                      validation and epoch selection
    start(key, train) = pretrain(key, init(key), train)
    run(key, train, valid) = epochs(key, start(key, train), train, valid, 0, n_epochs)

A ``Trainer`` says how a method starts a run and what one step does; everything that
varies (a robustness measure, a stateful metric, padded sites, another method) was
decided when its functions were built, never by a flag read inside the step. The host
(``l2n_jax.loop``) calls ``start`` once and ``epochs`` chunk by chunk: every key is
``fold_in``-derived from the run key and the epoch/step counters, so chunking does
not change results and ``run`` is the same computation in one call. Vectorisation
over seeds and sites is applied from outside (``l2n_jax.runs``).
"""

from typing import Any, Callable, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp

from l2n_jax.batching import Layout, gate
from l2n_jax.data import Split, as_split

# fold_in tags that split a run key into independent streams (batching.PERM = 2).
INIT, PRETRAIN, STEP = 0, 1, 3


@struct.dataclass
class TrainState:
    """Everything a run carries between steps; arrays only, so it stacks under vmap."""

    params: dict  # {'predictor': ..., 'shaper': ...} ('shaper' absent for baselines)
    opt_state: dict  # same keys as params
    step: jax.Array  # () int32, optimisation steps taken after pre-training
    best_params: dict  # params of the best validation epoch so far
    best_valid: jax.Array  # () float32, its validation criterion
    best_epoch: jax.Array  # () int32
    replay: Any = None  # Loss2Net's replay memory (variants.Replay), if any
    bad_step: jax.Array = None  # () int32, first step with a non-finite value, -1
    # The cost model's state at the end of the last step (stateful metrics: one per
    # training segment); () for a plain metric, so it adds no leaves.
    metric_state: Any = ()
    # A run's fixed hyper-parameters (e.g. a pinball loss's tau when a grid of them
    # trains in one program); () when there are none.
    hyper: Any = ()


def new_state(params, opt_state, replay=None, metric_state=(), hyper=()) -> TrainState:
    """The state at the start of a run."""
    return TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.array(0, jnp.int32),
        best_params=params,
        best_valid=jnp.array(jnp.inf, jnp.float32),
        best_epoch=jnp.array(-1, jnp.int32),
        replay=replay,
        bad_step=jnp.array(-1, jnp.int32),
        metric_state=metric_state,
        hyper=hyper,
    )


class Trainer(NamedTuple):
    """A training method as values, for ``build``.

    Attributes:
      n_epochs: epochs of the main phase (after any pre-training).
      steps_per_epoch: of the main phase, for the data the trainer was made for.
      networks: {'predictor': nets.Network, ...} (a method's own networks too).
      init: ``(key, start_params=None) -> TrainState``; ``start_params`` maps a
        network name to parameters to start from instead of a fresh init (and
        'hyper' to the run's fixed hyper-parameters, for trainers that take some).
      pretrain: ``(key, state, train: Split) -> state`` (identity if none).
      layout: ``(train: Split) -> batching.Layout`` of the main phase.
      step: ``(train: Split) -> step(key, state, batch) -> (state, metrics)``, the
        step bound to this data (its schedules' run length, its bounds).
      validate: ``(state, valid: Split) -> (criterion, {name: value})`` of the
        state's current parameters.
      epoch_start: ``state -> state`` at every epoch start (e.g. a stateful
        metric's sequence start).
      pretrain_epochs: epochs ``pretrain`` runs (counted in the budget; for
        progress lines).
      sees_valid: ``step`` is ``(train, valid) -> step``: the step also gets the
        validation split (a method whose step scores it, e.g. Adaptive Loss
        Alignment's reward); False for every trainer that does not.
    """

    n_epochs: int
    steps_per_epoch: int
    networks: dict
    init: Callable
    pretrain: Callable
    layout: Callable
    step: Callable
    validate: Callable
    epoch_start: Callable
    pretrain_epochs: int = 0
    sees_valid: bool = False


class Program(NamedTuple):
    """The pure functions of one training method, all vmappable over a run key.

    ``init(key, start_params=None)``; ``pretrain(key, state, train)``; ``start(key,
    train, start_params=None)`` = pretrain(init); ``epochs(key, state, train, valid,
    first_epoch, n) -> (state, history)`` (``n`` static; history leaves [n, steps]);
    ``run(key, train, valid=None, start_params=None) -> (state, history)`` the whole
    run; ``step(train) -> step(key, state, batch)``. ``train``/``valid`` are
    ``Windows`` or ``data.Split`` (padded sites).
    """

    init: Callable
    pretrain: Callable
    start: Callable
    epochs: Callable
    run: Callable
    step: Callable
    networks: dict
    steps_per_epoch: int  # with padded data: of the longest site
    n_epochs: int
    pretrain_epochs: int = 0

    @property
    def predictor(self):
        return self.networks["predictor"]

    @property
    def shaper(self):
        return self.networks.get("shaper")


def skip_nonfinite(step: Callable, watch: tuple[str, ...] | None = None) -> Callable:
    """Wraps a step so that a run freezes at its first non-finite value, branch-free.

    The wrapped step returns the old state, with ``bad_step`` recording the step,
    if a watched metric (``watch``: names, default all) or a parameter of the new
    state is NaN/inf (or the run is already frozen); the host reports it after the
    chunk (no host round trip per step).
    """

    def guarded(key, state, batch):
        new, metrics = step(key, state, batch)
        names = metrics if watch is None else watch
        leaves = [metrics[n] for n in names] + jax.tree.leaves(new.params)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        healthy = state.bad_step < 0
        kept = gate(finite & healthy, new, state)
        bad_step = jnp.where(healthy & ~finite, state.step, state.bad_step)
        return kept.replace(bad_step=bad_step), metrics

    return guarded


def keep_best(state: TrainState, criterion, epoch) -> TrainState:
    """Epoch selection: remember the params of the lowest validation criterion."""
    better = criterion < state.best_valid
    return state.replace(
        best_params=gate(better, state.params, state.best_params),
        best_valid=jnp.where(better, criterion, state.best_valid),
        best_epoch=jnp.where(better, epoch, state.best_epoch),
    )


def keep_last(state: TrainState, criterion, epoch) -> TrainState:
    """No epoch selection: the run delivers its last parameters."""
    del criterion, epoch
    return state


def final_params(state: TrainState, selected: bool) -> dict:
    """The parameters a run delivers: the best validation epoch's, or the last."""
    return state.best_params if selected else state.params


def _scan_epoch(step, layout: Layout, key, state, train: Split, epoch):
    """One epoch: every batch of ``layout`` through ``step`` (a ``lax.scan``)."""
    key_step = jax.random.fold_in(key, STEP)

    def body(state, xs):
        idx, live = xs
        step_key = jax.random.fold_in(key_step, state.step)
        new, metrics = step(step_key, state, train.windows.take(idx))
        return layout.keep(live, new, state), metrics

    return jax.lax.scan(body, state, layout.batches(key, epoch))


def _bound_step(trainer: Trainer, train: Split, valid: Split | None) -> Callable:
    """The trainer's step bound to its data (and, if it asks, the validation split)."""
    return trainer.step(train, valid) if trainer.sees_valid else trainer.step(train)


def build(trainer: Trainer, select: Callable = keep_best) -> Program:
    """The Program of ``trainer``; ``select`` is the epoch-end selection rule."""

    def start(key, train, start_params=None):
        return trainer.pretrain(key, trainer.init(key, start_params), as_split(train))

    def epochs(key, state, train, valid, first_epoch, n):
        train, valid = as_split(train), as_split(valid)
        step, layout = _bound_step(trainer, train, valid), trainer.layout(train)

        def one_epoch(state, epoch):
            state, history = _scan_epoch(
                step, layout, key, trainer.epoch_start(state), train, epoch
            )
            if valid is not None:
                criterion, logged = trainer.validate(state, valid)
                for name, value in logged.items():
                    history[name] = jnp.broadcast_to(value, (layout.steps,))
                state = select(state, criterion, epoch)
            return state, history

        return jax.lax.scan(one_epoch, state, first_epoch + jnp.arange(n))

    def run(key, train, valid=None, start_params=None):
        state = start(key, train, start_params)
        return epochs(key, state, train, valid, 0, trainer.n_epochs)

    return Program(
        init=trainer.init,
        pretrain=lambda key, state, train: trainer.pretrain(key, state, as_split(train)),
        start=start,
        epochs=epochs,
        run=run,
        step=lambda train, valid=None: _bound_step(trainer, as_split(train),
                                                   as_split(valid)),
        networks=trainer.networks,
        steps_per_epoch=trainer.steps_per_epoch,
        n_epochs=trainer.n_epochs,
        pretrain_epochs=trainer.pretrain_epochs,
    )
