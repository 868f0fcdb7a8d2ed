"""The user-facing trainers: ``fit`` (Loss2Net), ``fit_fixed_loss`` (baselines).

Both run every seed in ONE ``jit(vmap(...))`` program and return a ``FitResult``
(with ``Config.seed_batching='map'``, ONE ``jit(lax.map(...))`` program that runs the
seeds one after another, each bitwise as it runs alone: faster on a CPU whose cores
one seed already keeps busy, BUILD_NOTES §10).
Training proceeds in chunks of ``config.log_every`` epochs so a progress line
(epoch, steps/s, ETA, costs) can be printed between chunks; that is one host sync
per chunk, never per step.

``fit_sites`` / ``fit_fixed_loss_sites`` train several sites x every seed in ONE
``jit(vmap(sites, vmap(seeds)))`` program. Every site uses the same seed keys, so a
site's result is the one a single-site ``fit`` with those seeds gives (up to the
float rounding of the batched program). Sites with different window counts are
padded to the longest and masked (``train.make_program(padded=True)``): each site
still runs its own epochs, steps and schedules, and equals its run alone through the
padded path (``pad=True``), which differs from plain ``fit`` only in how the epoch's
shuffle is drawn. The padded steps of shorter sites are computed and discarded:
the cost of one program, reported as ``timing['padding_waste']``.
"""

import dataclasses
import json
import time
from typing import Any, Callable, Mapping, Sequence

import flax.serialization
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import logging

from l2n_jax import checkpoint as ckpt_lib
from l2n_jax import nets
from l2n_jax import train as train_lib
from l2n_jax.config import Config
from l2n_jax.data import Windows
from l2n_jax.metrics import StatefulMetric, batch_metric, check_metric, v_dim

_FORMAT_VERSION = 1


def _as_windows(w: Windows, name: str) -> Windows:
    if not isinstance(w, Windows):
        raise ValueError(f"{name} must be an l2n.Windows, got {type(w).__name__}")
    arrays = Windows(*(jnp.asarray(x, jnp.float32) for x in w))
    n = arrays.inputs.shape[0]
    if arrays.inputs.ndim != 4:
        raise ValueError(
            f"{name}.inputs must be [N, n_series, lookback, n_features], got "
            f"{arrays.inputs.shape}"
        )
    for field in ("targets", "obs", "ir_targets", "current"):
        x = getattr(arrays, field)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"{name}.{field} must be [{n}, d], got {x.shape}")
    return arrays


