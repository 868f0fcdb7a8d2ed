"""``FitResult``: a trained method, one set of parameters per seed; save, load, and
``evaluate`` / ``score`` with the true metric.

A FitResult carries the networks its program was built with, so ``predict`` and
``shaper`` only apply them (``l2n.load`` builds them once from the saved config).
"""

import dataclasses
import functools
import json

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax import nets, shaper_net, variants
from l2n_jax.config import Config
from l2n_jax.data import Windows
from l2n_jax.metrics import batch_metric
from l2n_jax.sites import as_windows
from l2n_jax.train import Shapes

_FORMAT_VERSION = 1


def make_networks(config: Config, shapes: Shapes) -> dict:
    """The predictor and shaper a run of ``config`` on ``shapes`` trains."""
    m, k, j = shapes.decision_dim, shapes.obs_dim, shapes.v_dim
    return {"predictor": nets.make_predictor(config, shapes.input_shape, m),
            "shaper": shaper_net.make_shaper(config, variants.feature_dim(config, m, k + j))}


@dataclasses.dataclass
class FitResult:
    """A trained method, one set of parameters per seed (leading axis = seeds).

    Attributes:
      config: the Config it was trained with.
      seeds: the seeds, in the order of the leading axis.
      params: {'predictor': ..., 'shaper': ...} stacked over seeds (the best
        validation epoch when ``config.select_best`` and valid data were given).
      history: per-step metrics (seed, epoch, step, cost, shaper_loss, ...).
      method: 'loss2net' or the baseline loss's name.
      shapes: the data shapes the networks were built for.
      best_epoch: [seeds] the epoch whose parameters were kept (-1: last).
      timing: compile/run seconds, steps/s, and the devices the seeds were
        sharded over ('devices').
      networks: {'predictor': nets.Network, 'shaper': ...} the run trained.
    """

    config: Config
    seeds: tuple[int, ...]
    params: dict
    history: pd.DataFrame
    method: str
    shapes: Shapes
    best_epoch: np.ndarray
    timing: dict
    networks: dict = None

    def __post_init__(self):
        if self.networks is None:
            self.networks = make_networks(self.config, self.shapes)

    def predict(self, inputs) -> np.ndarray:
        """Decisions with eps = 0: inputs [N, S, L, F] -> [seeds, N, m] (plus the
        tuned offset, ``params['offset']``, of a ``Config.tune_offset`` run)."""
        fn = _predictor_fn(self.config, self.shapes.input_shape, self.shapes.decision_dim)
        out = np.asarray(fn(self.params["predictor"], jnp.asarray(inputs, jnp.float32)))
        if "offset" in self.params:  # Config.tune_offset: [seeds], added to every output
            out = out + np.asarray(self.params["offset"])[:, None, None]
        return out

    def shaper(self, decision, obs, v=None) -> np.ndarray:
        """The learned loss f_l(decision, obs[, v]): [N, m], [N, k][, [N, j]] -> [seeds, N].

        ``v`` is required (and only accepted) when the run's metric was a
        StatefulMetric: its ``v`` vector per sample (e.g. consecutive outages).
        """
        if "shaper" not in self.params:
            raise ValueError(f"method {self.method!r} has no loss shaper")
        j = self.shapes.v_dim
        if (v is None) != (j == 0):
            raise ValueError(
                f"shaper: this run's shaper takes v [N, {j}]" if j
                else "shaper: this run's metric was not stateful; it takes no v"
            )
        seen = jnp.asarray(obs, jnp.float32)
        if j:
            seen = jnp.concatenate([seen, jnp.asarray(v, jnp.float32).reshape(-1, j)], -1)
        x = variants.features(self.config)(jnp.asarray(decision, jnp.float32), seen)
        fn = _shaper_fn(self.config, x.shape[-1])
        return np.asarray(fn(self.params["shaper"], x))

    def save(self, path: str) -> None:
        """Writes parameters, config and metadata to one msgpack file."""
        blob = {
            "version": _FORMAT_VERSION,
            "meta": json.dumps(
                {
                    "config": self.config.to_dict(),
                    "seeds": list(self.seeds),
                    "method": self.method,
                    "shapes": list(self.shapes),
                    "best_epoch": np.asarray(self.best_epoch).tolist(),
                    "timing": self.timing,
                }
            ),
            "params": jax.tree.map(np.asarray, self.params),
        }
        with open(path, "wb") as f:
            f.write(flax.serialization.msgpack_serialize(blob))


# One jitted function per network (and metric): results that share an architecture
# and data shapes share the compiled program (methods predict on the same splits).
@functools.lru_cache(maxsize=256)
def _predictor_fn(config, input_shape, decision_dim):
    predictor = nets.make_predictor(config, input_shape, decision_dim)
    return jax.jit(jax.vmap(lambda p, x: nets.predict(predictor, p, x, decision_dim),
                            in_axes=(0, None)))


