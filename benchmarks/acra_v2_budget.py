"""acra_v2: Loss2Net's training budget (epochs x batch size), and its decision head,
chosen on VALIDATION.

v2 has 651-831 training periods against v1's ~31k training hours, so v1's budget
(14 epochs at batch 256: ~56 co-training steps) leaves Loss2Net untrained. Every
budget below trains the same Loss2Net (v1's architecture and learning rate) with
the same seeds; the choice is the budget of highest mean VALIDATION profit over the
sites, and the test profit is printed beside it for the record only.

    python benchmarks/acra_v2_budget.py --head=amount --out=benchmarks/results/acra_v2
    python benchmarks/acra_v2_budget.py --study=heads --out=benchmarks/results/acra_v2
    python benchmarks/acra_v2_budget.py --sites=S4c,S12c --budgets=300x64,600x64 \
        --stem=budget_contended --out=benchmarks/results/acra_v2
    python benchmarks/acra_v2_budget.py --study=heads --sites=S1 \
        --heads=amount,admit_st,admit_diff --out=benchmarks/results/acra_v2

Output: ``budget.csv`` (one row per site x budget x seed) and ``budget.md``; with
``--study=heads``, ``heads.csv`` / ``heads.md``: the chosen budget with each
``Config.decision_head`` (issue 19 item 5), Loss2Net and bm_split. A head is a spec
``head[/split][+field=value...]`` of ``acra_v2.head_config``, measured from the
engine's defaults for the head fields, so ``admit_diff`` is the 5%-floor head
without the admission input, and acra's default is
``admit_diff+admit_floor=0.01+shaper_input=admission``.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd
import l2n_jax as l2n
from l2n_jax.usecases import REGISTRY, acra_v2

BUDGETS = ((100, 64), (100, 256), (300, 64), (300, 256))  # (epochs, batch size)
HEADS = tuple(head + split for split in ("", "/split")
              for head in ("amount", "admit_st", "admit_diff"))


def _fit_rows(uc, ws, config, metric, seeds, label, keys):
    t0 = time.perf_counter()
    fit = l2n.fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                  label=f"acra_v2/{label}", verbose=False)
    wall = time.perf_counter() - t0
    rows = []
    for split in ("valid", "test"):
        windows = getattr(ws, split)
        df = l2n.evaluate(fit, windows, metric)
        # The use case's own columns: profit, accepted clients, set changes.
        df = df.assign(**uc.options().columns(df, fit.predict(windows.inputs), ws))
        for r in df.itertuples():
            rows.append({**keys, "seed": r.seed, "split": split, "profit": r.profit,
                         "accepted": r.accepted, "set_changes": r.set_changes,
                         "train_s": wall})
    print(f"{label}: {wall:.0f} s", flush=True)
    return rows


def _run(sites, seeds, variants, partial=None):
    """Every (label, Config, row keys) of ``variants`` on every site; the rows so
    far are written to ``partial`` (a csv path) after each fit, so a long study
    that is stopped keeps what it finished."""
    uc = REGISTRY["acra"]
    metric = uc.make_metric()
    rows = []
    for site in sites:
        ws = uc.load(site)
        for label, config, keys in variants:
            rows += _fit_rows(uc, ws, config, metric, seeds,
                              f"{site}/{label}", {"site": site, **keys})
            if partial is not None:
                pd.DataFrame(rows).to_csv(partial, index=False)
    return pd.DataFrame(rows)


def run(sites, seeds, budgets, head="admit_diff"):
    base = acra_v2.head_config(head)
    return _run(sites, seeds, [
        (f"e{e}b{b}", base.replace(epochs=e, batch_size=b, pretrain_epochs=max(1, e // 10),
                                   log_every=max(1, e // 5)), {"epochs": e, "batch_size": b})
        for e, b in budgets])


def run_heads(sites, seeds, specs=HEADS, partial=None):
    """Each head spec (``acra_v2.head_config``), with the assembler (loss2net) or,
    for ``head/split``, without (bm_split)."""
    variants = []
    for spec in specs:
        config = acra_v2.head_config(spec)
        method = "bm_split" if config.split_irs else "loss2net"
        head = spec.replace("/split", "")
        variants.append((f"{method}/{head}", config, {"method": method, "head": head}))
    return _run(sites, seeds, variants, partial)


def markdown_heads(df):
    """Mean valid/test profit, accepted clients and set changes per head."""
    t = df.groupby(["method", "head", "split", "site"], sort=False).agg(
        profit=("profit", "mean"), sd=("profit", "std"), accepted=("accepted", "mean"),
        changes=("set_changes", "mean")).reset_index()
    valid = df[df.split == "valid"].groupby(["method", "head"], sort=False).profit.mean()
    best = valid.idxmax()
    lines = ["# acra_v2: decision heads (mean normalised profit, higher is better; "
             "accepted = admitted clients per period; changes = share of periods "
             "admitting another set than the seed's most frequent one)\n",
             "| method | head | split | site | profit (mean ± std) | accepted | changes |",
             "|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        mark = " **(chosen)**" if (r.method, r["head"]) == best and r.split == "valid" else ""
        lines.append(f"| {r.method} | {r['head']} | {r.split} | {r.site} | "
                     f"{r.profit:.4f} ± {r.sd:.4f}{mark} | {r.accepted:.2f} | "
                     f"{r.changes:.2f} |")
    lines.append("\nmean valid profit: " + ", ".join(
        f"{m}/{h} {v:.4f}" for (m, h), v in valid.items()))
    return "\n".join(lines) + "\n", best


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
    p.add_argument("--study", choices=("budget", "heads"), default="budget")
    p.add_argument("--heads", default=None,
                   help="heads study: comma list of head[/split][+field=value...] "
                        "(default: all six heads x split)")
    p.add_argument("--head", default="admit_diff",
                   help="budget study: the head spec trained (acra_v2.head_config; "
                        "BUILD_NOTES §20i ran amount)")
    p.add_argument("--out", default="benchmarks/results/acra_v2")
    p.add_argument("--budgets", default=None,
                   help="budget study: comma list of EPOCHSxBATCH (default: the four above)")
    p.add_argument("--stem", default=None,
                   help="heads study: output file stem (default heads[_<sites>])")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.study == "heads":
        variants = HEADS if args.heads is None else tuple(args.heads.split(","))
        stem = args.stem or ("heads" if args.heads is None
                             else "heads_" + "_".join(args.sites.split(",")))
        df = run_heads(args.sites.split(","), tuple(range(args.seeds)), variants,
                       partial=out / f"{stem}.partial.csv")
        df.to_csv(out / f"{stem}.csv", index=False)
        text, best = markdown_heads(df)
        (out / f"{stem}.md").write_text(text)
        print(text, f"chosen (validation): {best}")
        return
    budgets = BUDGETS if args.budgets is None else tuple(
        tuple(int(x) for x in b.split("x")) for b in args.budgets.split(","))
    stem = args.stem or "budget"
    df = run(args.sites.split(","), tuple(range(args.seeds)), budgets, args.head)
    df.to_csv(out / f"{stem}.csv", index=False)
    text, best = markdown(df)
    (out / f"{stem}.md").write_text(text)
    print(text, f"chosen (validation): epochs={best[0]}, batch_size={best[1]}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
