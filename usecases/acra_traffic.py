"""Clients of ``acra`` v2: week-aligned 7-day stretches of real 5-minute traffic.

Layout (issue 19, item 1). The three shipped 5-minute series
(``data/internet_traffic_5min``: it_eu_5m, it_uk_5m, worldcup98_5m) are cut into
every full calendar week, Monday 00:00 to Sunday 23:55 (2,016 slots); each week
is one client. All clients run on a common slot-of-week clock (slot 0 is Monday
00:00 for every client), so, as for tenants of one regional operator, the busy
hours of all clients coincide and capacity is contended when it matters. That
gives 6 EU weeks, 9 UK weeks and 4 WorldCup weeks (19 clients). Client order
interleaves the families (eu, uk, wc, eu, uk, wc, ...) so that every S mixes
them; S = 12 uses 4 weeks of each family.

Split, by day of week and identical for every client (the same clock slots are
train / valid / test for all clients, so a decision period never mixes splits):

* Monday: history only (the day-ago lags of Tuesday's periods);
* train: Tuesday, Thursday, Saturday; valid: Friday; test: Wednesday, Sunday.

A chronological split inside one week would test on the weekend only (train on
Mon-Thu), confounding the weekly pattern with the split; across weeks, a
client's test week would be another client's training week. Interleaving days
is the blocked split of Bergmeir & Benitez (2012) with one-day blocks; both
train and test hold weekdays and a weekend day. Inputs of a period may reach
into the previous day (an observed past, not a target); targets never leave
their split day.

Scaling: each client is divided by its own training-split peak (so 1 is the
client's training peak and 0 means nothing). WorldCup weeks are non-stationary
(the tournament starts on 10 June 1998); ``peak_ratio`` reports each client's
test peak / training peak, and nothing is clipped.

A decision period is ``H`` slots (default 12 = one hour). Periods may start at
any slot of a split day whose H slots stay inside that day (every phase of the
hour grid is used, so a day has 288 - H + 1 periods).
"""

import functools
from typing import NamedTuple

import numpy as np
import pandas as pd

from .base import data_dir

DATA = data_dir() / "internet_traffic_5min"
FILES = {  # family -> (file, timestamp column, value column)
    "eu": ("it_eu_5m.csv.gz", "time_count", "traffic (in bits)"),
    "uk": ("it_uk_5m.csv.gz", "time_count", "bits"),
    "wc": ("worldcup98_5m.csv.gz", "timestamp", "count_raw"),
}
SLOTS_PER_DAY = 288
WEEK = 7 * SLOTS_PER_DAY
# Day of week (0 = Monday) -> split.
SPLIT_DAYS = {"train": (1, 3, 5), "valid": (4,), "test": (2, 6)}
H_DEFAULT = 12
LAGS = 24  # recent slots fed to the AR forecaster (two hours)
MAX_CLIENTS = 12


@functools.lru_cache(maxsize=None)
def read_series(family: str) -> pd.Series:
    """One family's 5-minute series on a complete, sorted 5-minute index."""
    name, tcol, vcol = FILES[family]
    frame = pd.read_csv(DATA / name, parse_dates=[tcol])
    series = frame.set_index(tcol)[vcol].astype(np.float64).sort_index()
    full = pd.date_range(series.index[0], series.index[-1], freq="5min")
    if len(full) != len(series) or series.isna().any():
        raise ValueError(f"acra_traffic: {name} has gaps; the shipped files have none")
    return series


def weeks(family: str) -> list[pd.Series]:
    """Every full Monday 00:00 .. Sunday 23:55 week of one family, in time order."""
    s = read_series(family)
    first = s.index[0].normalize()
    first = first + pd.Timedelta(days=(7 - first.weekday()) % 7)
    if first < s.index[0]:
        first += pd.Timedelta(days=7)
    out = []
    while first + pd.Timedelta(days=7) - pd.Timedelta(minutes=5) <= s.index[-1]:
        out.append(s[first : first + pd.Timedelta(days=7) - pd.Timedelta(minutes=5)])
        first += pd.Timedelta(days=7)
    return out


@functools.lru_cache(maxsize=None)
def client_table() -> tuple[tuple[str, pd.Timestamp, np.ndarray], ...]:
    """All 19 clients as (family, week start, raw [WEEK] series), interleaved."""
    per = {f: weeks(f) for f in FILES}
    out = []
    for i in range(max(len(w) for w in per.values())):
        for f in FILES:
            if i < len(per[f]):
                w = per[f][i]
                out.append((f, w.index[0], w.to_numpy()))
    return tuple(out)


