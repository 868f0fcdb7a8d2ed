"""What level does ``decision_head='quantile_net'`` learn on netalloc, and what would
a level tuned on validation add?

    python benchmarks/quantile_level.py --sites=uk,eu \
        --out=benchmarks/results/netalloc/quantile_level.csv

Trains netalloc's config with the quantile head (one program per site, as
``l2n_train --usecase=netalloc --set=decision_head=quantile_net`` does) and reads
every seed's quantiles again with the learned level shifted by d logits, d on a
grid (0 = the delivered decisions). Writes one tidy row per site x seed x split x
shift, and prints per site: the learned level (tau, mean and std over test
decisions), the test cost at d = 0, at the per-seed shift of lowest validation
cost (the level a user would tune on validation, as the pinball's tau is), and at
the best shift on test (an oracle: the head-room a constant level leaves)
(BUILD_NOTES §18k).
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax import heads
from l2n_jax.usecases import REGISTRY

_SITES = flags.DEFINE_list("sites", ["uk", "eu"], "netalloc sites.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0..n-1.", lower_bound=1)
_BETA = flags.DEFINE_float("beta", 0.5, "SLA fee.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/netalloc/quantile_level.csv",
                           "Output CSV.")
SHIFTS = np.round(np.linspace(-3.0, 3.0, 61), 2)  # logits
CANDIDATES = jnp.linspace(-8.0, 8.0, 161)  # logits a plug-in decision may take
DRAWS = jax.scipy.special.logit((jnp.arange(200) + 0.5) / 200)  # the forecast's law


def plugin_cost(q, obs, metric):
    """Mean true cost of the plug-in decision: per sample, the candidate level whose
    expected true cost under the forecast quantiles (read at ``DRAWS``, as if they
    were the law of y) is lowest. A practitioner who knew the metric's formula
    would decide so; no test label is used. q [n, m, K], obs [n, ...]."""
    sample_cost = jax.vmap(metric)  # over samples
    draws = jax.vmap(lambda z: heads.interpolate_quantiles(q, jnp.full(q.shape[:-1], z)))(DRAWS)

    def expected(z):  # [n]: mean over draws of the cost of deciding level z
        d = heads.interpolate_quantiles(q, jnp.full(q.shape[:-1], z))
        return jnp.mean(jax.vmap(lambda y: sample_cost(d, y.reshape(obs.shape)))(draws), 0)

    best = jnp.argmin(jax.lax.map(expected, CANDIDATES), 0)  # [n]
    z = CANDIDATES[best][:, None] * jnp.ones(q.shape[:-1])
    return jnp.mean(sample_cost(heads.interpolate_quantiles(q, z), obs))


def shifted_costs(fit, windows, metric) -> tuple[jax.Array, ...]:
    """[seeds, shifts] mean cost with the level shifted; [seeds] the learned tau's mean
    and std over decisions; [seeds] the plug-in decision's cost."""
    net, cost_b = fit.networks["predictor"], jax.vmap(metric)
    inputs, obs = jnp.asarray(windows.inputs), jnp.asarray(windows.obs)
    eps = jnp.zeros(windows.targets.shape, jnp.float32)

    def one_seed(params):
        q, r = heads.split_quantiles(net.raw(params, inputs, eps)[0])
        z = heads.QUANTILE_SCALE * r
        at = lambda d: jnp.mean(cost_b(heads.interpolate_quantiles(q, z + d), obs))
        tau = jax.nn.sigmoid(z)
        return (jax.vmap(at)(jnp.asarray(SHIFTS)), jnp.mean(tau), jnp.std(tau),
                plugin_cost(q, obs, metric))

    return jax.lax.map(one_seed, fit.params["predictor"])


def main(argv):
    del argv
    uc = REGISTRY["netalloc"]
    metric = uc.make_metric(beta=_BETA.value)
    config, rows = uc.get_config().replace(decision_head="quantile_net"), []
    zero = int(np.argmin(np.abs(SHIFTS)))
    for site in _SITES.value:
        ws = uc.load(site)
        fit = l2n.fit(config, ws.train, metric, seeds=tuple(range(_SEEDS.value)),
                      valid=ws.valid, label=f"netalloc/{site}[quantile_net]")
        costs = {}
        for split in ("valid", "test"):
            costs[split], tau_mean, tau_std, plug = map(np.asarray, shifted_costs(
                fit, getattr(ws, split), metric))
            rows += [{"site": site, "seed": s, "split": split, "shift": d,
                      "cost": costs[split][s, i], "tau_mean": tau_mean[s],
                      "tau_std": tau_std[s], "plugin_cost": plug[s]}
                     for s in range(_SEEDS.value) for i, d in enumerate(SHIFTS)]
        test, pick = costs["test"], costs["valid"].argmin(1)
        tuned = test[np.arange(len(pick)), pick]
        print(f"{site}: learned tau {tau_mean.mean():.4f} (std over decisions "
              f"{tau_std.mean():.4f}); test cost at d=0 {test[:, zero].mean():.5f} "
              f"(median {np.median(test[:, zero]):.5f}); shift tuned on validation "
              f"{SHIFTS[pick].tolist()}: {tuned.mean():.5f} ± {tuned.std(ddof=1):.5f} "
              f"(median {np.median(tuned):.5f}); oracle shift on test "
              f"{SHIFTS[test.mean(0).argmin()]:+.2f}: {test.mean(0).min():.5f}; plug-in "
              f"decision (true metric, forecast quantiles) {plug.mean():.5f} ± "
              f"{plug.std(ddof=1):.5f} (median {np.median(plug):.5f})")
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
