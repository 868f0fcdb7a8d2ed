"""netalloc Loss2Net over a grid of one Config value, each point scored on
validation and test, and the point a user would pick on validation per seed.

    python benchmarks/netalloc_grid.py --site=uk --field=noise_start \
        --values=0.02,0.05,0.1,0.3 --out=benchmarks/results/netalloc/grid_uk_noise_start.csv

The grid trains as one program (``l2n.fit_grid``: each point is one more run on the
run axis); ``--field`` is one of ``l2n_jax.grids.FIELDS``. Writes one tidy row per
point x split x seed and prints the mean / median per point and the test cost of
the per-seed validation choice (BUILD_NOTES §18j: is it the noise schedule or the
learning rate that keeps Loss2Net behind the tuned pinball on uk?).
"""

import pathlib
import time

import numpy as np
import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax import grids
from l2n_jax.usecases import REGISTRY, netalloc

_SITE = flags.DEFINE_string("site", "uk", "netalloc site.")
_FIELD = flags.DEFINE_enum("field", "noise_start", list(grids.FIELDS), "Config field.")
_VALUES = flags.DEFINE_list("values", ["0.02", "0.05", "0.1", "0.3"], "Grid values.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0..n-1.", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "Output CSV (default: "
                           "benchmarks/results/netalloc/grid_<site>_<field>.csv).")


def main(argv):
    del argv
    site, field = _SITE.value, _FIELD.value
    values = [float(v) for v in _VALUES.value]
    uc = REGISTRY["netalloc"]
    ws, metric = uc.load(site), netalloc.make_metric()
    t0 = time.perf_counter()
    fits = l2n.fit_grid(uc.get_config(), ws.train, metric, {field: values},
                        seeds=tuple(range(_SEEDS.value)), valid=ws.valid,
                        label=f"{site}[{field}]")
    rows = [{"site": site, "field": field, "value": v, "split": split, "seed": r.seed,
             "cost": r.cost}
            for v, fit in zip(values, fits) for split in ("valid", "test")
            for r in l2n.evaluate(fit, getattr(ws, split), metric).itertuples()]
    df = pd.DataFrame(rows)
    out = pathlib.Path(_OUT.value or
                       f"benchmarks/results/netalloc/grid_{site}_{field}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df.groupby(["value", "split"])["cost"].agg(["mean", "std", "median"])
          .unstack().to_string())
    cost = df.pivot_table(index="seed", columns=["split", "value"], values="cost")
    picks = cost["valid"].idxmin(axis=1)
    chosen = np.array([cost["test"].loc[s, v] for s, v in picks.items()])
    print(f"chosen on validation per seed: {picks.tolist()}; test cost "
          f"{chosen.mean():.5f} ± {chosen.std(ddof=1):.5f} (median "
          f"{np.median(chosen):.5f}); {time.perf_counter() - t0:.0f} s; wrote {out}")


if __name__ == "__main__":
    app.run(main)