def split_mask(split: str) -> np.ndarray:
    """[WEEK] bool: the slots of the week that belong to ``split``."""
    day = np.arange(WEEK) // SLOTS_PER_DAY
    return np.isin(day, SPLIT_DAYS[split])


def period_starts(split: str, horizon: int = H_DEFAULT) -> np.ndarray:
    """First slots of every H-slot period lying inside one day of ``split``."""
    return np.array([d * SLOTS_PER_DAY + k for d in SPLIT_DAYS[split]
                     for k in range(SLOTS_PER_DAY - horizon + 1)])


class Clients(NamedTuple):
    """The first S clients, scaled by their training peaks.

    Attributes:
      demand: [S, WEEK] scaled demand on the common slot-of-week clock.
      families: [S] family names ('eu', 'uk', 'wc').
      starts: [S] week start timestamps (Mondays).
      train_peak: [S] raw training-split peaks (the scale).
      peak_ratio: [S] test-split peak / training-split peak.
    """

    demand: np.ndarray
    families: tuple[str, ...]
    starts: tuple[pd.Timestamp, ...]
    train_peak: np.ndarray
    peak_ratio: np.ndarray


@functools.lru_cache(maxsize=None)
def load_clients(n_clients: int) -> Clients:
    """The first ``n_clients`` clients (1 .. MAX_CLIENTS) of ``client_table``."""
    if not 1 <= n_clients <= MAX_CLIENTS:
        raise ValueError(f"acra_traffic: n_clients must be in 1..{MAX_CLIENTS}")
    table = client_table()[:n_clients]
    raw = np.stack([t[2] for t in table])
    peak = raw[:, split_mask("train")].max(axis=1)
    demand = raw / peak[:, None]
    ratio = demand[:, split_mask("test")].max(axis=1)
    return Clients(demand, tuple(t[0] for t in table), tuple(t[1] for t in table),
                   peak, ratio)


def windows(demand: np.ndarray, split: str, horizon: int = H_DEFAULT):
    """Forecaster inputs and the period's true demands for every period of a split.

    Inputs per client: the last ``LAGS`` slots before the period and the same H
    slots one day earlier (the daily pattern), all observed when deciding.

    Args:
      demand: [S, WEEK] scaled demand.
      split: 'train', 'valid' or 'test'.
      horizon: H.

    Returns:
      (x [N, S, LAGS + H], y [N, S, H]) with N = number of periods.
    """
    t0 = period_starts(split, horizon)
    recent = t0[:, None] + np.arange(-LAGS, 0)[None]
    ahead = t0[:, None] + np.arange(horizon)[None]
    x = np.concatenate([demand[:, recent], demand[:, ahead - SLOTS_PER_DAY]], axis=-1)
    return x.transpose(1, 0, 2), demand[:, ahead].transpose(1, 0, 2)


def fit_ar(x: np.ndarray, y: np.ndarray, ridge: float = 1e-5) -> np.ndarray:
    """Per-client linear AR (direct multi-horizon, ridge MSE): [S, F + 1, H] weights."""
    n, s, f = x.shape
    xb = np.concatenate([x, np.ones((n, s, 1))], axis=-1)
    w = []
    for j in range(s):
        a = xb[:, j]
        w.append(np.linalg.solve(a.T @ a + ridge * n * np.eye(f + 1), a.T @ y[:, j]))
    return np.stack(w)


def predict_ar(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[S, F + 1, H] weights, [N, S, F] inputs -> [N, S, H] forecasts (>= 0)."""
    xb = np.concatenate([x, np.ones((*x.shape[:2], 1))], axis=-1)
    return np.maximum(np.einsum("nsf,sfh->nsh", xb, weights), 0.0)


def forecasts(n_clients: int, horizon: int = H_DEFAULT) -> dict:
    """AR forecasts and truths for every split: {split: (forecast, truth)} [N, S, H]."""
    c = load_clients(n_clients)
    w = fit_ar(*windows(c.demand, "train", horizon))
    out = {}
    for split in SPLIT_DAYS:
        x, y = windows(c.demand, split, horizon)
        out[split] = (predict_ar(w, x), y)
    return out
