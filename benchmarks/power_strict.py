"""power: Loss2Net ÷ the best tuned baseline per region, the baselines taken over
every head they were trained with (BUILD_NOTES §9c, §18n).

    python benchmarks/power_strict.py

The committed table (``benchmarks/results/power/results.csv``) trains its baselines
on the quantile head's two networks; earlier tables trained them on the paper's
single predictor (commit 76c8ca8) and on ``margin_net``'s (commit 6825852). "The
best tuned baseline" of a region is the lowest of every tuned baseline over the
three (git must hold those commits: a clone does). Prints, per region, the current
Loss2Net's mean and median ÷ that best, the median over regions and how many
regions are at or below 0.98.
"""

import io
import pathlib
import subprocess

import pandas as pd

TABLE = "benchmarks/results/power/results.csv"
EARLIER = ("76c8ca8", "6825852")  # the paper head's table, margin_net's
TUNED = ("pinball_tuned", "mse_margin", "persistence_margin", "ar_margin")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _at(rev: str) -> pd.DataFrame:
    text = subprocess.check_output(["git", "show", f"{rev}:{TABLE}"], cwd=ROOT, text=True)
    return pd.read_csv(io.StringIO(text))


def strict_ratios(current: pd.DataFrame, tables) -> pd.DataFrame:
    """[region x (mean, median)]: Loss2Net's statistic ÷ the lowest of the tuned
    baselines' same statistic over ``tables``."""
    rows = {}
    for site, own in current.groupby("site", sort=False):
        loss2net = own[own["method"] == "loss2net"]["test_cost"]
        rows[site] = {}
        for stat in ("mean", "median"):
            best = min(t[(t["site"] == site) & t["method"].isin(TUNED)]
                       .groupby("method")["test_cost"].agg(stat).min() for t in tables)
            rows[site][stat] = loss2net.agg(stat) / best
    return pd.DataFrame(rows).T


def main():
    current = pd.read_csv(ROOT / TABLE)
    ratios = strict_ratios(current, [current] + [_at(rev) for rev in EARLIER])
    print(ratios.round(3).to_string())
    for stat in ("mean", "median"):
        r = ratios[stat]
        print(f"by {stat}s: median over regions {r.median():.3f}, "
              f"{(r <= 0.98).sum()} of {len(r)} regions <= 0.98")


if __name__ == "__main__":
    main()
