"""The user-facing trainers: ``fit`` (Loss2Net), ``fit_fixed_loss`` (baselines), their
``_sites`` forms, and ``evaluate``.

Every seed trains in ONE ``jit(vmap(...))`` program (``Config.seed_batching='map'``:
ONE ``jit(lax.map(...))`` program running the seeds one after another, each bitwise
as alone: faster on a CPU that one seed already keeps busy, BUILD_NOTES §10). The
``_sites`` forms train sites x seeds in ONE ``jit(vmap(sites, vmap(seeds)))`` program;
every site uses the same seed keys, so a site's result is the one a single-site
``fit`` with those seeds gives (up to the float rounding of the batched program).
Sites with different window counts are padded to the longest and masked
(``data.Split``): each site still runs its own epochs, steps and schedules, and
equals its run alone through the padded path (``pad=True``), which differs from
plain ``fit`` only in how the epoch's shuffle is drawn. The padded steps of shorter
sites are computed and discarded: the cost of one program, reported as
``timing['padding_waste']``.

A run is the engine's ``Program`` (``l2n_jax.train``) vectorised from outside
(``l2n_jax.runs``) and driven chunk by chunk by the host loop (``l2n_jax.loop``),
which logs progress, checks for non-finite values and checkpoints.
"""

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

import jax
import numpy as np

from l2n_jax import baselines, engine, grids, progress, runs, starts, variants
from l2n_jax import checkpoint as ckpt_lib
from l2n_jax.config import Config, quantile_grads
from l2n_jax.data import Split, Windows
from l2n_jax.driver import NonFiniteError, drive  # noqa: F401 (re-exported)
from l2n_jax.metrics import StatefulMetric, check_metric, v_dim
from l2n_jax.results import FitResult, evaluate, history_frame
from l2n_jax.sites import as_windows, stack_sites
from l2n_jax.train import Shapes, make_program


def _fingerprint(config, seeds, method, shapes, train: Split, valid: Split | None,
                 **extra) -> dict:
    """What must match for a checkpoint to be resumed (chunking does not matter)."""
    cfg = config.to_dict()
    for name in ("log_every", "checkpoint_every"):  # chunking does not change results
        cfg.pop(name, None)
    arrays = list(train.windows) + (list(valid.windows) if valid is not None else [])
    # v_dim is listed only when set, so stateless fingerprints are unchanged.
    dims = list(shapes[1:4]) + ([shapes.v_dim] if shapes.v_dim else [])
    out = {
        "config": cfg,
        "seeds": [int(s) for s in seeds],
        "method": method,
        "shapes": [list(shapes.input_shape), *dims],
        "data": ckpt_lib.data_digest(*arrays),
    }
    if train.padded:
        n_valid = valid.n if valid is not None else train.n
        out["sizes"] = np.stack([np.asarray(train.n), np.asarray(n_valid)], 1).tolist()
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _results(program, config, done, pre, selected, seeds, method, shapes, sites,
             train):
    """A FitResult (or {site: FitResult}) from a finished run."""
    state, steps = done.state, program.steps_per_epoch
    params = variants.delivered(engine.final_params(state, selected))
    best_epoch = (np.asarray(state.best_epoch) if selected
                  else np.full(np.shape(state.bad_step), -1))
    timing = {**pre, "compile_s": done.compile_s, "run_s": done.run_s,
              "steps_per_s": done.steps / done.run_s if done.run_s > 0 else None}
    seeds = tuple(int(s) for s in seeds)

    def result(params, chunks, best, n_steps, n_train=shapes.n_train):
        history = history_frame(chunks, seeds, n_steps, done.firsts)
        return FitResult(config, seeds, params, history, method,
                         shapes._replace(n_train=n_train), best, timing, program.networks)

    if sites is None:
        return result(params, done.histories, best_epoch, steps)
    site_train = (np.asarray(train.n) if train.padded
                  else np.full(len(sites), shapes.n_train))
    site_steps = [int(n) // config.batch_size if train.padded else steps
                  for n in site_train]
    if train.padded:  # share of the program's steps that were dead padding steps
        timing["padding_waste"] = 1.0 - sum(site_steps) / (steps * len(site_steps))
    return {
        site: result(
            jax.tree.map(lambda x, d=d: x[d], params),
            # Dead steps of a padded site are dropped from its history.
            [{k: np.asarray(v)[d][..., :site_steps[d]] for k, v in c.items()}
             for c in done.histories],
            best_epoch[d], site_steps[d], int(site_train[d]),
        )
        for d, site in enumerate(sites)
    }


