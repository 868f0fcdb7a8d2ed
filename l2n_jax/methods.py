"""Methods as a registry: every way of deciding that l2n_jax compares, by name.

A method is a function ``method(task) -> {site: Outcome}``: it trains (or fits, or
solves) on every site of ``task.sites`` at once and says how it decides on the
validation and the test split. ``run(name, task)`` scores the test decisions with
the true metric into tidy rows (one per site x seed). Every method gets the same
predictor architecture, data split, batch size and number of epochs
(``task.config``); knobs (margin, pinball tau) are tuned on the validation split
with the true metric, as Loss2Net's epoch selection is.

Building blocks (combinators), each returning a method:

* ``cotrained(**config_changes)``: Loss2Net (``l2n.fit`` / ``l2n.fit_sites``);
* ``trained(loss)``: the predictor on a fixed loss (a ``loss(pred, target)``, or a
  function of the task returning one), trained once per site set, budget, seeds and
  loss in the task's ``FitCache`` (methods that share a forecaster reuse it);
* ``forecaster(fn)``: a closed-form forecast ``fn(windowset, split) -> [N, m]``,
  the same for every seed;
* ``with_margin(method)``: plus an additive margin per seed tuned on validation;
* ``tuned(grid, make)``: ``make(value)`` for every grid value, keeping per site the
  value of lowest mean validation cost.

Register your own in a few lines (see README, "Your own method")::

    @l2n.methods.register("huber_margin")
    def huber_margin(task):
        return l2n.methods.with_margin(l2n.methods.trained(huber))(task)

and run it with ``l2n_train --plugins=my_methods --method=huber_margin``.
"""

import functools
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from l2n_jax import baselines, losses, progress
from l2n_jax import checkpoint as ckpt_lib
from l2n_jax.config import Config
from l2n_jax.data import WindowSet
from l2n_jax.fit import fit, fit_fixed_loss, fit_fixed_loss_sites, fit_sites
from l2n_jax.results import score

PINBALL_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class Options(NamedTuple):
    """Use-case facts some methods need.

    Attributes:
      alpha: alpha = beta / gamma of the alpha-OMC surrogate (None: not offered).
      omc_e: its e.
      taus: pinball quantiles tried on the validation split.
      segments: contiguous time segments per Loss2Net batch (StatefulMetric only).
      columns: ``columns(rows, decisions [S, N, m], windowset) -> {name: [S]}``,
        extra per-seed columns of a use case's rows (e.g. acra's profit), or None.
    """

    alpha: float | None = None
    omc_e: float = 0.1
    taus: tuple[float, ...] = PINBALL_TAUS
    segments: int = 1
    columns: Callable | None = None


class FitCache:
    """Trainings shared between methods, owned by the caller (one per table).

    Keyed by the sites' names and training data, the config, the seeds and the
    loss: e.g. ``mse`` and ``mse_margin`` share one MSE training per site set.
    Fixed-loss trainings select their epoch on their own loss, so the metric is
    not part of the key (tables at several SLA fees share them).
    """

    def __init__(self):
        self._fits: dict = {}

    def get(self, key, train: Callable[[], Any]):
        if key not in self._fits:
            self._fits[key] = train()
        return self._fits[key]

    def __len__(self):
        return len(self._fits)


class Task(NamedTuple):
    """What a method runs on.

    Attributes:
      config: the budget and architecture every network method gets.
      sites: {site: WindowSet}; a method trains them in one program when it can.
      metric: the true metric (per-sample or ``l2n.StatefulMetric``).
      seeds: one run per seed.
      options: use-case facts (``Options``).
      label: prefix of progress lines (the method's name is appended).
      checkpoint_dir: where trainings checkpoint (``<dir>/<name>.ckpt``), or None.
      cache: the caller's ``FitCache`` (None: nothing shared).
      verbose: progress lines on stderr (trainings, test costs).
    """

    config: Config
    sites: Mapping[str, WindowSet]
    metric: Any
    seeds: tuple[int, ...]
    options: Options = Options()
    label: str = ""
    checkpoint_dir: str | None = None
    cache: FitCache | None = None
    verbose: bool = True

    def checkpoint(self, name: str) -> str | None:
        return None if self.checkpoint_dir is None else os.path.join(
            self.checkpoint_dir, f"{name}.ckpt")


class Outcome(NamedTuple):
    """How a method decides on one site.

    Attributes:
      decide: ``decide(split) -> [seeds, N, m]`` decisions on 'valid' or 'test'.
      forecast: the same before any margin or admission step (for forecast RMSE).
      knob: [seeds] the tuned knob (margin, tau), or None.
      fit: the training behind it (a FitResult), or None.
    """

    decide: Callable[[str], np.ndarray]
    forecast: Callable[[str], np.ndarray]
    knob: np.ndarray | None = None
    fit: Any = None


class Method(NamedTuple):
    """A registry entry."""

    fn: Callable[[Task], dict[str, Outcome]]  # method(task) -> {site: Outcome}
    doc: str = ""
    usecases: tuple[str, ...] | None = None  # None: every use case


