"""Runs Loss2Net and the baselines on one site under one budget, and tabulates them.

Every method gets the same predictor architecture, data split, batch size and
number of epochs; knobs (margin, pinball tau) are tuned on the validation split with
the true metric, as Loss2Net's epoch selection is. Each method trains all seeds in
one vmapped program. Rows are tidy: one per site x method x seed.

``run_sites`` does the same for several sites at once, each training running every
site x seed in one program (sites of different lengths padded and masked);
``run_method`` uses it when ``Options.sites`` says the use case batches its sites
(``power``). Metrics may be stateful (``l2n.StatefulMetric``): scoring and margin
tuning then scan each split in order.
"""

import os
import time
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from absl import logging

from l2n_jax import baselines, losses
from l2n_jax.config import Config
from l2n_jax.data import WindowSet
from l2n_jax.fit import fit, fit_fixed_loss, fit_fixed_loss_sites, fit_sites, score

PINBALL_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class Options(NamedTuple):
    """Use-case facts some baselines need.

    Attributes:
      alpha: alpha = beta / gamma of the alpha-OMC surrogate (None: not offered).
      omc_e: its e.
      taus: pinball quantiles tried on the validation split.
      segments: contiguous time segments per Loss2Net batch (StatefulMetric only).
      sites, load: batch these sites in one program: ``load(site) -> WindowSet``
        (cached, so it returns the very object the caller holds). ``run_method``
        called on one of them trains every site at once on its first call and
        serves the others from that run (see ``run_method``).
    """

    alpha: float | None = None
    omc_e: float = 0.1
    taus: tuple[float, ...] = PINBALL_TAUS
    segments: int = 1
    sites: tuple[str, ...] | None = None
    load: Callable[[str], WindowSet] | None = None


def _rows(decisions, forecasts, ws, metric, seeds, method, knob=None):
    df = score(decisions, ws.test, metric, seeds, method)
    err = np.asarray(forecasts, np.float32) - np.asarray(ws.test.targets)[None]
    df["forecast_rmse"] = np.sqrt((err**2).mean(axis=(1, 2)))
    df["knob"] = np.nan if knob is None else np.broadcast_to(knob, (len(seeds),))
    return df


# (ids of the train splits, config, seeds, loss) -> (WindowSets kept alive, {site:
# FitResult}): the plain `mse` method and `mse_margin` share one MSE training per
# site set and budget.
_FIXED_FITS: dict = {}


def checkpoint_path(directory, name):
    """``<directory>/<name>.ckpt``, or None when checkpointing is off."""
    return None if directory is None else os.path.join(directory, f"{name}.ckpt")


def _fit_many(config, wss, seeds, label, checkpoint, *, metric=None, loss=None,
              segments=1):
    """{site: FitResult}: Loss2Net (``loss=None``) or a fixed loss, every site and
    seed in one program (a plain single-site fit for one site)."""
    if len(wss) == 1:
        ((site, ws),) = wss.items()
        if loss is None:
            result = fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                         label=label, checkpoint=checkpoint, segments=segments)
        else:
            result = fit_fixed_loss(config, ws.train, loss, seeds=seeds, valid=ws.valid,
                                    label=label, checkpoint=checkpoint)
        return {site: result}
    trains = {s: ws.train for s, ws in wss.items()}
    valids = {s: ws.valid for s, ws in wss.items()}
    if loss is None:
        return fit_sites(config, trains, metric, seeds=seeds, valids=valids, label=label,
                         checkpoint=checkpoint, segments=segments)
    return fit_fixed_loss_sites(config, trains, loss, seeds=seeds, valids=valids,
                                label=label, checkpoint=checkpoint)


def fit_fixed(config, wss, loss, seeds, label, checkpoint_dir=None):
    """{site: FitResult} of a fixed-loss training, trained once per site set, budget,
    seeds and loss (methods that share a forecaster reuse it)."""
    key = (tuple(id(ws.train) for ws in wss.values()), config, seeds, loss)
    if key not in _FIXED_FITS:
        results = _fit_many(config, wss, seeds, label,
                            checkpoint_path(checkpoint_dir, loss.__name__), loss=loss)
        _FIXED_FITS[key] = (wss, results)
    return _FIXED_FITS[key][1]