def _run(config, train, valid, seeds, method, *, metric=None, loss=None, label="",
         checkpoint=None, segments=1, sites=False, shaper=None, pad=None, verbose=True,
         hyper=None, make=None):
    """Trains every seed (and with ``sites``, every site of the mappings ``train``
    and ``valid``) in one program; returns a FitResult, or {site: FitResult}.

    ``shaper``: initial shaper params stacked over seeds ({site: ...} with sites).
    ``hyper``: a fixed loss's ``theta`` ({site: theta} with sites).
    ``make``: another trainer's program builder, called as ``make_program`` is
    (e.g. ``l2n_jax.ala.make_program``); None: Loss2Net or the fixed loss.
    """
    start_params = starts.stack(shaper, hyper, tuple(train) if sites else None)
    valid_by_site = valid  # Windows, or {site: Windows}: what tune_offset scores on
    if sites:
        sites, train, valid = stack_sites(train, valid, pad)
        first = Windows(*(x[0] for x in train.windows))  # what shapes and checks see
    else:
        sites = None
        first = as_windows(train, "train")
        train = Split(first)
        if valid is not None:
            valid = Split(as_windows(valid, "valid"))
    if config.freeze_shaper and loss is None and shaper is None:
        raise ValueError("Config.freeze_shaper needs a shaper to start from: pass "
                         "shaper= (e.g. FitResult.params['shaper'] of another site)")
    if valid is not None and valid.windows.inputs.shape[-3:] != train.windows.inputs.shape[-3:]:
        raise ValueError(
            f"valid windows {valid.windows.inputs.shape[-3:]} do not match train "
            f"{train.windows.inputs.shape[-3:]}"
        )
    shapes = Shapes.of(first)
    stateful = isinstance(metric, StatefulMetric)
    if metric is not None:
        check_metric(metric, first.targets[:8], first.obs[:8])
        if stateful:
            shapes = shapes._replace(v_dim=v_dim(metric, first.targets[:8], first.obs[:8]))
    if stateful and loss is None and train.padded:
        raise ValueError(
            "a StatefulMetric is scanned over the whole split in time order, which "
            "padding would break; truncate the sites to a common length"
        )
    program = (make or make_program)(config, shapes, metric=metric, loss=loss,
                                     segments=segments, hyper=hyper is not None)
    keys = runs.seed_keys(seeds)
    start_params = starts.check(program, start_params, keys, sites)
    tag = f"[{label or method}]"
    fingerprint = None
    if checkpoint is not None:
        fingerprint = _fingerprint(
            config, seeds, method, shapes, train, valid,
            segments=segments if stateful and loss is None else None,
            sites=list(sites) if sites is not None else None,
            start=(ckpt_lib.data_digest(*jax.tree.leaves(start_params))
                   if start_params is not None else None))
    done, pre = drive(program, config, keys, train, valid, start_params, tag,
                      checkpoint, fingerprint, sites, seeds, progress.reporter(verbose))
    selected = config.select_best and valid is not None
    out = _results(program, config, done, pre, selected, seeds, method, shapes, sites,
                   train)
    if config.tune_offset and loss is None and make is None and valid_by_site is not None:
        out = ({s: _with_offset(r, valid_by_site[s], metric) for s, r in out.items()}
               if sites is not None else _with_offset(out, valid_by_site, metric))
    return out


def _with_offset(result: FitResult, valid: Windows, metric) -> FitResult:
    """``Config.tune_offset``: the result with a per-seed decision offset tuned on
    ``valid`` with the true metric (``params['offset']``, added by ``predict``)."""
    valid = as_windows(valid, "valid")
    margin = baselines.tune_margin(result.predict(valid.inputs), valid, metric)
    return dataclasses.replace(result, params={**result.params, "offset": margin})


def _loss2net(config, train, valid, seeds, metric, *, sites=False, label="",
              checkpoint=None, **kw):
    """Loss2Net through ``_run``, once per ``Config.quantile_grad`` value to choose
    from (the quantile head, with a valid split; else the first value alone), per
    site the value ``choose_value`` picks from the true validation costs."""
    run = functools.partial(_run, train=train, valid=valid, seeds=seeds, method="loss2net",
                            metric=metric, sites=sites, **kw)
    if config.decision_head != "quantile_net":
        return run(config, label=label, checkpoint=checkpoint)
    values = quantile_grads(config)
    if valid is None or len(values) == 1:  # the result's config says which value ran
        return run(config.replace(quantile_grad=values[0]), label=label,
                   checkpoint=checkpoint)
    runs, costs, name = {}, {}, label or "loss2net"
    for g in values:
        out = run(config.replace(quantile_grad=g), label=f"{name}[quantile_grad={g:g}]",
                  checkpoint=checkpoint and f"{checkpoint}.qgrad{g:g}")
        for s, r in (out.items() if sites else [(None, out)]):
            runs.setdefault(s, []).append(r)
            costs.setdefault(s, []).append(
                evaluate(r, valid[s] if sites else valid, metric)["cost"].to_numpy())
    report, chosen = progress.reporter(kw.get("verbose", True)), {}
    for s in runs:
        i = choose_value(costs[s])
        chosen[s] = runs[s][i]
        means = ", ".join(f"{g:g}: {c.mean():.5g}" for g, c in zip(values, costs[s]))
        report(f"[{name}{'' if s is None else '/' + s}] quantile_grad {values[i]:g} "
               f"chosen (mean validation cost {means})")
    return chosen if sites else chosen[None]


