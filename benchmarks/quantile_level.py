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


def shifted_costs(fit, windows, metric) -> tuple[np.ndarray, np.ndarray]:
    """([seeds, shifts] mean cost with the level shifted, [seeds] mean learned tau)."""
    net, cost_b = fit.networks["predictor"], jax.vmap(metric)
    inputs, obs = jnp.asarray(windows.inputs), jnp.asarray(windows.obs)
    eps = jnp.zeros(windows.targets.shape, jnp.float32)

    def one_seed(params):
        q, r = heads.split_quantiles(net.raw(params, inputs, eps)[0])
        z = heads.QUANTILE_SCALE * r
        at = lambda d: jnp.mean(cost_b(heads.interpolate_quantiles(q, z + d), obs))
        tau = jax.nn.sigmoid(z)
        return jax.vmap(at)(jnp.asarray(SHIFTS)), jnp.mean(tau), jnp.std(tau)

    return jax.vmap(one_seed)(fit.params["predictor"])


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
            costs[split], tau_mean, tau_std = map(np.asarray, shifted_costs(
                fit, getattr(ws, split), metric))
            rows += [{"site": site, "seed": s, "split": split, "shift": d,
                      "cost": costs[split][s, i], "tau_mean": tau_mean[s],
                      "tau_std": tau_std[s]}
                     for s in range(_SEEDS.value) for i, d in enumerate(SHIFTS)]
        test, pick = costs["test"], costs["valid"].argmin(1)
        tuned = test[np.arange(len(pick)), pick]
        print(f"{site}: learned tau {tau_mean.mean():.4f} (std over decisions "
              f"{tau_std.mean():.4f}); test cost at d=0 {test[:, zero].mean():.5f} "
              f"(median {np.median(test[:, zero]):.5f}); shift tuned on validation "
              f"{SHIFTS[pick].tolist()}: {tuned.mean():.5f} ± {tuned.std(ddof=1):.5f} "
              f"(median {np.median(tuned):.5f}); oracle shift on test "
              f"{SHIFTS[test.mean(0).argmin()]:+.2f}: {test.mean(0).min():.5f}")
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
