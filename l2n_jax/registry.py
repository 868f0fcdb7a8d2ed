"""The methods registry's core: what a method is, what it runs on, and running it.

A method is a function ``method(task) -> {site: Outcome}``: it trains (or fits, or
solves) on every site of ``task.sites`` at once and says how it decides on the
validation and the test split. ``run(name, task)`` scores the test decisions with
the true metric into tidy rows (one per site x seed). The building blocks are in
``l2n_jax.combinators``, the built-in methods in ``l2n_jax.methods``.
"""

import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from l2n_jax import progress
from l2n_jax.config import Config
from l2n_jax.data import WindowSet
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