def choose_value(costs) -> int:
    """The index of the value to keep, from each value's per-seed true validation
    costs (first: the default): the lowest mean, unless it beats the first value by
    less than one standard error of their per-seed differences (the one-standard-
    error rule: a difference the seeds do not resolve keeps the default). With one
    seed there is no error to measure: the lowest mean."""
    costs = [np.asarray(c, np.float64) for c in costs]
    best = int(np.argmin([c.mean() if np.isfinite(c.mean()) else np.inf for c in costs]))
    diff = costs[0] - costs[best]
    if best == 0 or diff.size < 2:
        return best
    return best if diff.mean() > diff.std(ddof=1) / np.sqrt(diff.size) else 0


def _check_metric_arg(name, metric):
    if not (callable(metric) or isinstance(metric, StatefulMetric)):
        raise ValueError(f"{name}: metric must be callable, got {metric!r}")


def fit(config: Config, train: Windows, metric, *, seeds: Sequence[int] = (0,),
        valid: Windows | None = None, label: str = "", checkpoint: str | None = None,
        segments: int = 1, shaper=None, verbose: bool = True) -> FitResult:
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
        validation cost is kept. With ``decision_head='quantile_net'`` and a tuple
        ``config.quantile_grad`` (the default), one run per value, and the one
        ``choose_value`` picks from their true validation costs kept (its
        ``result.config`` says which).
      label: prefix of progress lines.
      checkpoint: a file path; the run state is written there every
        ``config.checkpoint_every`` epochs, and a run started on an existing checkpoint
        resumes from it (bitwise the same result as an uninterrupted run). A
        checkpoint written by a different config, seeds or data raises ValueError.
      segments: StatefulMetric only: each batch is this many contiguous time
        segments of ``batch_size // segments`` windows, from as many equal stretches
        of ``train`` (1: one contiguous segment).
      shaper: start the loss shaper from these params, stacked over seeds (e.g.
        ``other.params['shaper']`` of a FitResult with the same seeds count and
        shaper config): fine-tuning a shaper learned elsewhere, or, with
        ``config.freeze_shaper``, training a fresh predictor on it (transfer).
      verbose: print progress lines to stderr (epoch, steps/s, ETA, costs) every
        ``config.log_every`` epochs; False: silent.
    """
    _check_metric_arg("fit", metric)
    return _loss2net(config, train, valid, seeds, metric, label=label,
                     checkpoint=checkpoint, segments=segments, shaper=shaper,
                     verbose=verbose)


def fit_sites(config: Config, trains: Mapping[str, Windows], metric, *,
              seeds: Sequence[int] = (0,), valids: Mapping[str, Windows] | None = None,
              label: str = "", checkpoint: str | None = None, segments: int = 1,
              shaper: Mapping | None = None, pad: bool | None = None,
              verbose: bool = True) -> dict[str, FitResult]:
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
    return _loss2net(config, trains, valids, seeds, metric, label=label,
                     checkpoint=checkpoint, segments=segments, sites=True, shaper=shaper,
                     pad=pad, verbose=verbose)


def fit_fixed_loss(config: Config, train: Windows, loss: Callable, *,
                   seeds: Sequence[int] = (0,), valid: Windows | None = None, metric=None,
                   label: str = "", checkpoint: str | None = None,
                   verbose: bool = True, hyper=None) -> FitResult:
    """Trains the same predictor on a fixed per-sample loss (a baseline).

    Same architecture, schedules, batch size and number of epochs as ``fit``
    (pre-training epochs are ordinary epochs here); eps is 0 throughout.

    Args:
      config: hyper-parameters (shaper fields are ignored).
      train: training windows.
      loss: ``loss(prediction [m], target [m]) -> ()``, e.g. ``l2n.losses.mse``.
      seeds: one run per seed, all vmapped.
      valid: validation windows; with ``config.select_best`` the epoch of lowest
        validation *loss* is kept (ordinary early stopping; tune any knob on the
        true metric afterwards, as ``l2n_jax.methods`` does).
      metric: the true metric, logged on training batches and on ``valid``.
      label: prefix of progress lines.
      checkpoint: a file path to write and resume from (see ``fit``).
      verbose: print progress lines (see ``fit``).
      hyper: with it, ``loss(prediction, target, hyper)`` (e.g.
        ``l2n.losses.pinball_at`` and a tau); see ``fit_fixed_loss_sites`` for a
        grid of them in one program.
    """
    if not callable(loss):
        raise ValueError(f"fit_fixed_loss: loss must be callable, got {loss!r}")
    name = getattr(loss, "__name__", "loss")
    return _run(config, train, valid, seeds, name, metric=metric, loss=loss, label=label,
                checkpoint=checkpoint, verbose=verbose, hyper=hyper)


def fit_fixed_loss_sites(config: Config, trains: Mapping[str, Windows], loss: Callable,
                         *, seeds: Sequence[int] = (0,),
                         valids: Mapping[str, Windows] | None = None, metric=None,
                         label: str = "", checkpoint: str | None = None,
                         pad: bool | None = None, verbose: bool = True,
                         hyper: Mapping | None = None) -> dict[str, FitResult]:
    """``fit_fixed_loss`` on several sites at once (see ``fit_sites``, also for
    ``pad``). ``hyper``: {site: theta} for ``loss(prediction, target, theta)``: a
    "site" may be the same data under another theta, so a whole grid of a loss's
    parameter (taus of the pinball loss) trains in one program."""
    if not callable(loss):
        raise ValueError(f"fit_fixed_loss_sites: loss must be callable, got {loss!r}")
    name = getattr(loss, "__name__", "loss")
    return _run(config, trains, valids, seeds, name, metric=metric, loss=loss,
                label=label, checkpoint=checkpoint, sites=True, pad=pad, verbose=verbose,
                hyper=hyper)


def fit_grid_sites(config: Config, trains: Mapping[str, Windows], metric,
                   grid: Mapping[str, Sequence[float]], *, seeds: Sequence[int] = (0,),
                   valids: Mapping[str, Windows] | None = None, label: str = "",
                   checkpoint: str | None = None, segments: int = 1,
                   pad: bool | None = None, verbose: bool = True
                   ) -> list[dict[str, FitResult]]:
    """``fit_sites`` at every point of a grid of Config values, all in ONE program.

    Args:
      grid: {field: [v_0, ..., v_{n-1}]}, fields of ``l2n_jax.grids.FIELDS``
        (noise_start, noise_end, lr_max, lr_min, shaper_lr), zipped: point ``i``
        is ``config.replace(field=v_i, ...)`` (build a product with
        ``itertools.product``). Each value is a traced per-run input, so the
        sites x points x seeds runs are one compiled program; a field that changes
        the program (a schedule kind, a size) raises ValueError.
      (the rest as in ``fit_sites``.)

    Returns:
      [{site: FitResult}] per grid point, each as ``fit_sites`` with that point's
      config gives (up to the float rounding of the batched program); its
      ``config`` is the point's.
    """
    _check_metric_arg("fit_grid_sites", metric)
    values = grids.points(config, grid)
    pairs = {f"{site}#{i}": (site, i) for i in range(len(values)) for site in trains}
    if len(pairs) != len(values) * len(trains):
        raise ValueError(f"fit_grid_sites: site names {list(trains)} collide with "
                         "the grid's run names")
    out = _run(config, {k: trains[s] for k, (s, _) in pairs.items()},
               None if valids is None else {k: valids[s] for k, (s, _) in pairs.items()},
               seeds, "loss2net", metric=metric, label=label, checkpoint=checkpoint,
               segments=segments, sites=True, pad=pad, verbose=verbose,
               hyper={k: values[i] for k, (_, i) in pairs.items()})
    return [{s: dataclasses.replace(out[f"{s}#{i}"], config=config.replace(**point))
             for s in trains} for i, point in enumerate(values)]


def fit_grid(config: Config, train: Windows, metric, grid: Mapping[str, Sequence[float]],
             *, seeds: Sequence[int] = (0,), valid: Windows | None = None,
             label: str = "", checkpoint: str | None = None, segments: int = 1,
             verbose: bool = True) -> list[FitResult]:
    """``fit`` at every point of a grid of Config values, all in ONE program::

        results = l2n.fit_grid(config, data.train, metric,
                               {"noise_start": [0.01, 0.03, 0.1]}, valid=data.valid)

    ``grid`` as in ``fit_grid_sites``; returns one FitResult per grid point, each
    as ``fit(config.replace(field=v_i), ...)`` gives (up to float rounding)."""
    _check_metric_arg("fit_grid", metric)
    out = fit_grid_sites(config, {"train": train}, metric, grid, seeds=seeds,
                         valids=None if valid is None else {"train": valid}, label=label,
                         checkpoint=checkpoint, segments=segments, verbose=verbose)
    return [r["train"] for r in out]
