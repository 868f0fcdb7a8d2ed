"""acra v2: where Loss2Net's profit goes, term by term, against the baselines.

    python benchmarks/acra_v2_diagnosis.py --sites=S4,S8c,S12c --seeds=3 \
        --out=benchmarks/results/acra_v2

For each site, Loss2Net is trained at the use case's config with the head spec
``--head`` (``acra_v2.head_config``: ``amount``, ``admit_diff`` at the engine's head
defaults, ``admit_diff+admit_floor=0.01+shaper_input=admission`` = acra's default)
and its TEST decisions, with those of the knapsack (a), the per-client
factors (c) and the oracle (e), are broken down by the emulator
(``acra_qoe.profit_breakdown``): revenue, QoE cut, churn fees, opex, fixed cost and
the over-booking penalty (all per period, normalised as the profit is), the
admitted clients, the share of periods in which capacity binds (the total
reservation reaches C) and the mean allocation relative to the period's mean
demand of the admitted clients. Output: ``diagnosis.csv`` (site x policy x seed),
``diagnosis.md`` (means over seeds).
"""

import argparse
import pathlib

import numpy as np
import pandas as pd

import l2n_jax as l2n
from l2n_jax.usecases import REGISTRY
from l2n_jax.usecases import acra_qoe as qoe
from l2n_jax.usecases import acra_v2

TERMS = ("revenue", "cut", "churn", "opex", "fixed", "penalty")


def breakdown(decisions: np.ndarray, ws, site: str) -> dict:
    """Per-period means of the emulator's terms for decisions [N, S] on test."""
    s, horizon = acra_v2.parse_site(site)
    p = acra_v2.site_params(site)
    demand = np.asarray(ws.test.obs).reshape(len(decisions), s, horizon)
    out = qoe.evaluate(decisions, demand, p)
    norm = horizon * float(np.sum(p.prices))
    row = {t: out[t] / norm for t in TERMS}
    admitted = decisions > p.accept_eps
    ratio = decisions / np.maximum(demand.mean(-1), 1e-6)
    row.update(profit=out["normalised_profit"], accepted=out["accepted"],
               binding=out["binding"],
               alloc_over_demand=float(ratio[admitted].mean()) if admitted.any() else 0.0)
    return row


def run(sites, seeds, head):
    uc = REGISTRY["acra"]
    metric = uc.make_metric()
    config = acra_v2.head_config(head)
    rows = []
    for site in sites:
        ws = uc.load(site)
        fit = l2n.fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                      label=f"diagnosis/{site}", verbose=False)
        pols = acra_v2._policies(site)["test"]
        for seed, d in zip(seeds, np.asarray(fit.predict(ws.test.inputs))):
            rows.append({"site": site, "policy": "loss2net", "seed": seed,
                         **breakdown(d, ws, site)})
        for key in ("a", "c", "e"):
            rows.append({"site": site, "policy": f"({key})", "seed": 0,
                         **breakdown(np.asarray(pols[key]), ws, site)})
        print(f"{site}: done", flush=True)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame, head: str) -> str:
    cols = ["profit", *TERMS, "accepted", "binding", "alloc_over_demand"]
    t = df.groupby(["site", "policy"], sort=False)[cols].mean().reset_index()
    lines = [f"# acra v2: test profit by term (Loss2Net head {head!r}; per period, "
             "normalised as the profit; binding = share of periods at capacity)\n",
             "| site | policy | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for _, r in t.iterrows():
        lines.append(f"| {r.site} | {r.policy} | "
                     + " | ".join(f"{r[c]:.2f}" if c == "accepted" else f"{r[c]:.4f}"
                                  for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", default="S4,S8c,S12c")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--head", default="amount")
    p.add_argument("--stem", default=None,
                   help="output file stem (default diagnosis[_<head>])")
    p.add_argument("--out", default="benchmarks/results/acra_v2")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = run(args.sites.split(","), tuple(range(args.seeds)), args.head)
    stem = args.stem or ("diagnosis" if args.head == "amount" else f"diagnosis_{args.head}")
    df.to_csv(out / f"{stem}.csv", index=False)
    text = markdown(df, args.head)
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
