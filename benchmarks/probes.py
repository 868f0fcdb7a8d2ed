"""Issue 18's probe set: Loss2Net at its defaults against the losses a user would tune.

    python benchmarks/probes.py [--seeds=5] [--series=appliances,uk] \\
        [--probes=backlog,battery,escalation,sla_fee,quad_under] \\
        [--variants=default] [--baseline_head=amount] [--out=benchmarks/results/probes] [--quick]

Every (series, probe) of ``usecases/probes.py`` is one table of ``l2n.compare``:
Loss2Net (one row per ``--variants`` entry, a set of ``Config`` changes from
``usecases.probes.VARIANTS``) beside MSE, pinball with tau tuned on validation (grid, then a
finer grid), MSE + a tuned margin and linear AR + a tuned margin, all with the
same config (``usecases.probes.CONFIG``: ``Config()`` but a batch of 64, the series being short;
so the same two networks of the quantile head), the same split and the same seeds;
``--baseline_head=amount`` trains them on the paper's single predictor instead (the
table's "best tuned baseline" is the best over every head in the CSV). Stateful
probes train Loss2Net on ``SEGMENTS`` contiguous segments per batch; every method's
decisions are scored (and margins tuned, Loss2Net's epoch selected) as one sequence
over the split.

Writes under ``--out``: ``results.csv`` (tidy: series, probe, kind, method, seed,
test_cost, rmse, ...), ``results.md`` (per case: mean ± std, median, and Loss2Net's
median over the best tuned baseline's) and ``config.json``. ``--checkpoint_dir``
resumes an interrupted run; ``--merge`` keeps the rows of an earlier run that this
one does not replace (the committed table: the default run, then
``--baseline_head=amount --variants= --merge``). Loss2Net at the defaults trains
twice per case (``Config.quantile_grad`` 0 and 1, one chosen on validation; §18n).
"""

import itertools
import json
import pathlib
import platform
import time

import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax import registry
from l2n_jax.usecases import probes, quick_config

_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method (vmapped).", lower_bound=1)
_SERIES = flags.DEFINE_list("series", list(probes.SERIES), "Series.")
_PROBES = flags.DEFINE_list("probes", list(probes.PROBES), "Probe metrics.")
_VARIANTS = flags.DEFINE_list("variants", ["default"], "Loss2Net variants (VARIANTS keys).")
_METHODS = flags.DEFINE_list(
    "loss2net_methods", ["loss2net"], "Loss2Net's registry methods each variant runs "
    "(e.g. loss2net_tuned: quantile_grad 0 or 1, chosen on validation).")
_BASELINES = flags.DEFINE_bool("baselines", True, "Also run the tuned baselines.")
_BASELINE_HEAD = flags.DEFINE_string(
    "baseline_head", None, "Train the baselines with this decision_head instead of the "
    "config's (their method names get '[head]'; 'amount' is the paper's single predictor).")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget (tiny nets, 2 seeds).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/probes", "Output directory.")
_CKPT = flags.DEFINE_string("checkpoint_dir", None, "Checkpoint (and resume) directory.")
_MERGE = flags.DEFINE_bool(
    "merge", False, "Keep the rows of --out's results.csv that this run does not "
    "replace (same series, probe and method): one table from several runs.")

BASELINES = ("pinball_tuned", "mse_margin", "ar_margin", "mse")
TUNED = ("pinball_tuned", "mse_margin", "ar_margin")  # what "the best tuned baseline" means


def _config(changes: dict) -> l2n.Config:
    base = quick_config().replace(batch_size=64) if _QUICK.value else probes.CONFIG
    return base.replace(**changes)


