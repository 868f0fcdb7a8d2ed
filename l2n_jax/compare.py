"""Runs Loss2Net and the baselines on one site under one budget, and tabulates them.

Every method gets the same predictor architecture, data split, batch size and
number of epochs; knobs (margin, pinball tau) are tuned on the validation split with
the true metric, as Loss2Net's epoch selection is. Each method trains all seeds in
one vmapped program. Rows are tidy: one per site x method x seed.
"""

import os
import time
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from absl import logging

from l2n_jax import baselines, losses
from l2n_jax.config import Config
from l2n_jax.data import WindowSet
from l2n_jax.fit import fit, fit_fixed_loss, score

PINBALL_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class Options(NamedTuple):
    """Use-case facts some baselines need.

    Attributes:
      alpha: alpha = beta / gamma of the alpha-OMC surrogate (None: not offered).
      omc_e: its e.
      taus: pinball quantiles tried on the validation split.
    """

    alpha: float | None = None
    omc_e: float = 0.1
    taus: tuple[float, ...] = PINBALL_TAUS


def _rows(decisions, forecasts, ws, metric, seeds, method, knob=None):
    df = score(decisions, ws.test, metric, seeds, method)
    err = np.asarray(forecasts, np.float32) - np.asarray(ws.test.targets)[None]
    df["forecast_rmse"] = np.sqrt((err**2).mean(axis=(1, 2)))
    df["knob"] = np.nan if knob is None else np.broadcast_to(knob, (len(seeds),))
    return df


# (id(train split), config, seeds, loss) -> (WindowSet kept alive, FitResult): the
# plain `mse` method and `mse_margin` share one MSE training per site and budget.
_FIXED_FITS: dict = {}


def _checkpoint(directory, name):
    return None if directory is None else os.path.join(directory, f"{name}.ckpt")


def _fit_fixed(config, ws, loss, seeds, label, checkpoint_dir=None):
    key = (id(ws.train), config, seeds, loss)
    if key not in _FIXED_FITS:
        result = fit_fixed_loss(
            config, ws.train, loss, seeds=seeds, valid=ws.valid, label=label,
            checkpoint=_checkpoint(checkpoint_dir, loss.__name__),
        )
        _FIXED_FITS[key] = (ws, result)
    return _FIXED_FITS[key][1]


def _tile(pred, n_seeds):
    return np.broadcast_to(pred[None], (n_seeds, *pred.shape)).copy()


def _with_margin(valid_fc, test_fc, ws, metric, seeds, method):
    margin = baselines.tune_margin(valid_fc, ws.valid, metric)
    decisions = test_fc + margin[:, None, None]
    return _rows(decisions, test_fc, ws, metric, seeds, method, knob=margin)


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

    Returns:
      DataFrame, one row per seed: method, seed, cost, rmse, mae, under_rate,
      forecast_rmse (before any margin), knob (margin or tau, if tuned), train_s.
    """
    t0 = time.perf_counter()
    seeds = tuple(seeds)
    tag = f"{label}/{method}" if label else method
    if method == "loss2net":
        result = fit(config, ws.train, metric, seeds=seeds, valid=ws.valid, label=tag,
                     checkpoint=_checkpoint(checkpoint_dir, "loss2net"))
        d = result.predict(ws.test.inputs)
        df = _rows(d, d, ws, metric, seeds, method)
    elif method in ("mse", "msle", "mae", "alpha_omc"):
        if method == "alpha_omc":
            if options.alpha is None:
                raise ValueError("alpha_omc needs Options.alpha = beta / gamma")
            loss = losses.alpha_omc(options.alpha, options.omc_e)
        else:
            loss = getattr(losses, method)
        result = _fit_fixed(config, ws, loss, seeds, tag, checkpoint_dir)
        d = result.predict(ws.test.inputs)
        df = _rows(d, d, ws, metric, seeds, method)
    elif method == "mse_margin":
        result = _fit_fixed(config, ws, losses.mse, seeds, tag, checkpoint_dir)
        df = _with_margin(
            result.predict(ws.valid.inputs), result.predict(ws.test.inputs),
            ws, metric, seeds, method,
        )
    elif method == "pinball_tuned":
        best = None
        for tau in options.taus:
            loss = losses.pinball(tau)
            result = fit_fixed_loss(
                config, ws.train, loss, seeds=seeds, valid=ws.valid,
                label=f"{tag}[tau={tau}]", checkpoint=_checkpoint(checkpoint_dir, loss.__name__),
            )
            valid = score(result.predict(ws.valid.inputs), ws.valid, metric, seeds, method)
            if best is None or valid["cost"].mean() < best[0]:
                best = (valid["cost"].mean(), tau, result)
        _, tau, result = best
        d = result.predict(ws.test.inputs)
        df = _rows(d, d, ws, metric, seeds, method, knob=tau)
    elif method == "persistence_margin":
        n = len(seeds)
        df = _with_margin(
            _tile(baselines.persistence(ws.valid), n),
            _tile(baselines.persistence(ws.test), n), ws, metric, seeds, method,
        )
    elif method in ("ar_margin", "ar"):
        predict = baselines.linear_ar(ws.train)
        n = len(seeds)
        valid_fc, test_fc = _tile(predict(ws.valid), n), _tile(predict(ws.test), n)
        if method == "ar":
            df = _rows(test_fc, test_fc, ws, metric, seeds, method)
        else:
            df = _with_margin(valid_fc, test_fc, ws, metric, seeds, method)
    elif method == "persistence":
        p = _tile(baselines.persistence(ws.test), len(seeds))
        df = _rows(p, p, ws, metric, seeds, method)
    else:
        raise ValueError(f"unknown method {method!r}; known: {METHODS}")
    df["train_s"] = time.perf_counter() - t0
    logging.info("[%s] test cost %.5f +- %.5f", tag, df["cost"].mean(), df["cost"].std())
    return df


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


