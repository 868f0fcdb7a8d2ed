"""PJM hourly load (MW) per region, read from ``data/pjm_hourly`` and cleaned.

The files are Kaggle's "Hourly Energy Consumption" (CC0), one gzipped CSV per
region with columns ``Datetime`` (local wall-clock time, hour-ending labels) and
``<REGION>_MW``; provenance and checksums are in ``data/pjm_hourly/README.md``.
They have four quirks, and ``clean`` handles each one explicitly and counts it:

* **Unsorted rows.** Each year is stored in blocks of days running backwards.
  Rows are sorted by time (stable sort); ``out_of_order`` counts the rows whose
  timestamp is earlier than the previous row's in file order.
* **Duplicated hours.** At the DST fall-back of 2014-2017 the ``02:00`` label
  appears twice with different values (the two wall-clock hours that share it).
  Duplicates are averaged: one value per label keeps the series hourly, and the
  mean is the best single-hour stand-in for two real hours. Counted as
  ``duplicate_hours`` (labels) and ``duplicate_rows_dropped`` (extra rows).
* **Missing hours.** The spring-forward ``03:00`` is absent every year, the
  fall-back ``02:00`` is absent in 2002-2013, and a few other hours are missing
  (e.g. 2010-12-10 00:00). The series is reindexed to a full hourly range and
  each gap of at most ``max_gap`` consecutive hours (default ``MAX_GAP`` = 3) is
  filled by linear interpolation between its neighbours. A longer gap raises a
  ValueError naming the region and the gap: a day of invented load would be
  silently wrong data. Counted as ``missing_hours_filled`` and ``gaps``.
* **Empty values.** None in the shipped files; a NaN cell would be treated as a
  missing hour (``nan_values``).

Timestamps that are not on the hour raise a ValueError (the grid would be
ambiguous). The cleaning counts of the shipped files are in the data README.
"""

import functools
from typing import Sequence

import numpy as np
import pandas as pd

from .base import data_dir

DATA = data_dir() / "pjm_hourly"
# Every region with its own file. PJME first (the paper's single-site series);
# NI ends 2011-01-01 and PJM_Load covers 1998-2001 only, so they come last.
REGIONS = (
    "PJME", "PJMW", "AEP", "COMED", "DAYTON", "DEOK", "DOM", "DUQ", "EKPC", "FE",
    "NI", "PJM_Load",
)
# The regions that overlap in time (2013-06-01 .. 2018-08-03): the acra clients.
CLIENT_REGIONS = REGIONS[:10]
MAX_GAP = 3  # hours; every hole in the shipped files is 1 hour long
_HOUR = pd.Timedelta(hours=1)