def _tile(pred, n_seeds):
    return np.broadcast_to(pred[None], (n_seeds, *pred.shape)).copy()


def _with_margin(valid_fc, test_fc, ws, metric, seeds, method):
    margin = baselines.tune_margin(valid_fc, ws.valid, metric)
    decisions = test_fc + margin[:, None, None]
    return _rows(decisions, test_fc, ws, metric, seeds, method, knob=margin)


def run_sites(
    method: str,
    config: Config,
    wss: Mapping[str, WindowSet],
    metric,
    seeds: Sequence[int],
    options: Options = Options(),
    label: str = "",
    checkpoint_dir: str | None = None,
    fits: dict | None = None,
) -> pd.DataFrame:
    """``run_method`` on several sites: each training runs every site x seed in one
    vmapped program (window counts may differ: padded, see ``l2n.fit_sites``).

    Args:
      wss: {site: WindowSet}.
      fits: if a dict, filled with {site: FitResult} of the method's training (the
        chosen tau's for pinball_tuned; untouched for closed-form methods).
      (the rest as ``run_method``.)

    Returns:
      DataFrame, one row per site x seed: ``site`` then ``run_method``'s columns;
      ``train_s`` is the wall time of the whole (all-site) method.
    """
    t0 = time.perf_counter()
    seeds = tuple(seeds)
    tag = f"{label}/{method}" if label else method
    frames = {}
    if method == "loss2net":
        results = _fit_many(config, wss, seeds, tag, checkpoint_path(checkpoint_dir, "loss2net"),
                            metric=metric, segments=options.segments)
        for site, ws in wss.items():
            d = results[site].predict(ws.test.inputs)
            frames[site] = _rows(d, d, ws, metric, seeds, method)
    elif method in ("mse", "msle", "mae", "alpha_omc"):
        if method == "alpha_omc":
            if options.alpha is None:
                raise ValueError("alpha_omc needs Options.alpha = beta / gamma")
            loss = losses.alpha_omc(options.alpha, options.omc_e)
        else:
            loss = getattr(losses, method)
        results = fit_fixed(config, wss, loss, seeds, tag, checkpoint_dir)
        for site, ws in wss.items():
            d = results[site].predict(ws.test.inputs)
            frames[site] = _rows(d, d, ws, metric, seeds, method)
    elif method == "mse_margin":
        results = fit_fixed(config, wss, losses.mse, seeds, tag, checkpoint_dir)
        for site, ws in wss.items():
            r = results[site]
            frames[site] = _with_margin(
                r.predict(ws.valid.inputs), r.predict(ws.test.inputs),
                ws, metric, seeds, method,
            )
    elif method == "pinball_tuned":
        best = {}
        for tau in options.taus:
            results = fit_fixed(config, wss, losses.pinball(tau), seeds,
                                f"{tag}[tau={tau}]", checkpoint_dir)
            for site, ws in wss.items():
                r = results[site]
                valid = score(r.predict(ws.valid.inputs), ws.valid, metric, seeds, method)
                if site not in best or valid["cost"].mean() < best[site][0]:
                    best[site] = (valid["cost"].mean(), tau, r)
        for site, ws in wss.items():
            _, tau, r = best[site]
            d = r.predict(ws.test.inputs)
            frames[site] = _rows(d, d, ws, metric, seeds, method, knob=tau)
        results = {site: b[2] for site, b in best.items()}
    elif method in ("persistence_margin", "ar_margin", "ar", "persistence"):
        results = None
        n = len(seeds)
        for site, ws in wss.items():
            if method == "persistence_margin":
                frames[site] = _with_margin(
                    _tile(baselines.persistence(ws.valid), n),
                    _tile(baselines.persistence(ws.test), n), ws, metric, seeds, method,
                )
            elif method == "persistence":
                p = _tile(baselines.persistence(ws.test), n)
                frames[site] = _rows(p, p, ws, metric, seeds, method)
            else:
                predict = baselines.linear_ar(ws.train)
                valid_fc, test_fc = _tile(predict(ws.valid), n), _tile(predict(ws.test), n)
                if method == "ar":
                    frames[site] = _rows(test_fc, test_fc, ws, metric, seeds, method)
                else:
                    frames[site] = _with_margin(valid_fc, test_fc, ws, metric, seeds, method)
    else:
        raise ValueError(f"unknown method {method!r}; known: {METHODS}")
    if fits is not None and results is not None:
        fits.update(results)
    elapsed = time.perf_counter() - t0
    for site, df in frames.items():
        df.insert(0, "site", site)
        df["train_s"] = elapsed
        where = f"{tag}@{site}" if len(frames) > 1 else tag
        logging.info("[%s] test cost %.5f +- %.5f", where, df["cost"].mean(),
                     df["cost"].std())
    return pd.concat(list(frames.values()), ignore_index=True)