def run_case(series: str, probe: str, seeds, variants, baselines: bool, ckpt) -> pd.DataFrame:
    """One (series, probe) table: Loss2Net variants, then the baselines."""
    data, metric = probes.load(series), probes.make_metric(probe)
    frames = []
    for variant, method in itertools.product(variants, _METHODS.value):
        start = time.perf_counter()
        changes, segments = probes.variant(variant, probe)
        rows = l2n.compare(data, metric, config=_config(changes), seeds=seeds,
                           methods=(method,), options=registry.Options(segments=segments),
                           checkpoint_dir=ckpt and f"{ckpt}/{series}_{probe}_{variant}").rows
        name = method if variant == "default" else f"{method}[{variant}]"
        frames.append(rows.assign(method=name, wall_s=time.perf_counter() - start))
    if baselines:
        start = time.perf_counter()
        segments = probes.variant("default", probe)[1]
        head = _BASELINE_HEAD.value
        rows = l2n.compare(data, metric, seeds=seeds, methods=BASELINES,
                           config=_config({"decision_head": head} if head else {}),
                           options=registry.Options(segments=segments),
                           checkpoint_dir=ckpt and f"{ckpt}/{series}_{probe}_baselines").rows
        if head:
            rows = rows.assign(method=rows["method"] + f"[{head}]")
        frames.append(rows.assign(wall_s=time.perf_counter() - start))
    kind = "stateful" if probe in probes.STATEFUL else "memoryless"
    return pd.concat(frames, ignore_index=True).assign(series=series, probe=probe,
                                                       kind=kind)


def table(df: pd.DataFrame) -> str:
    """Markdown: per case and method, mean ± std and median; then Loss2Net's
    median over the best tuned baseline's median (over every head they ran with)."""
    lines = ["| series | probe | method | test cost mean ± std | median | "
             "× best tuned | seeds |", "|---|---|---|---|---|---|---|"]
    for (series, probe), case in df.groupby(["series", "probe"], sort=False):
        medians = case.groupby("method")["test_cost"].median()
        tuned = medians.index.str.split("[").str[0].isin(TUNED)
        best = medians[tuned].min()  # NaN when no tuned baseline ran
        for method, g in case.groupby("method", sort=False):
            c = g["test_cost"]
            lines.append(f"| {series} | {probe} | {method} | {c.mean():.5f} ± {c.std():.5f} "
                         f"| {c.median():.5f} | {c.median() / best:.3f} | {len(c)} |")
    return "\n".join(lines) + "\n"


def _merged(old, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` after the rows of ``old`` (None: none) it does not replace."""
    if old is None:
        return new
    key = ["series", "probe", "method"]
    kept = old.merge(new[key].drop_duplicates(), on=key, how="left", indicator=True)
    return pd.concat([old[(kept["_merge"] == "left_only").to_numpy()], new],
                     ignore_index=True)


def main(argv):
    del argv
    seeds = tuple(range(2 if _QUICK.value else _SEEDS.value))
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    old = (pd.read_csv(out / "results.csv")
           if _MERGE.value and (out / "results.csv").exists() else None)
    start, frames = time.perf_counter(), []
    for series in _SERIES.value:
        for probe in _PROBES.value:
            print(f"== {series} / {probe}", flush=True)
            frames.append(run_case(series, probe, seeds, _VARIANTS.value,
                                   _BASELINES.value, _CKPT.value))
            _merged(old, pd.concat(frames)).to_csv(out / "results.csv", index=False)
    df = _merged(old, pd.concat(frames, ignore_index=True))
    front = ["series", "probe", "kind", "method", "seed", "test_cost"]
    df = df[front + [c for c in df.columns if c not in front]]
    df.to_csv(out / "results.csv", index=False)
    wall = time.perf_counter() - start
    command = "python benchmarks/probes.py " + " ".join(
        f"--{f.name}={','.join(f.value) if isinstance(f.value, list) else f.value}"
        for f in (_SEEDS, _SERIES, _PROBES, _VARIANTS, _METHODS, _QUICK, _BASELINE_HEAD)
        if f.value is not None)
    text = (f"Command: `{command}`\n\nMachine: {platform.machine()}, "
            f"{platform.processor() or 'cpu'}; wall time {wall / 60:.1f} min.\n\n"
            + table(df))
    (out / "results.md").write_text(text)
    (out / "config.json").write_text(json.dumps(
        {"version": l2n.__version__, "config": probes.CONFIG.to_dict(),
         "variants": {v: probes.VARIANTS[v] for v in _VARIANTS.value}}, indent=1, default=list))
    print(text)


if __name__ == "__main__":
    app.run(main)