def _gap_runs(missing: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Consecutive runs of missing hours as (first, last, length)."""
    if len(missing) == 0:
        return []
    # Compare Timedeltas, not integers: the index unit (ns or us) varies by pandas.
    breaks = np.flatnonzero(np.asarray((missing[1:] - missing[:-1]) != _HOUR)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(missing)]])
    return [(missing[a], missing[b - 1], int(b - a)) for a, b in zip(starts, ends)]


def clean(
    raw: pd.Series, region: str, max_gap: int = MAX_GAP
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sorts, de-duplicates and fills a raw hourly load series (see module doc).

    Args:
      raw: load values indexed by timestamp, in any order, possibly with
        duplicated timestamps, missing hours and NaNs.
      region: used in error messages.
      max_gap: longest run of missing hours that is interpolated.

    Returns:
      (frame, report): ``frame`` has one float64 column ``'load'`` on a complete,
      sorted hourly DatetimeIndex; ``report`` counts what was fixed: ``rows``,
      ``out_of_order``, ``duplicate_hours``, ``duplicate_rows_dropped``,
      ``nan_values``, ``missing_hours_filled``, ``gaps``, ``longest_gap_hours``,
      ``hours`` (length of the result).

    Raises:
      ValueError: empty series, timestamps off the hour, or a gap longer than
        ``max_gap`` hours (the message names the region and the gap).
    """
    index = pd.DatetimeIndex(raw.index)
    values = pd.Series(np.asarray(raw, np.float64), index=index)
    if len(values) == 0:
        raise ValueError(f"pjm: region {region!r} has no rows")
    off = index[(index != index.floor("h"))]
    if len(off):
        raise ValueError(
            f"pjm: region {region!r} has timestamps off the hour, first {off[0]}"
        )
    report = {"rows": len(values)}
    report["out_of_order"] = int(np.sum(np.asarray(index[1:] < index[:-1])))
    values = values.sort_index(kind="stable")

    nan = values.isna()
    report["nan_values"] = int(nan.sum())
    values = values[~nan]  # a NaN cell is a missing hour, filled (or refused) below
    dup = values.index.duplicated(keep=False)
    report["duplicate_hours"] = int(values.index[dup].nunique())
    report["duplicate_rows_dropped"] = int(values.index.duplicated().sum())
    values = values.groupby(level=0).mean()

    full = pd.date_range(values.index[0], values.index[-1], freq="h")
    runs = _gap_runs(full.difference(values.index))
    longest = max(runs, key=lambda r: r[2], default=None)
    if longest is not None and longest[2] > max_gap:
        first, last, n = longest
        raise ValueError(
            f"pjm: region {region!r} has a gap of {n} missing hours from {first} to "
            f"{last}, longer than max_gap={max_gap}; not interpolating it"
        )
    values = values.reindex(full).interpolate(method="linear", limit_area="inside")
    report["missing_hours_filled"] = sum(r[2] for r in runs)
    report["gaps"] = len(runs)
    report["longest_gap_hours"] = longest[2] if longest else 0
    report["hours"] = len(values)
    return values.to_frame("load"), report


def read_raw(region: str) -> pd.Series:
    """The shipped file of ``region`` as read: a Series in file order, MW."""
    if region not in REGIONS:
        raise ValueError(f"pjm: unknown region {region!r}; regions are {list(REGIONS)}")
    path = DATA / f"{region}_hourly.csv.gz"
    frame = pd.read_csv(path)
    expected = ["Datetime", f"{region}_MW"]
    if list(frame.columns) != expected:
        raise ValueError(
            f"pjm: {path.name} has columns {list(frame.columns)}, expected {expected}"
        )
    index = pd.to_datetime(frame["Datetime"], format="%Y-%m-%d %H:%M:%S")
    return pd.Series(frame[expected[1]].to_numpy(np.float64), index=index, name=region)


@functools.lru_cache(maxsize=None)
def _read_clean(region: str, max_gap: int) -> tuple[pd.DataFrame, dict[str, int]]:
    return clean(read_raw(region), region, max_gap)


def read_region(region: str, max_gap: int = MAX_GAP) -> pd.DataFrame:
    """Cleaned hourly load of one region.

    Args:
      region: one of ``REGIONS``.
      max_gap: longest run of missing hours that is interpolated.

    Returns:
      DataFrame with one float64 column ``'load'`` (MW) on a sorted, complete
      hourly DatetimeIndex (a copy: callers may modify it).
    """
    return _read_clean(region, max_gap)[0].copy()


def cleaning_report(region: str, max_gap: int = MAX_GAP) -> dict[str, int]:
    """What ``clean`` fixed in the shipped file of ``region`` (see ``clean``)."""
    return dict(_read_clean(region, max_gap)[1])


@functools.lru_cache(maxsize=None)
def _read_common(regions: tuple[str, ...], start, end, max_gap) -> pd.DataFrame:
    if not regions or len(set(regions)) != len(regions):
        raise ValueError(f"pjm: regions must be distinct and non-empty, got {regions}")
    frames = [_read_clean(r, max_gap)[0]["load"].rename(r) for r in regions]
    # Every cleaned series is a complete hourly range, so the inner join is the
    # contiguous intersection of the spans.
    common = pd.concat(frames, axis=1, join="inner").loc[start:end]
    if common.empty:
        spans = {r: f"{f.index[0]} .. {f.index[-1]}" for r, f in zip(regions, frames)}
        raise ValueError(
            f"pjm: regions {list(regions)} have no common hours between start={start} "
            f"and end={end}; spans: {spans}"
        )
    return common


def read_common(
    regions: Sequence[str] = CLIENT_REGIONS,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    max_gap: int = MAX_GAP,
) -> pd.DataFrame:
    """Cleaned load of several regions over their common hours.

    Args:
      regions: region names (columns of the result, in this order).
      start, end: optional inclusive bounds within the common span.
      max_gap: longest run of missing hours that is interpolated.

    Returns:
      DataFrame [hours, len(regions)] in MW, one column per region, on the
      complete hourly range where every region has data (a copy).

    Raises:
      ValueError: unknown or repeated regions, or no common hours.
    """
    start = None if start is None else pd.Timestamp(start)
    end = None if end is None else pd.Timestamp(end)
    return _read_common(tuple(regions), start, end, max_gap).copy()