@functools.lru_cache(maxsize=256)
def _shaper_fn(config, input_dim):
    return jax.jit(jax.vmap(shaper_net.make_shaper(config, input_dim).apply, in_axes=(0, None)))


@functools.lru_cache(maxsize=256)
def _scorer(metric):
    return jax.jit(jax.vmap(batch_metric(metric), in_axes=(0, None)))


def load(path: str) -> FitResult:
    """Reads a FitResult written by ``FitResult.save`` (history is not stored)."""
    with open(path, "rb") as f:
        blob = flax.serialization.msgpack_restore(f.read())
    if blob.get("version") != _FORMAT_VERSION:
        raise ValueError(f"load: {path} has format {blob.get('version')}, expected 1")
    meta = json.loads(blob["meta"])
    shapes = meta["shapes"]
    return FitResult(
        config=Config.from_dict(meta["config"]),
        seeds=tuple(meta["seeds"]),
        params=jax.tree.map(jnp.asarray, blob["params"]),
        history=pd.DataFrame(),
        method=meta["method"],
        shapes=Shapes(tuple(shapes[0]), *shapes[1:]),
        best_epoch=np.asarray(meta["best_epoch"]),
        timing=meta["timing"],
    )


def history_frame(chunks, seeds, steps_per_epoch, firsts) -> pd.DataFrame:
    """Per-step metrics of chunks of [seeds, epochs, steps] arrays, one row per
    seed x step."""
    if not chunks:
        return pd.DataFrame()
    frames = []
    for first, hist in zip(firsts, chunks):
        hist = {k: np.asarray(v) for k, v in hist.items()}  # [S, E, steps]
        s, e, n = next(iter(hist.values())).shape
        index = pd.MultiIndex.from_product(
            [list(seeds), range(first, first + e), range(n)], names=["seed", "epoch", "i"]
        )
        frames.append(pd.DataFrame({k: v.reshape(-1) for k, v in hist.items()}, index=index))
    df = pd.concat(frames).reset_index().sort_values(["seed", "epoch", "i"])
    df["step"] = df["epoch"] * steps_per_epoch + df["i"]
    return df.drop(columns="i").reset_index(drop=True)


def evaluate(result: FitResult, windows: Windows, metric, decisions=None,
             units=None) -> pd.DataFrame:
    """True metric of a trained method on ``windows``, one row per seed.

    Args:
      result: a FitResult.
      windows: the split to evaluate (usually ``.test``).
      metric: per-sample metric, or a StatefulMetric (scanned over the whole split
        in time order from ``metric.init()``). The cost is in whatever units the
        metric returns (a metric may convert with ``data.scaler.inverse``).
      decisions: optional [seeds, N, m] decisions to score instead of
        ``result.predict`` (e.g. after adding a tuned margin).
      units: the ``WindowSet`` the windows come from: ``rmse`` and ``mae`` are then
        in the original units of its target columns (else in scaled units).

    Returns:
      DataFrame with columns seed, method, cost, rmse, mae, under_rate.
    """
    windows = as_windows(windows, "windows")
    if decisions is None:
        decisions = result.predict(windows.inputs)
    df = score(decisions, windows, metric, seeds=result.seeds, method=result.method)
    if units is not None:
        err = np.asarray(decisions, np.float64) - np.asarray(windows.targets)[None]
        err = units.scaler.inverse_diff(err, units.target_columns)
        df["rmse"] = np.sqrt((err**2).mean(axis=(1, 2)))
        df["mae"] = np.abs(err).mean(axis=(1, 2))
    return df


def score(decisions, windows: Windows, metric, seeds, method: str) -> pd.DataFrame:
    """Per-seed true cost and forecast errors of decisions [seeds, N, m]."""
    decisions = jnp.asarray(decisions, jnp.float32)
    if decisions.ndim != 3 or decisions.shape[1:] != windows.targets.shape:
        raise ValueError(
            f"decisions must be [seeds, {windows.targets.shape[0]}, "
            f"{windows.targets.shape[1]}], got {decisions.shape}"
        )
    obs = jnp.asarray(windows.obs, jnp.float32)
    costs = _scorer(metric)(decisions, obs)
    err = np.asarray(decisions) - np.asarray(windows.targets)[None]
    return pd.DataFrame(
        {
            "seed": list(seeds),
            "method": method,
            "cost": np.asarray(costs).mean(axis=1),
            "rmse": np.sqrt((err**2).mean(axis=(1, 2))),
            "mae": np.abs(err).mean(axis=(1, 2)),
            "under_rate": (err < 0).mean(axis=(1, 2)),
        }
    )
