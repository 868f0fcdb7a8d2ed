"""The paper's analyses of a trained Loss2Net (appendices D.2, D.3, E), as tidy tables.

* ``transfer``: the loss shaper learned at site ``i`` trains a fresh predictor at
  site ``j`` (frozen, ``Config.freeze_shaper``), or is fine-tuned there (co-trained
  from its learned weights). Every off-diagonal pair (i, j) x every seed runs in ONE
  ``fit_sites`` program (pairs of different lengths are padded).
* ``noise_sensitivity``: Loss2Net with no exploration noise, with each fixed std of
  a geometric grid, and with the exponential decay; test cost per seed and the
  learning curve (true validation cost per epoch). The settings that differ only
  in the std (no noise = std 0, the fixed stds) train as one program, the std a
  traced per-run input (``fit.fit_grid_sites``), every site x std x seed inside it;
  the decay is a second program.
* ``shaper_error``: how far a learned loss is from the true cost on a site's
  data (RMSE over its test demands x an error grid): why a shaper does or does not
  transfer.
* ``loss_by_error`` / ``error_deciles``: the learned loss ``f_l(y + e, obs)`` as a
  function of the error ``e`` for the samples of lowest and highest demand, and the
  errors a trained predictor makes on them (paper Fig. 8).

Rows follow ``l2n_jax.methods``: one per site x method x seed, with ``test_cost``.
"""

import hashlib
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from l2n_jax import grids, methods
from l2n_jax.config import Config
from l2n_jax.data import WindowSet, Windows
from l2n_jax.fit import fit_grid_sites, fit_sites
from l2n_jax.results import FitResult, score
from l2n_jax.metrics import batch_metric


def _tidy(df: pd.DataFrame, **columns) -> pd.DataFrame:
    df = df.rename(columns={"cost": "test_cost"})
    for i, (name, value) in enumerate(columns.items()):
        df.insert(i, name, value)
    return df


def transfer(
    config: Config,
    wss: Mapping[str, WindowSet],
    metric,
    seeds: Sequence[int],
    shapers: Mapping[str, dict],
    *,
    finetune: bool = False,
    label: str = "transfer",
    checkpoint: str | None = None,
) -> pd.DataFrame:
    """Trains a predictor at every site ``j`` with the shaper learned at every other
    site ``i``, all pairs and seeds in one program.

    Args:
      config: the Loss2Net budget (the same as the shapers were learned with).
      wss: {site: WindowSet}, the target sites.
      metric: the true metric (validation epoch selection and test cost).
      seeds: one run per seed; seed ``s`` at ``j`` starts from seed ``s``'s shaper.
      shapers: {source site: shaper params stacked over ``seeds``}, e.g.
        ``fit_result.params['shaper']``.
      finetune: co-train the shaper from its learned weights (else frozen).
      checkpoint: one checkpoint file for the whole program (``l2n.fit``).

    Returns:
      One row per (source, site) pair x seed: source, site, method ('frozen' or
      'finetune'), seed, test_cost, rmse, mae, under_rate.
    """
    pairs = {f"{i}->{j}": (i, j) for i in shapers for j in wss if i != j}
    if not pairs:
        raise ValueError("transfer needs at least one source and one other target site")
    unknown = set(shapers) - set(wss)
    if unknown:
        raise ValueError(f"transfer: source sites {sorted(unknown)} have no data in wss")
    method = "finetune" if finetune else "frozen"
    cfg = config if finetune else config.replace(freeze_shaper=True)
    results = fit_sites(
        cfg,
        {p: wss[j].train for p, (_, j) in pairs.items()},
        metric,
        seeds=seeds,
        valids={p: wss[j].valid for p, (_, j) in pairs.items()},
        shaper={p: shapers[i] for p, (i, _) in pairs.items()},
        label=f"{label}/{method}",
        checkpoint=checkpoint,
    )
    frames = []
    for p, (i, j) in pairs.items():
        test = wss[j].test
        df = score(results[p].predict(test.inputs), test, metric, results[p].seeds, method)
        frames.append(_tidy(df, source=i, site=j))
    return pd.concat(frames, ignore_index=True)


def noise_settings(n_fixed: int = 10, low: float = 1e-3, high: float = 1e-1):
    """The paper's grid: [(name, std, Config changes)]: no noise, ``n_fixed`` fixed
    stds geometric from ``low`` to ``high``, and the exponential decay high -> low."""
    grid = [("none", 0.0, {"noise_schedule": "none"})]
    for std in np.geomspace(low, high, n_fixed):
        grid.append(("fixed", float(std),
                     {"noise_schedule": "fixed", "noise_start": float(std)}))
    grid.append(("exp", float("nan"),
                 {"noise_schedule": "exp", "noise_start": high, "noise_end": low}))
    return grid


def _grid_member(config: Config) -> Config:
    """No noise is the fixed schedule at std 0, the same program bitwise
    (tests/test_grids.py), so it shares the fixed stds' program."""
    if config.noise_schedule == "none":
        return config.replace(noise_schedule="fixed", noise_start=0.0)
    return config


def _train_group(base, grid, group, wss, metric, seeds, label, checkpoint_dir):
    """[{site: FitResult}] per setting of ``group`` ((name, std) pairs, one group of
    ``grids.group``): the grid in one ``fit_grid_sites`` program, or a lone setting
    in a plain one."""
    if grid:  # e.g. 'none+fixed_<digest of the stds>'
        digest = hashlib.sha1(repr(sorted(grid.items())).encode()).hexdigest()[:8]
        tag = f"{'+'.join(dict.fromkeys(name for name, _ in group))}_{digest}"
    else:
        name, std = group[0]
        tag = name if name != "fixed" else f"fixed_{std:.4g}"
    checkpoint = (None if checkpoint_dir is None
                  else os.path.join(checkpoint_dir, f"loss2net_{tag}.ckpt"))
    if not grid:
        return [methods.train_sites(base, dict(wss), tuple(seeds), f"{label}/{tag}",
                                    checkpoint, metric=metric)] * len(group)
    return fit_grid_sites(base, {s: ws.train for s, ws in wss.items()}, metric, grid,
                          seeds=tuple(seeds), valids={s: ws.valid for s, ws in wss.items()},
                          label=f"{label}/{tag}", checkpoint=checkpoint)


