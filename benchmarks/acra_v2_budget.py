"""acra_v2: Loss2Net's training budget (epochs x batch size) chosen on VALIDATION.

v2 has 651-831 training periods against v1's ~31k training hours, so v1's budget
(14 epochs at batch 256: ~56 co-training steps) leaves Loss2Net untrained. Every
budget below trains the same Loss2Net (v1's architecture and learning rate) with
the same seeds; the choice is the budget of highest mean VALIDATION profit over the
sites, and the test profit is printed beside it for the record only.

    python benchmarks/acra_v2_budget.py --out=benchmarks/results/acra_v2

Output: ``budget.csv`` (one row per site x budget x seed) and ``budget.md``.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd

import l2n_jax as l2n
from l2n_jax.usecases import REGISTRY

BUDGETS = ((100, 64), (100, 256), (300, 64), (300, 256))  # (epochs, batch size)


def run(sites, seeds, budgets):
    uc = REGISTRY["acra_v2"]
    metric, base = uc.make_metric(), uc.get_config()
    rows = []
    for site in sites:
        ws = uc.load(site)
        for epochs, batch in budgets:
            config = base.replace(epochs=epochs, batch_size=batch,
                                  pretrain_epochs=max(1, epochs // 10),
                                  log_every=max(1, epochs // 5))
            t0 = time.perf_counter()
            fit = l2n.fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                          label=f"acra_v2/{site}/e{epochs}b{batch}", verbose=False)
            wall = time.perf_counter() - t0
            for split in ("valid", "test"):
                df = l2n.evaluate(fit, getattr(ws, split), metric)
                for seed, cost in zip(df["seed"], df["cost"]):
                    rows.append({"site": site, "epochs": epochs, "batch_size": batch,
                                 "seed": seed, "split": split, "profit": -cost,
                                 "train_s": wall})
            print(f"{site} e{epochs} b{batch}: {wall:.0f} s", flush=True)
    return pd.DataFrame(rows)


def markdown(df):
    t = df.pivot_table(index=["epochs", "batch_size"], columns=["split", "site"],
                       values="profit", aggfunc="mean")
    valid = df[df.split == "valid"].groupby(["epochs", "batch_size"]).profit.mean()
    best = valid.idxmax()
    lines = ["# acra_v2: Loss2Net budget chosen on validation (mean normalised profit, "
             "higher is better)\n",
             "| epochs | batch | " + " | ".join(f"{s} {site}" for s, site in t.columns)
             + " | mean valid |", "|---" * (len(t.columns) + 3) + "|"]
    for (e, b), row in t.iterrows():
        mark = " **(chosen)**" if (e, b) == best else ""
        lines.append(f"| {e} | {b} | " + " | ".join(f"{v:.4f}" for v in row)
                     + f" | {valid[(e, b)]:.4f}{mark} |")
    return "\n".join(lines) + "\n", best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", default="S4,S12c")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/acra_v2")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = run(args.sites.split(","), tuple(range(args.seeds)), BUDGETS)
    df.to_csv(out / "budget.csv", index=False)
    text, best = markdown(df)
    (out / "budget.md").write_text(text)
    print(text, f"chosen (validation): epochs={best[0]}, batch_size={best[1]}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
