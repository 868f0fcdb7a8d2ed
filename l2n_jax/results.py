"""``FitResult``: a trained method, one set of parameters per seed; save and load.

A FitResult carries the networks its program was built with, so ``predict`` and
``shaper`` only apply them (``l2n.load`` builds them once from the saved config).
"""

import dataclasses
import json

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from l2n_jax import nets, variants
from l2n_jax.config import Config
from l2n_jax.train import Shapes, predict

_FORMAT_VERSION = 1


def make_networks(config: Config, shapes: Shapes) -> dict:
    """The predictor and shaper a run of ``config`` on ``shapes`` trains."""
    m, k, j = shapes.decision_dim, shapes.obs_dim, shapes.v_dim
    return {"predictor": nets.make_predictor(config, shapes.input_shape, m),
            "shaper": nets.make_shaper(config, m + k + j)}


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
      timing: compile/run seconds and steps/s.
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
        """Decisions with eps = 0: inputs [N, S, L, F] -> [seeds, N, m]."""
        predictor = self.networks["predictor"]
        inputs = jnp.asarray(inputs, jnp.float32)
        m = self.shapes.decision_dim
        fn = jax.jit(jax.vmap(lambda p: predict(predictor, p, inputs, m)))
        return np.asarray(fn(self.params["predictor"]))

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
        shaper = self.networks["shaper"]
        fn = jax.jit(jax.vmap(lambda s: shaper.apply(s, x)))
        return np.asarray(fn(self.params["shaper"]))

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