def _setting_frames(results, name, std, wss, metric):
    """(test rows, learning curves) of one setting at every site."""
    rows, curves = [], []
    for site, ws in wss.items():
        r = results[site]
        df = score(r.predict(ws.test.inputs), ws.test, metric, r.seeds, "loss2net")
        rows.append(_tidy(df, noise=name, noise_std=std, site=site))
        h = r.history.groupby(["seed", "epoch"], as_index=False).agg(
            valid_cost=("valid_cost", "first"), train_cost=("cost", "mean")
        )
        curves.append(_tidy(h, noise=name, noise_std=std, site=site))
    return rows, curves


def noise_sensitivity(
    config: Config,
    wss: Mapping[str, WindowSet],
    metric,
    seeds: Sequence[int],
    settings=None,
    *,
    label: str = "noise",
    checkpoint_dir: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Loss2Net under each exploration-noise setting (``noise_settings()``).

    Settings that differ only in values (no noise and the fixed stds) train as one
    ``fit_grid_sites`` program, each other schedule kind (the decay) as its own:
    the paper's grid compiles 2 programs, not 12.

    Returns:
      (rows, curves): rows, one per setting x site x seed: noise, noise_std, site,
      seed, test_cost, ...; curves, one per setting x site x seed x co-training
      epoch: valid_cost (true cost on the validation split, the learning curve)
      and train_cost (mean over the epoch's steps, noisy decisions).
    """
    settings = noise_settings() if settings is None else settings
    configs = [_grid_member(config.replace(**changes)) for _, _, changes in settings]
    trained = {}
    for base, idx, grid in grids.group(configs):
        group = [settings[i][:2] for i in idx]
        results = _train_group(base, grid, group, wss, metric, seeds, label,
                               checkpoint_dir)
        trained.update(zip(idx, results))
    rows, curves = [], []
    for i, (name, std, _) in enumerate(settings):  # in the settings' order
        r, c = _setting_frames(trained[i], name, std, wss, metric)
        rows += r
        curves += c
    return pd.concat(rows, ignore_index=True), pd.concat(curves, ignore_index=True)


def demand_deciles(windows: Windows, fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Indices of the ``fraction`` of samples with the lowest / highest first
    target (the demand): {'low': idx, 'high': idx}."""
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    y = np.asarray(windows.targets)[:, 0]
    order = np.argsort(y, kind="stable")
    n = max(1, int(round(fraction * len(y))))
    return {"low": order[:n], "high": order[-n:]}


def _evenly(idx: np.ndarray, max_samples: int) -> np.ndarray:
    """At most ``max_samples`` evenly spaced entries of ``idx``."""
    return idx[np.linspace(0, len(idx) - 1, min(max_samples, len(idx))).astype(int)]


def _error_grid(windows: Windows, idx: np.ndarray, errors: np.ndarray):
    """Decisions ``y + e`` and their obs for samples ``idx`` x ``errors`` (sample
    major): ([n * E, m], [n * E, k])."""
    targets, obs = np.asarray(windows.targets)[idx], np.asarray(windows.obs)[idx]
    decision = (targets[:, None, :] + errors[None, :, None]).reshape(-1, targets.shape[1])
    return decision, np.repeat(obs, len(errors), axis=0)


def loss_by_error(result: FitResult, windows: Windows, errors, fraction: float = 0.1,
                  max_samples: int = 256) -> dict[str, np.ndarray]:
    """The learned loss ``f_l(y + e, obs)`` averaged over the lowest / highest
    ``fraction`` of demands: {'low': [seeds, E], 'high': [seeds, E]}.

    ``errors`` [E] are added to every decision component; at most ``max_samples``
    evenly spaced samples of each group are used.
    """
    errors = np.asarray(errors, np.float32)
    out = {}
    for name, idx in demand_deciles(windows, fraction).items():
        idx = _evenly(idx, max_samples)
        f = result.shaper(*_error_grid(windows, idx, errors))  # [seeds, n * E]
        out[name] = f.reshape(f.shape[0], len(idx), len(errors)).mean(axis=1)
    return out


def shaper_error(result: FitResult, windows: Windows, metric, errors,
                 max_samples: int = 512) -> np.ndarray:
    """[seeds] RMSE of the learned loss against the true cost ``metric(y + e, obs)``
    over (at most ``max_samples`` evenly spaced) samples of ``windows`` x ``errors``."""
    errors = np.asarray(errors, np.float32)
    idx = _evenly(np.arange(len(windows.targets)), max_samples)
    decision, obs = _error_grid(windows, idx, errors)
    true = np.asarray(batch_metric(metric)(decision, obs))
    learned = result.shaper(decision, obs)  # [seeds, n * E]
    return np.sqrt(((learned - true[None]) ** 2).mean(axis=1))


def error_deciles(decisions, windows: Windows, fraction: float = 0.1):
    """Errors ``decision - target`` (first component) of the lowest / highest
    demands: {'low': [seeds, n], 'high': [seeds, n]} from decisions [seeds, N, m]."""
    err = np.asarray(decisions)[..., 0] - np.asarray(windows.targets)[None, :, 0]
    return {name: err[:, idx] for name, idx in demand_deciles(windows, fraction).items()}