# (method, config, seeds, metric, options) -> rows of every site of a batched run.
_SITE_RUNS: dict = {}


def run_method(
    method: str,
    config: Config,
    ws: WindowSet,
    metric,
    seeds: Sequence[int],
    options: Options = Options(),
    label: str = "",
    checkpoint_dir: str | None = None,
) -> pd.DataFrame:
    """Trains/tunes one method on ``ws.train``/``ws.valid``, scores it on ``ws.test``.

    With ``checkpoint_dir``, every training writes ``<dir>/<loss>.ckpt`` and resumes
    from it when present (see ``l2n.fit``).

    When ``options.sites`` names a site whose ``options.load(site)`` is ``ws``, the
    first call trains EVERY site of ``options.sites`` in one program
    (``run_sites``) and later calls for the other sites return their rows from it
    (the same numbers a ``run_sites`` call gives). Its checkpoints then go to
    ``<parent of checkpoint_dir>/_sites``, shared by all sites.

    Returns:
      DataFrame, one row per seed: method, seed, cost, rmse, mae, under_rate,
      forecast_rmse (before any margin), knob (margin or tau, if tuned), train_s.
    """
    site = None
    if options.sites is not None and options.load is not None:
        site = next((s for s in options.sites if options.load(s) is ws), None)
    if site is None:
        df = run_sites(method, config, {"": ws}, metric, seeds, options, label,
                       checkpoint_dir)
        return df.drop(columns="site")
    key = (method, config, tuple(seeds), metric, options)
    if key not in _SITE_RUNS:
        shared = None
        if checkpoint_dir is not None:
            shared = os.path.join(os.path.dirname(os.path.normpath(checkpoint_dir)), "_sites")
        wss = {s: options.load(s) for s in options.sites}
        prefix = label.rsplit("/", 1)[0] if label.endswith(f"/{site}") else label
        _SITE_RUNS[key] = run_sites(method, config, wss, metric, seeds, options, prefix,
                                    shared)
    df = _SITE_RUNS[key]
    return df[df["site"] == site].drop(columns="site").reset_index(drop=True)


METHODS = (
    "loss2net",
    "mse",
    "msle",
    "mae",
    "alpha_omc",
    "mse_margin",
    "pinball_tuned",
    "persistence_margin",
    "ar_margin",
    "ar",
    "persistence",
)


def summary_table(df: pd.DataFrame, reference: str = "loss2net") -> str:
    """Markdown: mean +- std of test cost and forecast RMSE per site x method.

    Adds the ratio of every method's mean cost to ``reference``'s on the same site.
    """
    g = df.groupby(["site", "method"], sort=False)
    stats = g.agg(
        cost_mean=("test_cost", "mean"),
        cost_std=("test_cost", "std"),
        rmse_mean=("forecast_rmse", "mean"),
        under=("under_rate", "mean"),
        n=("seed", "count"),
    ).reset_index()
    lines = [
        "| site | method | test cost (mean ± std) | × " + reference
        + " | forecast RMSE | under-provision rate | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for site, block in stats.groupby("site", sort=False):
        ref = block.loc[block["method"] == reference, "cost_mean"]
        ref = float(ref.iloc[0]) if len(ref) else float("nan")
        for _, r in block.iterrows():
            std = 0.0 if np.isnan(r.cost_std) else r.cost_std
            lines.append(
                f"| {site} | {r.method} | {r.cost_mean:.5f} ± {std:.5f} | "
                f"{r.cost_mean / ref:.2f} | {r.rmse_mean:.5f} | {r.under:.3f} | {r.n} |"
            )
    return "\n".join(lines) + "\n"


