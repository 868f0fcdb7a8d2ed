"""The Loss2Net variants of the paper's toy ablation (appendix C, Table 3) as
registry entries, every one at the task's budget: ReLU shaper, noNoise, fixedNoise,
fixedLR, expLR, bm-monolithic, and, for the toy (its target is the mean of its
inputs), bm-merged and bm-split with the per-series decisions averaged. Grabocka
is ``alternating`` (``l2n_jax.methods``). Run them with
``python benchmarks/toy_ablation.py``.
"""

import functools
from typing import Callable

import numpy as np

from l2n_jax.combinators import cotrained, train_sites
from l2n_jax.data import Windows, WindowSet
from l2n_jax.registry import Outcome, Task, register
def fixed_noise(task: Task):
    """fixedNoise: a constant exploration-noise std whose variance is 3% of the mean
    training target (scaled units), over all of the task's sites."""
    targets = np.concatenate([np.ravel(ws.train.targets) for ws in task.sites.values()])
    std = float(np.sqrt(0.03 * abs(float(targets.mean()))))
    return cotrained("fixed_noise", noise_schedule="fixed", noise_start=std)(task)


def mean_of_inputs(ws: WindowSet) -> Callable:
    """``combine(d [..., S]) -> [..., 1]``: per-series decisions (each in its own
    series' scaled units) to the task's one decision when the target is the mean
    of the input series, as the toy's is: their mean in original units, in the
    target's scaled units. A fixed map (the scalers), nothing learned."""
    if len(ws.target_columns) != 1:
        raise ValueError("mean_of_inputs: the task must have one target (the mean of "
                         f"its inputs), got {list(ws.target_columns)}")

    def combine(d):
        mean = ws.scaler.inverse(d, ws.input_columns).mean(-1, keepdims=True)
        return ws.scaler.transform(mean, ws.target_columns)

    return combine


def _per_series_windows(ws: WindowSet) -> WindowSet:
    """Targets = each series' own next value ([N, S]); obs (what the system
    reveals) unchanged."""

    def per_series(w: Windows) -> Windows:
        current = np.asarray(w.inputs)[:, :, -1, 0]
        return Windows(w.inputs, w.ir_targets, w.obs, w.ir_targets, current)

    return ws._replace(train=per_series(ws.train), valid=per_series(ws.valid),
                       test=per_series(ws.test))


def per_series(name: str, **config_changes) -> Callable:
    """Loss2Net with one decision per input series (``split_irs``: IR i forecasts
    series i, no assembler) that the system combines into the task's decision by
    ``mean_of_inputs``; the learner sees only the combined decision's cost. One
    program per site (a site's combination is its own scalers). With
    ``split_shaper`` each series also has its own shaper (bm-split); without, one
    shaper sees all the per-series decisions (bm-merged)."""

    def method(task: Task):
        config = task.config.replace(split_irs=True, decision_head="amount",
                                     **config_changes)
        out = {}
        for site, ws in task.sites.items():
            combine = mean_of_inputs(ws)
            wss = _per_series_windows(ws)
            one = len(task.sites) == 1
            result = train_sites(
                config, {site: wss}, task.seeds, task.label if one else f"{task.label}@{site}",
                task.checkpoint(name if one else f"{name}_{site}"),
                metric=lambda d, o, c=combine: task.metric(c(d), o), verbose=task.verbose,
            )[site]
            decide = functools.lru_cache(maxsize=None)(
                lambda split, r=result, w=wss, c=combine: np.asarray(
                    c(r.predict(getattr(w, split).inputs)), np.float32))
            out[site] = Outcome(decide, decide, fit=result)
        return out

    return method


register("relu_shaper", cotrained("relu_shaper", shaper_activation="relu"),
         doc="Loss2Net with a ReLU loss shaper instead of the SIREN (Table 3 'ReLU')")
register("no_noise", cotrained("no_noise", noise_schedule="none"),
         doc="Loss2Net without exploration noise (Table 3 'noNoise')")
register("fixed_noise", fixed_noise,
         doc="Loss2Net with constant noise, variance 3% of the mean target "
             "(Table 3 'fixedNoise')")
register("fixed_lr", cotrained("fixed_lr", lr_schedule="fixed"),
         doc="Loss2Net at a constant learning rate lr_max (Table 3 'fixedLR')")
register("exp_lr", cotrained("exp_lr", lr_schedule="exp"),
         doc="Loss2Net with an exponentially decaying learning rate (Table 3 'expLR')")
register("bm_monolithic", cotrained("bm_monolithic", predictor_kind="monolithic"),
         doc="Loss2Net whose predictor is one block over all series, no per-series IRs "
             "(Table 3 'bm-monolithic')")
register("bm_merged", per_series("bm_merged"), usecases=("toy",),
         doc="per-series predictors (no assembler), decisions averaged, one shaper "
             "(Table 3 'bm-merged')")
register("bm_split_mean", per_series("bm_split_mean", split_shaper=True),
         usecases=("toy",),
         doc="independent Loss2Net per series (own predictor and shaper), decisions "
             "averaged (Table 3 'bm-split' on a one-decision task)")

