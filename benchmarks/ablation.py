"""Robustness ablation of Loss2Net co-training on ``netalloc`` (per seed).

Variants: the literal paper algorithm (``Config.literal``), the literal algorithm
plus ONE added measure, and all measures (the default config). Same architecture
sizes, data split and epoch budget for every variant. A run is flagged
``collapsed`` when it under-provisions (nearly) always on test (the flat-fee
plateau) and ``diverged`` when its decisions run far from the data (test RMSE above
a quarter of the training range; every healthy run stays below 0.1).

    python benchmarks/ablation.py --seeds=5 --out=benchmarks/results/ablation

writes ``<out>.csv`` (one row per site x variant x seed) and ``<out>.md``.
"""

import pathlib
import platform
import time

import jax
import pandas as pd
from absl import app, flags, logging

import l2n_jax as l2n
from l2n_jax.usecases import netalloc

_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per variant.", lower_bound=1)
_SITES = flags.DEFINE_list("sites", list(netalloc.FILES), "netalloc sites.")
_VARIANTS = flags.DEFINE_list("variants", None, "Subset of variants (default all).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Override epochs (quick runs).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/ablation", "Output path stem.")
_FROM_CSV = flags.DEFINE_bool(
    "from_csv", False,
    "Only re-flag <out>.csv (collapsed/diverged) and re-tabulate it into <out>.md "
    "(no training).",
)


def flag_failures(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["collapsed"] = df["under_rate"] > 0.95
    df["diverged"] = (df["rmse"] > 0.25) & ~df["collapsed"]
    return df


def variants(base: l2n.Config) -> dict[str, l2n.Config]:
    """Literal paper variant, literal + one measure each, and all measures."""
    literal = l2n.Config.literal(
        epochs=base.epochs,
        batch_size=base.batch_size,
        ir_mlp=base.ir_mlp,
        assembler=base.assembler,
        shaper_hidden=base.shaper_hidden,
        log_every=base.log_every,
    )
    measures = {
        "+shaper_lr=1e-3": dict(shaper_lr=base.shaper_lr),
        "+forecast_skip": dict(forecast_skip=True),
        "+pretrain": dict(pretrain_epochs=base.pretrain_epochs),
        "+replay": dict(replay_size=base.replay_size or 4096),
        "+select_best": dict(select_best=True),
        "+range_penalty": dict(range_penalty=10.0),
        "+shaper_warmup": dict(shaper_warmup_epochs=2),
    }
    out = {"literal": literal}
    out.update({name: literal.replace(**kw) for name, kw in measures.items()})
    out["all (default)"] = base
    return out


def main(argv):
    del argv
    out = pathlib.Path(_OUT.value)
    if _FROM_CSV.value:
        df = flag_failures(pd.read_csv(out.with_suffix(".csv")))
        df.to_csv(out.with_suffix(".csv"), index=False)
        header = out.with_suffix(".md").read_text().split("\n\n", 1)[0]
        out.with_suffix(".md").write_text(header + "\n\n" + markdown(df))
        print(markdown(df))
        return
    base = netalloc.get_config()
    if _EPOCHS.value:
        base = base.replace(epochs=_EPOCHS.value, pretrain_epochs=min(10, _EPOCHS.value // 3))
    table = variants(base)
    names = _VARIANTS.value or list(table)
    metric = netalloc.make_metric()
    seeds = tuple(range(_SEEDS.value))
    rows = []
    t_start = time.perf_counter()
    for site in _SITES.value:
        ws = netalloc.load(site)
        for name in names:
            t0 = time.perf_counter()
            result = l2n.fit(table[name], ws.train, metric, seeds=seeds, valid=ws.valid,
                             label=f"{site}/{name}")
            df = l2n.evaluate(result, ws.test, metric)
            df["site"], df["variant"], df["train_s"] = site, name, time.perf_counter() - t0
            rows.append(df)
            logging.info("%s %s: %s", site, name, df["cost"].round(4).tolist())
    df = flag_failures(pd.concat(rows, ignore_index=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    header = (
        f"Command: `python benchmarks/ablation.py --seeds={_SEEDS.value}"
        f"{' --epochs=%d' % _EPOCHS.value if _EPOCHS.value else ''}` — "
        f"{platform.processor() or platform.machine()}, {jax.device_count()} "
        f"{jax.default_backend()} device(s), {time.perf_counter() - t_start:.0f} s\n\n"
    )
    out.with_suffix(".md").write_text(header + markdown(df))
    print(markdown(df))


def markdown(df: pd.DataFrame) -> str:
    """Per-seed test costs, mean ± std, and collapse/divergence counts per variant."""
    lines = ["| site | variant | test cost per seed | mean ± std | collapsed | diverged |",
             "|---|---|---|---|---|---|"]
    for (site, name), g in df.groupby(["site", "variant"], sort=False):
        per_seed = " ".join(f"{c:.4f}" for c in g["cost"])
        lines.append(
            f"| {site} | {name} | {per_seed} | {g['cost'].mean():.4f} ± "
            f"{g['cost'].std():.4f} | {int(g['collapsed'].sum())}/{len(g)} | "
            f"{int(g['diverged'].sum())}/{len(g)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)
