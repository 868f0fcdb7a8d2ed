"""From a time-indexed DataFrame to scaled, windowed train/valid/test splits.

The split is chronological (no shuffling across splits) and the MinMax scaler is
fitted on the rows the training windows touch only, so nothing of the validation or
test period leaks into training.
"""

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd


class Windows(NamedTuple):
    """One split, as a pytree of arrays (N windows).

    Attributes:
      inputs: [N, n_series, lookback, n_features] scaled input windows.
      targets: [N, m] scaled next values of the target columns.
      obs: [N, k] what the system reveals after the decision (default: targets).
      ir_targets: [N, n_series] scaled next value of each input series (the
        targets of IR pre-training).
      current: [N, m] scaled current (last observed) values of the target columns,
        i.e. the persistence forecast.
    """

    inputs: jax.Array | np.ndarray
    targets: jax.Array | np.ndarray
    obs: jax.Array | np.ndarray
    ir_targets: jax.Array | np.ndarray
    current: jax.Array | np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def take(self, idx) -> "Windows":
        return Windows(*(x[idx] for x in self))


class Split(NamedTuple):
    """A split as training programs take it: windows and how many rows are live.

    ``n`` is None when every row is live (the count is then the static length, a
    Python int), or a traced int32 when the split is padded to the length of a
    longer site batched in the same program. Programs read ``count`` and choose
    their batch layout from whether ``n`` is given, once, when they are traced.
    """

    windows: Windows
    n: Any = None

    @property
    def count(self):
        return len(self.windows) if self.n is None else self.n

    @property
    def padded(self) -> bool:
        return self.n is not None


def as_split(data) -> "Split | None":
    """``Windows`` (NumPy or jnp), a ``Split`` or None -> a ``Split`` of jnp arrays.

    NumPy windows (what make_windows returns) cannot be indexed by traced batch
    indices; jnp arrays can, inside or outside jit.
    """
    if data is None:
        return None
    split = data if isinstance(data, Split) else Split(data)
    return split._replace(windows=Windows(*(jnp.asarray(x) for x in split.windows)))


def _array(values):
    """jnp stays jnp (also inside jit: a metric may convert units), else NumPy."""
    return values if isinstance(values, jax.Array) else np.asarray(values)


def _like(values, constant: np.ndarray):
    """``constant`` in the dtype of a jnp ``values`` (float64 stays for NumPy)."""
    return constant.astype(values.dtype) if isinstance(values, jax.Array) else constant


class Scaler(NamedTuple):
    """Per-column MinMax scaler fitted on the training rows.

    ``transform`` / ``inverse`` / ``inverse_diff`` take NumPy or ``jnp`` arrays (also
    traced ones, so a metric can be written in original units) and return the same
    kind; ``columns`` names the last axis (default: every column, in frame order).
    """

    columns: tuple[str, ...]
    low: np.ndarray  # [n_columns]
    high: np.ndarray  # [n_columns]

    def _idx(self, columns):
        columns = self.columns if columns is None else tuple(columns)
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise ValueError(f"Scaler: unknown columns {unknown}; columns are "
                             f"{list(self.columns)}")
        return np.array([self.columns.index(c) for c in columns])

    def transform(self, values, columns=None):
        """Maps values [..., len(columns)] in original units to scaled units."""
        i, x = self._idx(columns), _array(values)
        return (x - _like(x, self.low[i])) / _like(x, self.high[i] - self.low[i])

    def inverse(self, values, columns=None):
        """Maps scaled values [..., len(columns)] back to original units."""
        i, x = self._idx(columns), _array(values)
        return x * _like(x, self.high[i] - self.low[i]) + _like(x, self.low[i])

    def inverse_diff(self, values, columns=None):
        """Maps scaled differences (errors, margins) back to original units."""
        i, x = self._idx(columns), _array(values)
        return x * _like(x, self.high[i] - self.low[i])