REGISTRY: dict[str, Method] = {}


def register(name: str, method: Callable | None = None, *, doc: str | None = None,
             usecases: Sequence[str] | None = None, replace: bool = False):
    """Adds ``method(task) -> {site: Outcome}`` to the registry as ``name``.

    Usable as ``register(name, method)`` or as a decorator ``@register(name)``.
    ``usecases`` restricts it to those use cases; ``replace`` allows redefining.
    """

    def add(fn):
        if not callable(fn):
            raise ValueError(f"register({name!r}): a method must be callable, got {fn!r}")
        if name in REGISTRY and not replace:
            raise ValueError(f"method {name!r} is already registered (replace=True "
                             "to redefine it)")
        text = doc if doc is not None else (fn.__doc__ or "").strip().split("\n")[0]
        REGISTRY[name] = Method(fn, text, None if usecases is None else tuple(usecases))
        return fn

    return add if method is None else add(method)


def get(name: str, usecase: str | None = None) -> Method:
    """The entry ``name``; ValueError naming the known ones if there is none."""
    known = names(usecase)
    if name not in known:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(known)}")
    return REGISTRY[name]


def names(usecase: str | None = None) -> tuple[str, ...]:
    """Registered methods (those that apply to ``usecase``, if given)."""
    return tuple(n for n, m in REGISTRY.items()
                 if usecase is None or m.usecases is None or usecase in m.usecases)


def _memo(fn):
    return functools.lru_cache(maxsize=None)(fn)


def _tile(pred, n_seeds):
    return np.broadcast_to(pred[None], (n_seeds, *pred.shape)).copy()


def from_fit(result, ws: WindowSet) -> Outcome:
    """The outcome of a trained network: its predictions."""
    decide = _memo(lambda split: result.predict(getattr(ws, split).inputs))
    return Outcome(decide, decide, fit=result)


def train_sites(config, wss, seeds, label, checkpoint, *, metric=None, loss=None,
                segments=1, verbose=True):
    """{site: FitResult}: Loss2Net (``loss=None``) or a fixed loss, every site and
    seed in one program (a plain single-site fit for one site). A fixed loss logs
    ``metric`` (the true cost) but selects its epoch on its own loss."""
    common = dict(seeds=seeds, label=label, checkpoint=checkpoint, verbose=verbose)
    if len(wss) == 1:
        ((site, ws),) = wss.items()
        if loss is None:
            return {site: fit(config, ws.train, metric, valid=ws.valid, segments=segments,
                              **common)}
        return {site: fit_fixed_loss(config, ws.train, loss, valid=ws.valid, metric=metric,
                                     **common)}
    trains = {s: ws.train for s, ws in wss.items()}
    valids = {s: ws.valid for s, ws in wss.items()}
    if loss is None:
        return fit_sites(config, trains, metric, valids=valids, segments=segments,
                         **common)
    return fit_fixed_loss_sites(config, trains, loss, valids=valids, metric=metric,
                                **common)


def cotrained(name: str = "loss2net", **config_changes) -> Callable:
    """Loss2Net (with ``config_changes``), every site x seed in one program."""

    def method(task: Task):
        config = task.config.replace(**config_changes)
        results = train_sites(config, task.sites, task.seeds, task.label,
                              task.checkpoint(name), metric=task.metric,
                              segments=task.options.segments, verbose=task.verbose)
        return {s: from_fit(results[s], ws) for s, ws in task.sites.items()}

    return method


def fixed_fits(task: Task, loss: Callable, label: str) -> dict:
    """{site: FitResult} of ``loss``, trained once per key of ``task.cache``."""

    def train():
        return train_sites(task.config, task.sites, task.seeds, label,
                           task.checkpoint(loss.__name__), loss=loss, metric=task.metric,
                           verbose=task.verbose)

    if task.cache is None:
        return train()
    data = tuple((s, ckpt_lib.data_digest(*ws.train)) for s, ws in task.sites.items())
    return task.cache.get((data, task.config, task.seeds, loss), train)


def trained(loss: Callable) -> Callable:
    """The predictor trained on a fixed per-sample ``loss(pred, target)``."""

    def method(task: Task):
        results = fixed_fits(task, loss, task.label)
        return {s: from_fit(results[s], ws) for s, ws in task.sites.items()}

    return method


def forecaster(fit_model: Callable[[WindowSet], Callable]) -> Callable:
    """A closed-form forecaster: ``fit_model(windowset) -> predict(windows) -> [N,
    m]``, the same for every seed."""

    def method(task: Task):
        out = {}
        for s, ws in task.sites.items():
            model = fit_model(ws)
            decide = _memo(lambda split, ws=ws, model=model: _tile(
                model(getattr(ws, split)), len(task.seeds)))
            out[s] = Outcome(decide, decide)
        return out

    return method


