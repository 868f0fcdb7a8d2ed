"""A use case's Loss2Net at several decision heads, scored on validation and test,
and the head a user would pick on validation.

    python benchmarks/heads.py --usecase=power --heads=amount,margin_net \
        --out=benchmarks/results/power/heads.csv
    python benchmarks/heads.py --usecase=netalloc --beta=0.1 \
        --heads=amount,quantile_net --out=benchmarks/results/netalloc/heads_beta0.1.csv

Trains the use case's ``get_config()`` with ``decision_head`` replaced (every site x
seed in one vmapped program per head, as ``l2n_train --usecase=... --method=loss2net``
does for a use case with ``batch_sites``: its test costs equal this script's) and
writes one tidy row per head x site x split x seed, so that a head can be chosen on
validation before its test cost is read (BUILD_NOTES §18i, §18k). Prints each
head's test cost per site and that of two choices made on validation: per seed
(the head of lower validation cost) and per site (the head of lower mean
validation cost over seeds). ``--summarize`` prints that for the rows already in
``--out`` (e.g. several heads appended from separate runs) without training.
"""

import pathlib

import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax.usecases import REGISTRY

_USECASE = flags.DEFINE_enum("usecase", "power", ["power", "netalloc", "toy"], "Use case.")
_HEADS = flags.DEFINE_list("heads", ["amount", "margin_net"], "Config.decision_head values.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per head.", lower_bound=1)
_BETA = flags.DEFINE_float("beta", None, "netalloc only: the SLA fee (default: its own).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/power/heads.csv", "Output CSV.")
_SUMMARIZE = flags.DEFINE_bool("summarize", False, "Only print the choices of --out's rows.")


def choices(df: pd.DataFrame) -> pd.DataFrame:
    """Per site: each head's mean test cost, and the test cost of the head chosen on
    validation per seed and per site (columns 'per seed', 'per site')."""
    cost = df.pivot_table(index=["site", "seed"], columns=["split", "head"], values="cost")
    table = cost["test"].groupby("site").mean()
    per_seed = cost["valid"].idxmin(axis=1)
    table["per seed"] = pd.Series(
        [cost["test"].loc[k, h] for k, h in per_seed.items()],
        index=per_seed.index).groupby("site").mean()
    site_pick = cost["valid"].groupby("site").mean().idxmin(axis=1)
    table["per site"] = [table.loc[s, h] for s, h in site_pick.items()]
    table["site's pick"] = site_pick
    return table


def summarize(df: pd.DataFrame) -> None:
    """Prints each head's mean cost per split and the validation choices per site."""
    print(df.groupby(["head", "split"])["cost"].mean().unstack().to_string())
    table = choices(df)
    with pd.option_context("display.float_format", lambda v: f"{v:.5f}"):
        print(table.to_string())
    means = table.drop(columns=["site's pick"]).mean().round(5).to_dict()
    print(f"mean over sites: {means}")


def main(argv):
    del argv
    if _SUMMARIZE.value:
        summarize(pd.read_csv(_OUT.value))
        return
    uc = REGISTRY[_USECASE.value]
    params = {} if _BETA.value is None else {"beta": _BETA.value}
    if params and uc.name != "netalloc":
        raise app.UsageError("--beta applies to netalloc only")
    wss = {s: uc.load(s) for s in uc.sites}
    metric, segments, rows = uc.make_metric(**params), uc.options(**params).segments, []
    for head in _HEADS.value:
        config = uc.get_config().replace(decision_head=head)
        fits = l2n.fit_sites(config, {s: w.train for s, w in wss.items()}, metric,
                             seeds=tuple(range(_SEEDS.value)),
                             valids={s: w.valid for s, w in wss.items()},
                             segments=segments, label=f"{uc.name}[{head}]")
        for site, fit in fits.items():
            for split in ("valid", "test"):
                scores = l2n.evaluate(fit, getattr(wss[site], split), metric)
                rows += [{"head": head, "site": site, "split": split, "seed": r.seed,
                          "cost": r.cost} for r in scores.itertuples()]
    df = pd.DataFrame(rows)
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    summarize(df)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