class WindowSet(NamedTuple):
    """The three chronological splits and the scaler fitted on ``train``."""

    train: Windows
    valid: Windows
    test: Windows
    scaler: Scaler
    target_columns: tuple[str, ...]
    input_columns: tuple[str, ...]


_FILLS = (None, "ffill", "interpolate")


def _rows(index, mask, n=5) -> str:
    hits = list(index[np.asarray(mask)])
    more = f" (+{len(hits) - n} more)" if len(hits) > n else ""
    return ", ".join(str(h) for h in hits[:n]) + more


def check_frame(frame: pd.DataFrame, fill: str | None = None) -> pd.DataFrame:
    """Validates a time-indexed frame; repairs gaps and NaNs only if ``fill`` says so.

    Raises ValueError naming the column, the first offending rows and the fix for:
    non-numeric columns, unsorted or duplicated timestamps, infinite values, and
    (unless ``fill``) NaN values and missing timestamps of a regular index.
    """
    if fill not in _FILLS:
        raise ValueError(f"make_windows: fill must be one of {_FILLS}, got {fill!r}")
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"make_windows: columns {bad} are not numeric; convert or drop them")
    index = frame.index
    dup = index.duplicated(keep=False)
    if dup.any():
        raise ValueError(
            f"make_windows: duplicated timestamps at {_rows(index, dup)}; aggregate "
            "them first (e.g. frame.groupby(level=0).mean())"
        )
    if not index.is_monotonic_increasing:
        order = np.asarray(index.argsort())
        first = index[np.flatnonzero(order != np.arange(len(index)))[:1]]
        raise ValueError(
            f"make_windows: rows are not in time order (first out of place: "
            f"{list(first)}); sort them first (frame.sort_index())"
        )
    values = frame.to_numpy(np.float64)
    for j, c in enumerate(frame.columns):
        inf = np.isinf(values[:, j])
        if inf.any():
            raise ValueError(
                f"make_windows: column {c!r} has infinite values at rows "
                f"{_rows(index, inf)}; replace them (e.g. with NaN and fill=)"
            )
    if isinstance(index, pd.DatetimeIndex) and len(index) > 2:
        step = pd.Series(index[1:] - index[:-1]).median()
        regular = pd.date_range(index[0], index[-1], freq=step)
        missing = regular.difference(index)
        if len(missing) and fill is None:
            raise ValueError(
                f"make_windows: {len(missing)} missing timestamps (step {step}) at "
                f"{_rows(missing, np.ones(len(missing), bool))}; pass fill='ffill' "
                "or fill='interpolate' to fill them, or resample the frame yourself"
            )
        if len(missing):
            frame = frame.reindex(frame.index.union(missing))
    for c in frame.columns:
        nan = frame[c].isna().to_numpy()
        if nan.any() and fill is None:
            raise ValueError(
                f"make_windows: column {c!r} has NaN values at rows "
                f"{_rows(frame.index, nan)}; pass fill='ffill' or fill='interpolate'"
            )
    if fill == "ffill":
        frame = frame.ffill().bfill()
    elif fill == "interpolate":
        frame = frame.interpolate(method="time" if isinstance(frame.index, pd.DatetimeIndex)
                                  else "linear").bfill().ffill()
    return frame


def _fit_scaler(fit_rows: np.ndarray, columns: tuple[str, ...], scale: str) -> Scaler:
    """The scaler of ``scale`` fitted on the rows the training windows touch."""
    low, high = fit_rows.min(axis=0), fit_rows.max(axis=0)
    if scale == "peak":
        negative = [columns[i] for i in np.flatnonzero(low < 0)]
        if negative:
            raise ValueError(
                f"make_windows: scale='peak' needs non-negative columns; {negative} "
                "have negative training values (use scale='minmax')"
            )
        low = np.zeros_like(high)
    elif scale != "minmax":
        raise ValueError(f"make_windows: scale must be 'minmax' or 'peak', got {scale!r}")
    const = [columns[i] for i in np.flatnonzero(high <= low)]
    if const:
        raise ValueError(
            f"make_windows: columns {const} are constant (or all zero for scale='peak') "
            "over the training rows; scaling would divide by zero (drop them)"
        )
    return Scaler(columns, low, high)


