"""Building blocks of methods (each returns a method ``fn(task) -> {site: Outcome}``).

* ``cotrained(**config_changes)``: Loss2Net (``l2n.fit`` / ``l2n.fit_sites``);
* ``trained(loss)``: the predictor on a fixed ``loss(pred, target)``, trained once
  per site set, budget, seeds and loss in the task's ``FitCache`` (methods that
  share a forecaster reuse it);
* ``tuned_loss(family, grid, refine)``: the predictor on ``family(pred, target,
  theta)`` for every theta of a grid, sites x grid in one program, keeping per site
  the theta of lowest validation cost, then a second, zoomed grid around it;
* ``forecaster(fit)``: a closed-form forecaster, the same for every seed;
* ``with_margin(method)``: plus an additive margin per seed tuned on validation;
* ``tuned(grid, make)``: ``make(value)`` (a method) for every grid value, keeping
  per site the value of lowest mean validation cost.
"""

import functools
import hashlib
from typing import Callable, Sequence

import numpy as np

from l2n_jax import baselines
from l2n_jax import checkpoint as ckpt_lib
from l2n_jax.data import WindowSet
from l2n_jax.fit import fit, fit_fixed_loss, fit_fixed_loss_sites, fit_sites
from l2n_jax.registry import Outcome, Task
from l2n_jax.results import score


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
        outcomes = {s: from_fit(results[s], ws) for s, ws in task.sites.items()}
        # A quantile_grad that l2n.fit chose on validation is the knob, as a baseline's.
        return {s: o if results[s].config.quantile_grad == config.quantile_grad else
                _knob(o, results[s].config.quantile_grad, len(task.seeds))
                for s, o in outcomes.items()}

    return method


def _knob(outcome: Outcome, value, n_seeds: int) -> Outcome:
    return outcome._replace(knob=np.full(n_seeds, value, np.float64))


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
        return {s: _knob(o, v, len(task.seeds)) for s, (_, v, o) in best.items()}

    return method


def _grid_fits(task: Task, family: Callable, pairs, tag: str) -> dict:
    """{(site, theta): FitResult}: ``family`` at every (site, theta) pair, all in one
    program (once per pair set in ``task.cache``)."""
    name = f"{task.label}[{tag}]"
    keys = {(s, v): f"{s}@{v:.6g}" for s, v in pairs}

    def train():
        # The refined grid depends on the metric (it zooms on the best value so far),
        # so the file name carries the grid: a study that shares checkpoints across
        # metrics (benchmarks/netalloc.py's betas) must not restore another grid's.
        grid = hashlib.sha1(repr(sorted(pairs)).encode()).hexdigest()[:8]
        ckpt = task.checkpoint(f"{family.__name__}_{tag}_{grid}")
        if len(pairs) == 1:
            ((s, v),) = pairs
            ws = task.sites[s]
            r = fit_fixed_loss(task.config, ws.train, family, seeds=task.seeds,
                               valid=ws.valid, metric=task.metric, label=name,
                               checkpoint=ckpt, verbose=task.verbose, hyper=v)
            return {(s, v): r}
        out = fit_fixed_loss_sites(
            task.config, {k: task.sites[s].train for (s, _), k in keys.items()}, family,
            seeds=task.seeds, valids={k: task.sites[s].valid for (s, _), k in keys.items()},
            metric=task.metric, label=name, checkpoint=ckpt, verbose=task.verbose,
            hyper={k: v for (_, v), k in keys.items()})
        return {p: out[k] for p, k in keys.items()}

    if task.cache is None:
        return train()
    data = tuple((s, ckpt_lib.data_digest(*ws.train)) for s, ws in task.sites.items())
    return task.cache.get((data, task.config, task.seeds, family, tuple(pairs)), train)


def tuned_loss(family: Callable, grid: Callable[[Task], Sequence], refine=None,
               name: str = "theta") -> Callable:
    """The predictor on ``family(pred, target, theta)`` for every theta of
    ``grid(task)``, sites x thetas x seeds in one program; per site the theta of lowest
    mean validation cost. ``refine(best, thetas) -> thetas`` then gives a finer grid
    around each site's best (as many values, so the same program shape), trained in
    a second program; the best of both grids wins."""

    def method(task: Task):
        values = [float(v) for v in grid(task)]
        candidates = {s: list(values) for s in task.sites}
        best = {}
        for round_, per_site in enumerate([candidates, None] if refine else [candidates]):
            if per_site is None:  # the zoomed grid around each site's best so far
                per_site = {s: [v for v in refine(best[s][1], values)] for s in task.sites}
            pairs = [(s, v) for s, vs in per_site.items() for v in vs]
            fits = _grid_fits(task, family, pairs, f"{name}{round_}")
            for (s, v), r in fits.items():
                o = from_fit(r, task.sites[s])
                valid = score(o.decide("valid"), task.sites[s].valid, task.metric,
                              task.seeds, "")
                cost = valid["cost"].mean()
                if s not in best or cost < best[s][0]:
                    best[s] = (cost, v, o)
        return {s: _knob(o, v, len(task.seeds)) for s, (_, v, o) in best.items()}

    return method


def zoom_logit(best: float, values: Sequence[float]) -> list[float]:
    """``len(values)`` probabilities evenly spaced in logit space between the grid
    neighbours of ``best`` (past the grid's end, as far out as the neighbour inside
    is): the refinement of a quantile level such as a pinball tau."""
    z = np.log(np.asarray(sorted(values)) / (1 - np.asarray(sorted(values))))
    zb = float(np.log(best / (1 - best)))
    below, above = z[z < zb - 1e-9], z[z > zb + 1e-9]
    lo = below.max() if len(below) else zb - (above.min() - zb)
    hi = above.min() if len(above) else zb + (zb - lo)
    inner = np.linspace(lo, hi, len(values) + 2)[1:-1]
    return [float(v) for v in np.round(1 / (1 + np.exp(-inner)), 6)]