def _seed_keys(seeds: Sequence[int]) -> jax.Array:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


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
    """

    config: Config
    seeds: tuple[int, ...]
    params: dict
    history: pd.DataFrame
    method: str
    shapes: train_lib.Shapes
    best_epoch: np.ndarray
    timing: dict

    def _nets(self):
        predictor = nets.make_predictor(
            self.config, self.shapes.input_shape, self.shapes.decision_dim
        )
        shaper = nets.make_shaper(
            self.config,
            self.shapes.decision_dim + self.shapes.obs_dim + self.shapes.v_dim,
        )
        return predictor, shaper

    def predict(self, inputs) -> np.ndarray:
        """Decisions with eps = 0: inputs [N, S, L, F] -> [seeds, N, m]."""
        predictor, _ = self._nets()
        inputs = jnp.asarray(inputs, jnp.float32)
        m = self.shapes.decision_dim
        fn = jax.jit(jax.vmap(lambda p: train_lib.predict(predictor, p, inputs, m)))
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
        _, shaper = self._nets()
        decision = jnp.asarray(decision, jnp.float32)
        obs = jnp.asarray(obs, jnp.float32)
        if j:
            obs = jnp.concatenate([obs, jnp.asarray(v, jnp.float32).reshape(-1, j)], -1)
        m = self.shapes.decision_dim
        if self.config.shaper_input == "error":
            x = jnp.concatenate([decision - obs[:, :m], obs], axis=-1)
        else:
            x = jnp.concatenate([decision, obs], axis=-1)
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
        shapes=train_lib.Shapes(tuple(shapes[0]), *shapes[1:]),
        best_epoch=np.asarray(meta["best_epoch"]),
        timing=meta["timing"],
    )


def _history_frame(chunks, seeds, steps_per_epoch, first_epoch_of_chunk):
    frames = []
    for first, hist in zip(first_epoch_of_chunk, chunks):
        hist = {k: np.asarray(v) for k, v in hist.items()}  # [S, E, steps]
        s, e, n = next(iter(hist.values())).shape
        index = pd.MultiIndex.from_product(
            [list(seeds), range(first, first + e), range(n)], names=["seed", "epoch", "i"]
        )
        frames.append(pd.DataFrame({k: v.reshape(-1) for k, v in hist.items()}, index=index))
    df = pd.concat(frames).reset_index().sort_values(["seed", "epoch", "i"])
    df["step"] = df["epoch"] * steps_per_epoch + df["i"]
    return df.drop(columns="i").reset_index(drop=True)


def _pad_to(w: Windows, n: int) -> Windows:
    extra = n - w.inputs.shape[0]
    if extra == 0:
        return w
    return Windows(*(jnp.concatenate([x, jnp.zeros((extra, *x.shape[1:]), x.dtype)])
                     for x in w))


def _stack_sites(trains, valids, pad=None):
    """Site names, stacked [sites, N, ...] train (and valid) windows, and the
    [sites, 2] real (train, valid) counts when padded (else None).

    ``pad``: None pads only when the sites' window counts differ; True always uses
    the padded program; False refuses different counts."""
    if not isinstance(trains, Mapping) or not trains:
        raise ValueError("trains must be a non-empty mapping {site: Windows}")
    sites = tuple(trains)
    if valids is not None and tuple(valids) != sites:
        raise ValueError(f"valids must name the same sites as trains {list(sites)}, "
                         f"got {list(valids)}")

    def check(splits, name):
        arrays = {s: _as_windows(w, f"{name}[{s!r}]") for s, w in splits.items()}
        ref = arrays[sites[0]]
        for s, w in arrays.items():
            if [x.shape[1:] for x in w] != [x.shape[1:] for x in ref]:
                raise ValueError(
                    f"{name}[{s!r}] has window shapes {[x.shape[1:] for x in w]}, site "
                    f"{sites[0]!r} {[x.shape[1:] for x in ref]}: sites batched in one "
                    "program need the same lookback, series, features and targets"
                )
        return arrays

    def stack(arrays, n):
        return Windows(*(jnp.stack(x) for x in zip(*(_pad_to(arrays[s], n) for s in sites))))

    splits = [check(trains, "train")] + ([] if valids is None else [check(valids, "valid")])
    counts = [[int(a[s].inputs.shape[0]) for s in sites] for a in splits]
    uneven = any(len(set(c)) > 1 for c in counts)
    if uneven and pad is False:
        raise ValueError(
            f"sites have different window counts {dict(zip(sites, counts[0]))} and "
            "pad=False: truncate them to a common length, or allow padding"
        )
    padded = bool(pad) or uneven
    stacked = [stack(a, max(c)) for a, c in zip(splits, counts)]
    sizes = None
    if padded:
        n_valid = counts[1] if valids is not None else counts[0]
        sizes = jnp.asarray(np.stack([counts[0], n_valid], axis=1), jnp.int32)
    return sites, stacked[0], (stacked[1] if valids is not None else None), sizes


def _run(
    config: Config,
    train,
    valid,
    seeds: Sequence[int],
    method: str,
    metric=None,
    loss=None,
    label: str = "",
    checkpoint: str | None = None,
    segments: int = 1,
    sites: bool = False,
    shaper=None,
    pad=None,
):
    """Trains every seed (and with ``sites``, every site of the mappings ``train``
    and ``valid``) in one program; returns a FitResult, or {site: FitResult}.

    ``shaper``: initial shaper params stacked over seeds ({site: ...} with sites).
    """
    sizes = None
    if sites:
        if shaper is not None:
            if not isinstance(shaper, Mapping) or set(shaper) != set(train):
                raise ValueError(f"shaper must map every site {list(train)} to shaper "
                                 "params stacked over seeds")
            shaper = jax.tree.map(lambda *x: jnp.stack(x), *(shaper[s] for s in train))
        sites, train, valid, sizes = _stack_sites(train, valid, pad)
        first = Windows(*(x[0] for x in train))  # what shapes and checks look at
    else:
        sites = None
        train = first = _as_windows(train, "train")
    if config.freeze_shaper and loss is None and shaper is None:
        raise ValueError("Config.freeze_shaper needs a shaper to start from: pass "
                         "shaper= (e.g. FitResult.params['shaper'] of another site)")
    if valid is not None:
        if sites is None:
            valid = _as_windows(valid, "valid")
        if valid.inputs.shape[-3:] != train.inputs.shape[-3:]:
            raise ValueError(
                f"valid windows {valid.inputs.shape[-3:]} do not match train "
                f"{train.inputs.shape[-3:]}"
            )
    shapes = train_lib.Shapes.of(first)
    if metric is not None:
        check_metric(metric, first.targets[:8], first.obs[:8])
        if isinstance(metric, StatefulMetric):
            shapes = shapes._replace(v_dim=v_dim(metric, first.targets[:8], first.obs[:8]))
    program = train_lib.make_program(
        config, shapes, metric=metric, loss=loss, segments=segments,
        padded=sizes is not None,
    )
    keys = _seed_keys(seeds)
    if shaper is not None:
        shaper = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), shaper)
        template = jax.eval_shape(program.init, keys[0]).params["shaper"]
        lead = (len(sites),) if sites is not None else ()
        want = jax.tree.map(lambda t: (*lead, len(keys), *t.shape), template)
        got = jax.tree.map(lambda x: x.shape, shaper)
        if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
            raise ValueError(
                "shaper params do not match this run's shaper (config.shaper_hidden, "
                f"inputs) stacked over {len(keys)} seeds: expected {want}, got {got}"
            )
    n_epochs = config.cotrain_epochs if loss is None else config.epochs
    steps = program.steps_per_epoch
    tag = f"[{label or method}]"

    def over_sites(fn, in_axes):
        # Sites share the seed keys: a site's run is its single-site run.
        return fn if sites is None else jax.vmap(fn, in_axes=in_axes)

    seed_sharding = _seed_sharding(len(keys), 0 if sites is None else 1, tag)
    batching = config.seed_batching
    if batching == "map" and seed_sharding is not None:
        logging.info("%s seed_batching='map' runs on one device; vmapping the seeds "
                     "to split them over %d devices", tag, len(seed_sharding.mesh.devices))
        batching = "vmap"
    over_seeds = _map_over if batching == "map" else jax.vmap

    # Data go in as arguments (not closed over), so XLA does not embed them as
    # constants in the compiled program.
    sp_axis = None if shaper is None else 0
    sz_axis = None if sizes is None else 0
    start = jax.jit(over_sites(
        over_seeds(
            lambda k, tr, sp, sz: program.pretrain(k, program.init(k, sp), tr, sz),
            (0, None, sp_axis, None),
        ),
        (None, 0, sp_axis, sz_axis),
    ))
    start_args = (keys, train, shaper, sizes)
    fingerprint = None
    restored = None
    if checkpoint is not None:
        fingerprint = _fingerprint(config, seeds, method, shapes, train, valid)
        if isinstance(metric, StatefulMetric) and loss is None:
            fingerprint["segments"] = segments
        if sites is not None:
            fingerprint["sites"] = list(sites)
        if sizes is not None:
            fingerprint["sizes"] = np.asarray(sizes).tolist()
        if shaper is not None:
            fingerprint["shaper"] = ckpt_lib.data_digest(*jax.tree.leaves(shaper))
        template = jax.eval_shape(start, *start_args)
        restored = ckpt_lib.restore(checkpoint, template, fingerprint)
    # With several devices the seed axis is split across them; jit partitions the
    # same program (GSPMD), data are replicated.
    if seed_sharding is not None:
        keys = jax.device_put(keys, NamedSharding(seed_sharding.mesh, PartitionSpec("runs")))
    t0 = time.perf_counter()
    if restored is None:
        state = jax.block_until_ready(start(*start_args))
        chunks, firsts, epoch = [], [], 0
    else:
        state, epoch = restored.state, restored.epoch
        chunks, firsts = restored.chunks, restored.firsts
        logging.info("%s resuming from %s at epoch %d/%d", tag, checkpoint, epoch, n_epochs)
    if seed_sharding is not None:
        state = jax.device_put(state, seed_sharding)
    t_pre = time.perf_counter() - t0

    compiled: dict[int, Any] = {}  # chunk length -> AOT-compiled program
    compile_s, run_s, done = 0.0, 0.0, 0
    while epoch < n_epochs:
        n = min(config.log_every, n_epochs - epoch)
        first = jnp.asarray(epoch, jnp.int32)
        if n not in compiled:
            fn = jax.jit(over_sites(
                over_seeds(
                    lambda k, s, tr, va, e0, sz, n=n: program.epochs(k, s, tr, va, e0, n, sz),
                    in_axes=(0, 0, None, None, None, None),
                ),
                (None, 0, 0, 0, None, sz_axis),
            ))
            t0 = time.perf_counter()
            compiled[n] = fn.lower(keys, state, train, valid, first, sizes).compile()
            compile_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        state, hist = compiled[n](keys, state, train, valid, first, sizes)
        jax.block_until_ready(state)
        run_s += time.perf_counter() - t0
        done += n * steps
        # A non-finite chunk is reported before it is saved: the checkpoint on disk
        # stays the last good one.
        _raise_if_nonfinite(state, seeds, tag, checkpoint, sites)
        chunks.append(hist)
        firsts.append(epoch)
        epoch += n
        if checkpoint is not None:
            ckpt_lib.save(checkpoint, state, epoch, chunks, firsts, fingerprint)
        rate = done / run_s if run_s > 0 else float("nan")
        eta = (n_epochs - epoch) * steps / rate if rate == rate and rate > 0 else float("nan")
        parts = []
        for key in ("cost", "loss", "valid_cost", "valid_loss"):
            if key in hist:  # last step of the chunk, averaged over seeds
                value = np.asarray(hist[key])[..., -1, -1].mean()
                parts.append(f"{'train_' + key if 'valid' not in key else key}={value:.5f}")
        logging.info(
            "%s epoch %d/%d step %d steps/s %.1f ETA %.0fs %s",
            tag, epoch, n_epochs, epoch * steps, rate, eta, " ".join(parts),
        )
    params = train_lib.final_params(config, state, valid is not None)
    if config.select_best and valid is not None:
        best_epoch = np.asarray(state.best_epoch)
    else:
        best_epoch = np.full(np.shape(state.bad_step), -1)
    timing = {
        "pretrain_s": t_pre,
        "compile_s": compile_s,
        "run_s": run_s,
        "steps_per_s": done / run_s if run_s > 0 else None,
    }
    n_sites = 1 if sites is None else len(sites)
    site_train = [shapes.n_train] * n_sites
    site_steps = [steps] * n_sites
    if sizes is not None:
        site_train = [int(n) for n in np.asarray(sizes)[:, 0]]
        site_steps = [n // config.batch_size for n in site_train]
        # Share of the program's steps that were dead (gated) padding steps.
        timing["padding_waste"] = 1.0 - sum(site_steps) / (steps * len(site_steps))

    def result(params, chunks, best_epoch, n_steps, n_train=shapes.n_train):
        history = (_history_frame(chunks, seeds, n_steps, firsts) if chunks
                   else pd.DataFrame())
        site_shapes = shapes._replace(n_train=n_train)
        return FitResult(
            config, tuple(int(s) for s in seeds), params, history, method, site_shapes,
            best_epoch, timing,
        )

    if sites is None:
        return result(params, chunks, best_epoch, steps)
    return {
        site: result(
            jax.tree.map(lambda x, d=d: x[d], params),
            # Dead steps of a padded site are dropped from its history.
            [{k: np.asarray(v)[d][..., :site_steps[d]] for k, v in c.items()}
             for c in chunks],
            best_epoch[d],
            site_steps[d],
            site_train[d],
        )
        for d, site in enumerate(sites)
    }


def _map_over(fn, in_axes):
    """``jax.vmap(fn, in_axes)`` semantics (axes 0 or None), computed by ``lax.map``.

    Each element runs the unbatched program, one after another in the same compiled
    loop, so its result is bitwise the one a separate call gives.
    """

    def mapped(*args):
        mapped_args = [a for a, ax in zip(args, in_axes) if ax == 0]

        def one(xs):
            it = iter(xs)
            return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])

        return jax.lax.map(one, mapped_args)

    return mapped


def _seed_sharding(n_seeds: int, axis: int, tag: str = ""):
    """A NamedSharding splitting the seed axis over the local devices, or None.

    Uses the largest number of devices that divides the number of seeds (seeds are
    never padded); None on a single device.
    """
    devices = jax.local_devices()
    n = max(d for d in range(1, len(devices) + 1) if n_seeds % d == 0)
    if n < 2:
        return None
    if n < len(devices):
        logging.info("%s %d seeds over %d of %d devices (use a multiple of %d seeds "
                     "to use them all)", tag, n_seeds, n, len(devices), len(devices))
    mesh = Mesh(np.asarray(devices[:n]), ("runs",))
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), "runs"))


class NonFiniteError(FloatingPointError):
    """A run produced a NaN/inf cost, loss or parameter and was stopped."""


def _raise_if_nonfinite(state, seeds, tag, checkpoint=None, sites=None):
    bad = np.asarray(state.bad_step)
    if (bad >= 0).any():
        if sites is None:
            which = ", ".join(
                f"seed {s} at step {int(b)}" for s, b in zip(seeds, bad) if b >= 0
            )
        else:
            which = ", ".join(
                f"site {site} seed {s} at step {int(b)}"
                for site, row in zip(sites, bad) for s, b in zip(seeds, row) if b >= 0
            )
        kept = f" The last good checkpoint is kept in {checkpoint}." if checkpoint else ""
        raise NonFiniteError(
            f"{tag} non-finite cost, loss or parameters ({which}); the run was frozen "
            "at its last finite step. Check the metric for NaN/inf outputs, or lower "
            f"lr_max / shaper_lr.{kept}"
        )


def _fingerprint(config, seeds, method, shapes, train, valid) -> dict:
    """What must match for a checkpoint to be resumed (chunking does not matter)."""
    cfg = config.to_dict()
    cfg.pop("log_every", None)
    arrays = list(train) + (list(valid) if valid is not None else [])
    # v_dim is listed only when set, so stateless fingerprints are unchanged.
    dims = list(shapes[1:4]) + ([shapes.v_dim] if shapes.v_dim else [])
    return {
        "config": cfg,
        "seeds": [int(s) for s in seeds],
        "method": method,
        "shapes": [list(shapes.input_shape), *dims],
        "data": ckpt_lib.data_digest(*arrays),
    }


def fit(
    config: Config,
    train: Windows,
    metric,
    *,
    seeds: Sequence[int] = (0,),
    valid: Windows | None = None,
    label: str = "",
    checkpoint: str | None = None,
    segments: int = 1,
    shaper=None,
) -> FitResult:
    """Co-trains predictor and loss shaper (Loss2Net) for every seed in one program.

    Args:
      config: hyper-parameters.
      train: training windows.
      metric: per-sample ``metric(decision [m], obs [k]) -> cost`` (jnp or
        ``l2n.host_metric``), lower is better; never differentiated. Or a
        ``l2n.StatefulMetric`` (time-correlated cost): batches are then contiguous
        time segments, its state is carried across steps, and its ``v`` is an extra
        shaper input (see ``l2n_jax.train``); ``train``/``valid`` must be in time
        order.
      seeds: one run per seed, all vmapped.
      valid: validation windows; with ``config.select_best`` the epoch of lowest true
        validation cost is kept.
      label: prefix of progress lines.
      checkpoint: a file path; the run state is written there after every chunk of
        ``config.log_every`` epochs, and a run started on an existing checkpoint
        resumes from it (bitwise the same result as an uninterrupted run). A
        checkpoint written by a different config, seeds or data raises ValueError.
      segments: StatefulMetric only: each batch is this many contiguous time
        segments of ``batch_size // segments`` windows, from as many equal stretches
        of ``train`` (1: one contiguous segment).
      shaper: start the loss shaper from these params, stacked over seeds (e.g.
        ``other.params['shaper']`` of a FitResult with the same seeds count and
        shaper config): fine-tuning a shaper learned elsewhere, or, with
        ``config.freeze_shaper``, training a fresh predictor on it (transfer).

    Returns:
      FitResult.
    """
    _check_metric_arg("fit", metric)
    return _run(config, train, valid, seeds, "loss2net", metric=metric, label=label,
                checkpoint=checkpoint, segments=segments, shaper=shaper)


def _check_metric_arg(name, metric):
    if not (callable(metric) or isinstance(metric, StatefulMetric)):
        raise ValueError(f"{name}: metric must be callable, got {metric!r}")


def fit_sites(
    config: Config,
    trains: Mapping[str, Windows],
    metric,
    *,
    seeds: Sequence[int] = (0,),
    valids: Mapping[str, Windows] | None = None,
    label: str = "",
    checkpoint: str | None = None,
    segments: int = 1,
    shaper: Mapping | None = None,
    pad: bool | None = None,
) -> dict[str, FitResult]:
    """``fit`` on several sites at once: sites x seeds in one vmapped program.

    Args:
      trains: {site: training windows}; windows must have the same shape at every
        site; window counts may differ (padded and masked, module docstring).
      valids: {site: validation windows} for the same sites, or None.
      shaper: {site: shaper params stacked over seeds} to start from (see ``fit``).
      pad: None pads only when window counts differ; True always runs the padded
        program (a site then runs exactly as when batched with longer sites);
        False raises on different counts.
      (the rest as in ``fit``; one checkpoint file holds every site.)

    Returns:
      {site: FitResult}, each as a single-site ``fit`` with the same seeds returns.
    """
    _check_metric_arg("fit_sites", metric)
    return _run(config, trains, valids, seeds, "loss2net", metric=metric, label=label,
                checkpoint=checkpoint, segments=segments, sites=True, shaper=shaper,
                pad=pad)


def fit_fixed_loss(
    config: Config,
    train: Windows,
    loss: Callable,
    *,
    seeds: Sequence[int] = (0,),
    valid: Windows | None = None,
    metric=None,
    label: str = "",
    checkpoint: str | None = None,
) -> FitResult:
    """Trains the same predictor on a fixed per-sample loss (a baseline).

    Same architecture, schedules, batch size and number of epochs as ``fit``
    (pre-training epochs are ordinary epochs here); eps is 0 throughout.

    Args:
      config: hyper-parameters (shaper fields are ignored).
      train: training windows.
      loss: ``loss(prediction [m], target [m]) -> ()``, e.g. ``l2n.losses.mse``.
      seeds: one run per seed, all vmapped.
      valid: validation windows, for model selection when ``metric`` is given.
      metric: the true metric; with ``valid`` and ``config.select_best`` the epoch of
        lowest true validation cost is kept (the same rule Loss2Net gets).
      label: prefix of progress lines.
      checkpoint: a file path to write and resume from (see ``fit``).
    """
    if not callable(loss):
        raise ValueError(f"fit_fixed_loss: loss must be callable, got {loss!r}")
    name = getattr(loss, "__name__", "loss")
    return _run(config, train, valid, seeds, name, metric=metric, loss=loss, label=label,
                checkpoint=checkpoint)


def fit_fixed_loss_sites(
    config: Config,
    trains: Mapping[str, Windows],
    loss: Callable,
    *,
    seeds: Sequence[int] = (0,),
    valids: Mapping[str, Windows] | None = None,
    metric=None,
    label: str = "",
    checkpoint: str | None = None,
    pad: bool | None = None,
) -> dict[str, FitResult]:
    """``fit_fixed_loss`` on several sites at once (see ``fit_sites``, also for
    ``pad``)."""
    if not callable(loss):
        raise ValueError(f"fit_fixed_loss_sites: loss must be callable, got {loss!r}")
    name = getattr(loss, "__name__", "loss")
    return _run(config, trains, valids, seeds, name, metric=metric, loss=loss,
                label=label, checkpoint=checkpoint, sites=True, pad=pad)


def evaluate(result: FitResult, windows: Windows, metric, decisions=None) -> pd.DataFrame:
    """True metric of a trained method on ``windows``, one row per seed.

    Args:
      result: a FitResult.
      windows: the split to evaluate (usually ``.test``).
      metric: per-sample metric, or a StatefulMetric (scanned over the whole split
        in time order from ``metric.init()``).
      decisions: optional [seeds, N, m] decisions to score instead of
        ``result.predict`` (e.g. after adding a tuned margin).

    Returns:
      DataFrame with columns seed, method, cost, rmse, mae, under_rate.
    """
    windows = _as_windows(windows, "windows")
    if decisions is None:
        decisions = result.predict(windows.inputs)
    return score(decisions, windows, metric, seeds=result.seeds, method=result.method)


def score(decisions, windows: Windows, metric, seeds, method: str) -> pd.DataFrame:
    """Per-seed true cost and forecast errors of decisions [seeds, N, m]."""
    decisions = jnp.asarray(decisions, jnp.float32)
    if decisions.ndim != 3 or decisions.shape[1:] != windows.targets.shape:
        raise ValueError(
            f"decisions must be [seeds, {windows.targets.shape[0]}, "
            f"{windows.targets.shape[1]}], got {decisions.shape}"
        )
    obs = jnp.asarray(windows.obs, jnp.float32)
    costs = jax.jit(jax.vmap(lambda d: batch_metric(metric)(d, obs)))(decisions)
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