def make_windows(
    frame: pd.DataFrame,
    target_columns: Sequence[str],
    lookback: int,
    obs_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    input_columns: Sequence[str] | None = None,
    fill: str | None = None,
    scale: str = "minmax",
) -> WindowSet:
    """Builds scaled sliding windows from a DataFrame indexed by time.

    Args:
      frame: rows in time order, one column per series.
      target_columns: columns whose next value the decisions target (m of them).
      lookback: window length in rows.
      obs_fn: maps the scaled next row of every column, ``[N, n_columns]`` in
        ``frame.columns`` order, to the observations ``[N, k]``; default: targets.
      split: fractions of windows for train / valid / test, chronological.
      input_columns: the input series, default all columns of ``frame``.
      fill: how to repair missing values and missing timestamps, which otherwise
        raise: None (raise), 'ffill' (repeat the last value) or 'interpolate'
        (linear in time). Nothing is ever repaired silently.
      scale: 'minmax' maps each column's training range to [0, 1]; 'peak' divides
        each column by its training maximum (0 stays 0, for decisions where 0
        means "nothing", e.g. a rejected client; needs non-negative data).

    Returns:
      WindowSet with ``.train``, ``.valid``, ``.test`` (Windows) and ``.scaler``.
    """
    target_columns = tuple(target_columns)
    input_columns = tuple(frame.columns if input_columns is None else input_columns)
    columns = tuple(frame.columns)
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"make_windows: split must be 3 fractions summing to 1, got {split}")
    for c in target_columns + input_columns:
        if c not in columns:
            raise ValueError(
                f"make_windows: column {c!r} not in frame; columns are {list(columns)}"
            )
    if lookback < 1:
        raise ValueError(f"make_windows: lookback must be >= 1, got {lookback}")
    frame = check_frame(frame, fill)
    values = frame.to_numpy(np.float64)
    n_windows = len(values) - lookback
    n_train = int(split[0] * n_windows)
    n_valid = int(split[1] * n_windows)
    if n_train < 1 or n_valid < 1 or n_windows - n_train - n_valid < 1:
        raise ValueError(
            f"make_windows: {len(values)} rows give {n_windows} windows of lookback "
            f"{lookback}: too few for split {split}"
        )
    scaler = _fit_scaler(values[: n_train + lookback], columns, scale)
    scaled = ((values - scaler.low) / (scaler.high - scaler.low)).astype(np.float32)

    col = {c: i for i, c in enumerate(columns)}
    t_idx = np.array([col[c] for c in target_columns])
    in_idx = np.array([col[c] for c in input_columns])
    starts = np.arange(n_windows)
    rows = starts[:, None] + np.arange(lookback)[None, :]  # [N, L]
    inputs = scaled[rows][:, :, in_idx]  # [N, L, S]
    inputs = np.transpose(inputs, (0, 2, 1))[..., None]  # [N, S, L, 1]
    nxt = scaled[starts + lookback]  # [N, C]
    cur = scaled[starts + lookback - 1]
    targets = nxt[:, t_idx]
    obs = targets if obs_fn is None else np.asarray(obs_fn(nxt), np.float32)
    if obs.ndim != 2 or obs.shape[0] != n_windows:
        raise ValueError(f"make_windows: obs_fn must return [N, k], got {obs.shape}")
    full = Windows(inputs, targets, obs, nxt[:, in_idx], cur[:, t_idx])
    bounds = [(0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, n_windows)]
    train, valid, test = (full.take(slice(a, b)) for a, b in bounds)
    return WindowSet(train, valid, test, scaler, target_columns, input_columns)
