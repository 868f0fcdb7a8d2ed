"""Power's Loss2Net at several decision heads, scored on validation and test.

    python benchmarks/power_heads.py --heads=amount,margin_net \
        --out=benchmarks/results/power/heads.csv

Trains ``usecases/power.get_config()`` with ``decision_head`` replaced (all 12
regions x seeds in one vmapped program per head, as ``l2n_train --usecase=power
--method=loss2net`` does: its test costs equal this script's) and writes one tidy
row per head x region x split x seed, so a head can be chosen on validation before
its test cost is read (BUILD_NOTES §18i).
"""

import pathlib

import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax.usecases import REGISTRY, power

_HEADS = flags.DEFINE_list("heads", ["amount", "margin_net"], "Config.decision_head values.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per head.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "benchmarks/results/power/heads.csv", "Output CSV.")


def main(argv):
    del argv
    uc = REGISTRY["power"]
    wss = {s: uc.load(s) for s in uc.sites}
    metric, rows = power.make_metric(), []
    for head in _HEADS.value:
        config = uc.get_config().replace(decision_head=head)
        fits = l2n.fit_sites(config, {s: w.train for s, w in wss.items()}, metric,
                             seeds=tuple(range(_SEEDS.value)),
                             valids={s: w.valid for s, w in wss.items()},
                             segments=power.SEGMENTS, label=f"power[{head}]")
        for site, fit in fits.items():
            for split in ("valid", "test"):
                scores = l2n.evaluate(fit, getattr(wss[site], split), metric)
                rows += [{"head": head, "site": site, "split": split, "seed": r.seed,
                          "cost": r.cost} for r in scores.itertuples()]
    df = pd.DataFrame(rows)
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df.groupby(["head", "split"])["cost"].mean().unstack().to_string())


if __name__ == "__main__":
    app.run(main)
