"""The loss-learning family side by side: one table per use case.

    python benchmarks/family.py [--usecases=netalloc,power,toy] [--seeds=5]
        [--sites=power=PJME,AEP,DEOK --sites=toy=n2,n12]

For each use case, the methods of ``--methods`` that apply to it and have no rows
yet train with one ``l2n_train --usecase=X --method=M1,M2,... --seeds=N`` into
``benchmarks/results/family/X/all/`` (resumable; methods in one workdir share
trainings through its checkpoints: ``taskmet_margin`` reuses ``taskmet``'s,
``taskmet_shaper`` the Loss2Net it trains), at the use case's default budget; rows
of any other workdir under ``family/X/`` count as done. Its rows are then put beside the
committed ``l2n_train`` table of the use case (``benchmarks/results/X/results.csv``:
Loss2Net and the tuned baselines, same config, seeds, sites and data split; the
committed-table test checks it is current) in ``benchmarks/results/family/X.md``
(mean ± std, median, ratio to Loss2Net, and each method's wall time) and
``X.csv`` (tidy, one row per site x method x seed).
"""

import os
import pathlib
import platform
import subprocess
import sys
import time

import pandas as pd
from absl import app, flags

from l2n_jax import tables
from l2n_jax.usecases import REGISTRY

_USECASES = flags.DEFINE_list("usecases", ["netalloc", "power", "toy"], "Use cases.")
_METHODS = flags.DEFINE_list(
    "methods", ["alternating", "taskmet", "taskmet_margin", "taskmet_shaper", "ala"],
    "Family methods to train (those that do not apply to a use case are skipped).")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds (the committed tables have 5).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/family", "Output directory.")
_SITES = flags.DEFINE_multi_string(
    "sites", [], "USECASE=SITE,SITE...: train the family methods on these sites only "
    "(e.g. power=PJME,AEP,DEOK); default: the use case's default sites.")
_TRAIN = flags.DEFINE_bool("train", True, "Train what is missing (else tabulate only).")

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# Where a method does not apply, and why (the table says so).
SKIP = {
    ("toy", "taskmet"): "no differentiable surrogate for the toy's hidden metric",
    ("toy", "taskmet_margin"): "no differentiable surrogate for the toy's hidden metric",
    ("acra_pjm", "taskmet"): "no differentiable surrogate for the emulator's profit",
    ("acra_pjm", "taskmet_margin"): "no differentiable surrogate for the emulator's profit",
    ("power", "taskmet_shaper"): "the power shaper reads v, produced only by the "
                                 "stateful metric's run in time order",
}


def _chosen_sites(usecase: str) -> list[str]:
    for item in _SITES.value:
        name, _, sites = item.partition("=")
        if name == usecase:
            return sites.split(",")
    uc = REGISTRY[usecase]
    return list(uc.default_sites or uc.sites)


def _train(usecase: str, methods: list[str], workdir: pathlib.Path) -> None:
    args = [f"--usecase={usecase}", f"--method={','.join(methods)}",
            f"--seeds={_SEEDS.value}", f"--workdir={workdir}",
            f"--sites={','.join(_chosen_sites(usecase))}"]
    print("== l2n_train " + " ".join(args), flush=True)
    cmd = [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())"]
    proc = subprocess.run(cmd + args, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode:
        raise RuntimeError(f"{usecase}: l2n_train failed (exit {proc.returncode})")


def _family_rows(out: pathlib.Path, usecase: str) -> pd.DataFrame:
    """Every row trained under ``out/usecase/*/`` (a workdir may hold several
    methods, e.g. ``--method=taskmet,taskmet_shaper``)."""
    paths = sorted((out / usecase).glob("*/results.csv"))
    if not paths:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def _done(out: pathlib.Path, usecase: str, method: str) -> bool:
    rows = _family_rows(out, usecase)
    if rows.empty:
        return False
    have = set(rows.loc[rows["method"] == method, "site"])
    return have >= set(_chosen_sites(usecase))


def _wall_times(df: pd.DataFrame) -> str:
    """Each method's wall time over the use case (train_s is per method call: one
    per site when sites train one after another, one for all of them when batched,
    e.g. power's committed rows: its 12 regions in one program)."""
    per = df.groupby(["method", "site"], sort=False)["train_s"].first()
    lines = ["| method | wall time of its l2n_train call(s), all seeds |", "|---|---|"]
    for method, times in per.groupby(level=0, sort=False):
        total = times.sum() if times.nunique() > 1 else times.iloc[0]
        lines.append(f"| {method} | {total:.0f} s |")
    return "\n".join(lines) + "\n"


def tabulate(usecase: str, out: pathlib.Path, skipped: dict) -> pd.DataFrame:
    uc = REGISTRY[usecase]
    frames = [pd.read_csv(RESULTS / usecase / "results.csv"), _family_rows(out, usecase)]
    df = pd.concat(frames, ignore_index=True).drop_duplicates(
        ["site", "method", "seed"], keep="first")
    df = df[df["site"].isin(_chosen_sites(usecase))]
    df.to_csv(out / f"{usecase}.csv", index=False)
    text = [f"# {usecase}: the loss-learning family beside Loss2Net and the tuned "
            "baselines\n\n",
            (uc.describe() if uc.describe else "") + "\n\n",
            f"Command: `python benchmarks/family.py --usecases={usecase} "
            f"--seeds={_SEEDS.value} --sites={usecase}={','.join(_chosen_sites(usecase))}`; "
            "family methods on those sites only; rows of "
            f"`benchmarks/results/{usecase}/results.csv` "
            f"(the committed `l2n_train --usecase={usecase} --seeds=5` table) plus "
            f"`l2n_train --usecase={usecase} --method=M --seeds={_SEEDS.value}` per family "
            f"method M. Machine: {platform.machine()}, {os.cpu_count()} CPU cores; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n",
            tables.summary_table(df), "\n",
            "Wall times: as measured, with whatever else shared the cores at the "
            "time (a family row and a committed row may come from different loads).\n\n",
            _wall_times(df)]
    if skipped:
        text.append("\nNot run here: " + "; ".join(f"`{m}` ({why})"
                                                   for m, why in skipped.items()) + ".\n")
    (out / f"{usecase}.md").write_text("".join(text))
    tables.plot_costs(df, out / f"{usecase}.png", title=usecase)
    return df


def main(argv):
    del argv
    out = pathlib.Path(_OUT.value)
    for usecase in _USECASES.value:
        if usecase not in REGISTRY:
            raise app.UsageError(f"unknown use case {usecase!r}; have {sorted(REGISTRY)}")
        skipped = {m: SKIP[usecase, m] for m in _METHODS.value if (usecase, m) in SKIP}
        missing = [m for m in _METHODS.value
                   if m not in skipped and not _done(out, usecase, m)]
        if missing and _TRAIN.value:
            _train(usecase, missing, out / usecase / "all")
        tabulate(usecase, out, skipped)
        print(f"wrote {out / usecase}.md", flush=True)


if __name__ == "__main__":
    app.run(main)