def with_margin(method: Callable) -> Callable:
    """``method`` plus an additive margin per seed, tuned on validation with the
    true metric (``baselines.tune_margin``)."""

    def margined(task: Task):
        out = {}
        for s, o in method(task).items():
            margin = baselines.tune_margin(o.decide("valid"), task.sites[s].valid,
                                           task.metric)
            decide = _memo(lambda split, o=o, m=margin: o.decide(split) + m[:, None, None])
            out[s] = Outcome(decide, o.forecast, margin, o.fit)
        return out

    return margined


def tuned(grid: Callable[[Task], Sequence] | Sequence, make: Callable,
          name: str = "value") -> Callable:
    """``make(value)`` (a method) for every ``value`` of ``grid`` (or ``grid(task)``);
    per site, the value of lowest mean validation cost over the seeds."""

    def method(task: Task):
        best = {}
        for value in (grid(task) if callable(grid) else grid):
            sub = task._replace(label=f"{task.label}[{name}={value}]")
            for s, o in make(value)(sub).items():
                ws = task.sites[s]
                valid = score(o.decide("valid"), ws.valid, task.metric, task.seeds, "")
                cost = valid["cost"].mean()
                if s not in best or cost < best[s][0]:
                    best[s] = (cost, value, o)
        return {s: o._replace(knob=np.full(len(task.seeds), v, np.float64))
                for s, (_, v, o) in best.items()}

    return method


def rows(task: Task, outcomes: Mapping[str, Outcome], method: str) -> pd.DataFrame:
    """Tidy test rows, one per site x seed: site, seed, method, cost, rmse, mae,
    under_rate, forecast_rmse, knob (and the use case's own columns)."""
    frames = []
    for s, o in outcomes.items():
        ws = task.sites[s]
        decisions = o.decide("test")
        df = score(decisions, ws.test, task.metric, task.seeds, method)
        err = np.asarray(o.forecast("test"), np.float32) - np.asarray(ws.test.targets)[None]
        df["forecast_rmse"] = np.sqrt((err**2).mean(axis=(1, 2)))
        if task.options.columns is not None:
            for name, values in task.options.columns(df, decisions, ws).items():
                df[name] = values
        df["knob"] = np.nan if o.knob is None else np.broadcast_to(o.knob, len(df))
        df.insert(0, "site", s)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


class Run(NamedTuple):
    """A method's rows on every site of a task, and its trainings."""

    rows: pd.DataFrame
    fits: dict  # {site: FitResult} (empty for closed-form methods)


def run(name: str, task: Task, usecase: str | None = None) -> Run:
    """Runs the registered method ``name`` on ``task`` and scores it on the test split.

    ``train_s`` in the rows is the wall time of the whole (all-site) method.
    """
    method = get(name, usecase)
    task = task._replace(seeds=tuple(task.seeds),
                         label=f"{task.label}/{name}" if task.label else name)
    t0 = time.perf_counter()
    outcomes = method.fn(task)
    df = rows(task, outcomes, name)
    df["train_s"] = time.perf_counter() - t0
    report = progress.reporter(task.verbose)
    for s, block in df.groupby("site", sort=False):
        where = f"{task.label}@{s}" if len(outcomes) > 1 else task.label
        report(f"[{where}] test cost {block['cost'].mean():.5f} ± "
               f"{block['cost'].std():.5f} over {len(block)} seed(s) "
               f"(lower is better; took {progress.duration(df['train_s'].iloc[0])})")
    return Run(df, {s: o.fit for s, o in outcomes.items() if o.fit is not None})


def alpha_omc(task: Task):
    """The alpha-OMC surrogate at the use case's alpha = beta / gamma."""
    if task.options.alpha is None:
        raise ValueError("alpha_omc needs Options.alpha = beta / gamma")
    return trained(losses.alpha_omc(task.options.alpha, task.options.omc_e))(task)


def _persistence(ws: WindowSet):
    return baselines.persistence


def _linear_ar(ws: WindowSet):
    return baselines.linear_ar(ws.train)


register("loss2net", cotrained(), doc="Loss2Net: predictor and loss shaper co-trained")
register("mse", trained(losses.mse), doc="the predictor trained with MSE")
register("msle", trained(losses.msle), doc="the predictor trained with MSLE")
register("mae", trained(losses.mae), doc="the predictor trained with MAE")
register("alpha_omc", alpha_omc,
         doc="the alpha-OMC expert surrogate (DeepCog), alpha = beta / gamma")
register("mse_margin", with_margin(trained(losses.mse)),
         doc="MSE + an additive margin tuned on validation")
register("pinball_tuned",
         tuned(lambda task: task.options.taus, lambda tau: trained(losses.pinball(tau)),
               "tau"),
         doc="pinball loss, tau tuned on validation")
register("persistence", forecaster(_persistence), doc="repeat the last value")
register("persistence_margin", with_margin(forecaster(_persistence)),
         doc="persistence + a margin tuned on validation")
register("ar", forecaster(_linear_ar), doc="linear AR (ridge least squares)")
register("ar_margin", with_margin(forecaster(_linear_ar)),
         doc="linear AR + a margin tuned on validation")
register("bm_split", cotrained("bm_split", split_irs=True),
         doc="Loss2Net without the assembler: each IR decides for its own series")
