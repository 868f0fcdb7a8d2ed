"""Results tables: the Markdown summary of tidy rows (one per site x method x seed).

The rows come from ``l2n_jax.methods.run`` (every method at the same budget, knobs
tuned on validation with the true metric).
"""

import numpy as np
import pandas as pd


def summary_table(df: pd.DataFrame, reference: str = "loss2net") -> str:
    """Markdown: mean +- std of test cost and forecast RMSE per site x method.

    Adds the ratio of every method's mean cost to ``reference``'s on the same site.
    """
    g = df.groupby(["site", "method"], sort=False)
    stats = g.agg(
        cost_mean=("test_cost", "mean"),
        cost_std=("test_cost", "std"),
        rmse_mean=("forecast_rmse", "mean"),
        under=("under_rate", "mean"),
        n=("seed", "count"),
    ).reset_index()
    lines = [
        "| site | method | test cost (mean ± std) | × " + reference
        + " | forecast RMSE | under-provision rate | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for site, block in stats.groupby("site", sort=False):
        ref = block.loc[block["method"] == reference, "cost_mean"]
        ref = float(ref.iloc[0]) if len(ref) else float("nan")
        for _, r in block.iterrows():
            std = 0.0 if np.isnan(r.cost_std) else r.cost_std
            lines.append(
                f"| {site} | {r.method} | {r.cost_mean:.5f} ± {std:.5f} | "
                f"{r.cost_mean / ref:.2f} | {r.rmse_mean:.5f} | {r.under:.3f} | {r.n} |"
            )
    return "\n".join(lines) + "\n"


