"""The paper's toy ablation (appendix C, Table 3) on the ``toy`` use case.

Every variant is a registry method (``l2n_jax.methods``) run through
``methods.run(name, task)`` on the same data split, seeds and budget, under two
configs: ``default`` (the toy's robust config, ``toy.get_config()``) and
``literal`` (the same with ``Config.as_literal()``: every measure l2n_jax adds to
the paper off, the paper's Algorithm 1 at the toy's budget and architecture).

    python benchmarks/toy_ablation.py --seeds=5 --out=benchmarks/results/toy_ablation

writes ``<out>/results.csv`` (one row per site x variant x config x seed; rows are
appended after every training, and a rerun skips the (site, variant, config)
already there, so an interrupted run resumes) and ``<out>/results.md`` (both tables
beside the paper's). ``--epochs`` shrinks the budget for quick runs (then not the
paper's protocol; results.md says so). ``--from_csv`` only re-tabulates.
"""

import pathlib
import platform
import time

import jax
import numpy as np
import pandas as pd
from absl import app, flags, logging

from l2n_jax import methods
from l2n_jax.usecases import toy

# Paper Table 3 name -> registry method.
VARIANTS = {
    "Loss2Net": "loss2net",
    "ReLU shaper": "relu_shaper",
    "bm-merged": "bm_merged",
    "bm-split": "bm_split_mean",
    "bm-monolithic": "bm_monolithic",
    "noNoise": "no_noise",
    "fixedNoise": "fixed_noise",
    "fixedLR": "fixed_lr",
    "expLR": "exp_lr",
    "Grabocka": "alternating",
}
N_IN = {"n2": 2, "n4": 4, "n6": 6, "n12": 12}
# Paper Table 3: (mean, std) of the MAE at n_in = 2, 4, 6, 12.
PAPER = {
    "loss2net": [(0.018, 0.014), (0.020, 0.012), (0.018, 0.010), (0.010, 0.006)],
    "relu_shaper": [(0.024, 0.012), (0.023, 0.010), (0.021, 0.008), (0.012, 0.003)],
    "bm_merged": [(0.101, 0.081), (0.095, 0.073), (0.098, 0.076), (0.093, 0.079)],
    "bm_split_mean": [(0.119, 0.094), (0.116, 0.089), (0.090, 0.073), (0.088, 0.096)],
    "bm_monolithic": [(0.067, 0.042), (0.047, 0.026), (0.043, 0.026), (0.038, 0.024)],
    "no_noise": [(0.025, 0.010), (0.026, 0.010), (0.023, 0.009), (0.015, 0.003)],
    "fixed_noise": [(0.024, 0.019), (0.025, 0.017), (0.022, 0.012), (0.013, 0.006)],
    "fixed_lr": [(0.028, 0.013), (0.026, 0.013), (0.024, 0.009), (0.013, 0.004)],
    "exp_lr": [(0.024, 0.013), (0.022, 0.011), (0.022, 0.008), (0.013, 0.004)],
    "alternating": [(0.029, 0.015), (0.026, 0.012), (0.022, 0.011), (0.015, 0.006)],
}
_LABEL = {v: k for k, v in VARIANTS.items()}
COLUMNS = ["site", "variant", "config", "seed", "test_cost", "train_s", "noise_start"]

_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per variant.", lower_bound=1)
_SITES = flags.DEFINE_list("sites", list(N_IN), "toy sites (n_in).")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS.values()),
                              "Registry methods to run (default: all of Table 3).")
_CONFIGS = flags.DEFINE_list("configs", ["default", "literal"],
                             "Configs: 'default' (toy.get_config()) and/or 'literal'.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Override the epoch budget (quick runs; pre-training scaled to "
    "the toy's 5/30 share, at least 1).", lower_bound=2)
_OUT = flags.DEFINE_string("out", "benchmarks/results/toy_ablation", "Output folder.")
_CHECKPOINTS = flags.DEFINE_string(
    "checkpoint_dir", None, "Checkpoint trainings here (Task.checkpoint_dir), so an "
    "interrupted training resumes mid-run.")
_FROM_CSV = flags.DEFINE_bool("from_csv", False, "Only re-tabulate <out>/results.csv.")


def configs(epochs: int | None = None) -> dict:
    """{'default': the toy's config, 'literal': it with Config.as_literal()}."""
    base = toy.get_config()
    if epochs is not None:
        base = base.replace(epochs=epochs,
                            pretrain_epochs=max(1, round(base.pretrain_epochs * epochs
                                                         / base.epochs)))
    return {"default": base, "literal": base.as_literal()}


def run_one(name: str, config, site: str, seeds, checkpoint_dir=None) -> pd.DataFrame:
    """Tidy rows of one registry method on one toy site."""
    task = methods.Task(config, {site: toy.load(site)}, toy.make_metric(), tuple(seeds),
                        checkpoint_dir=checkpoint_dir, verbose=False)
    result = methods.run(name, task, usecase="toy")
    fit = result.fits.get(site)
    return pd.DataFrame({
        "site": site, "variant": name, "seed": result.rows["seed"],
        "test_cost": result.rows["cost"], "train_s": result.rows["train_s"],
        "noise_start": fit.config.noise_start if fit is not None else np.nan,
    })


def _cell(g) -> str:
    return f"{g.mean():.4f} ± {g.std():.4f}" if len(g) else "—"


def table(df: pd.DataFrame, config: str) -> str:
    """Ours (mean ± std over seeds) beside the paper's, per variant and n_in."""
    sub = df[df["config"] == config]
    sites = [s for s in N_IN if s in set(sub["site"])]
    head = ["variant"] + [f"n_in={N_IN[s]} {who}" for s in sites for who in ("ours",
                                                                             "paper")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [v for v in VARIANTS.values() if v in set(sub["variant"])]:
        cells = []
        for s in sites:
            m, sd = PAPER[name][list(N_IN).index(s)]
            cells += [_cell(sub[(sub["variant"] == name) & (sub["site"] == s)]["test_cost"]),
                      f"{m:.3f} ± {sd:.3f}"]
        lines.append(f"| {_LABEL[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Persistence costs 0.021-0.028 on every toy site and every healthy run stays below
# 0.05: a seed above this has diverged (its decisions left the data's range).
DIVERGED = 0.1


def robust_table(df: pd.DataFrame, config: str) -> str:
    """Median over seeds and diverged seeds (test cost > DIVERGED), per n_in: one
    diverged seed sets a mean ± std by itself."""
    sub = df[df["config"] == config]
    sites = [s for s in N_IN if s in set(sub["site"])]
    lines = ["| variant | " + " | ".join(f"n_in={N_IN[s]}" for s in sites) + " |",
             "|" + "---|" * (len(sites) + 1)]
    for name in [v for v in VARIANTS.values() if v in set(sub["variant"])]:
        cells = []
        for s in sites:
            c = sub[(sub["variant"] == name) & (sub["site"] == s)]["test_cost"]
            cells.append(f"{c.median():.4f} [{int((c > DIVERGED).sum())}/{len(c)}]"
                         if len(c) else "—")
        lines.append(f"| {_LABEL[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ordering(df: pd.DataFrame, config: str) -> str:
    """Variants from best to worst by mean cost over the sites run, ours and the
    paper's (over the same sites)."""
    sub = df[df["config"] == config]
    names = [v for v in VARIANTS.values() if v in set(sub["variant"])]
    # Only the sites every variant ran on, so that the means compare like with like.
    sites = [s for s in N_IN if set(sub[sub["site"] == s]["variant"]) >= set(names)]
    if not sites:
        return "Ordering: no site has every variant yet.\n"
    sub = sub[sub["site"].isin(sites)]
    by_site = sub.groupby(["variant", "site"])["test_cost"]
    paper = {n: np.mean([PAPER[n][list(N_IN).index(s)][0] for s in sites]) for n in names}

    def ranked(values, digits):
        return " < ".join(f"{_LABEL[n]} ({values[n]:.{digits}f})"
                          for n in sorted(names, key=lambda n: values[n]))

    where = ", ".join(str(N_IN[s]) for s in sites)
    return (f"Ordering, best first, over n_in = {where}:\n\n"
            f"* ours, mean of the per-n_in means: {ranked(by_site.mean().groupby('variant').mean(), 4)}\n"
            f"* ours, mean of the per-n_in medians: {ranked(by_site.median().groupby('variant').mean(), 4)}\n"
            f"* paper, mean of the per-n_in means: {ranked(paper, 3)}\n")


def markdown(df: pd.DataFrame, header: str) -> str:
    parts = [header]
    for config in [c for c in ("default", "literal") if c in set(df["config"])]:
        parts += [f"## Ours, {config} config, beside the paper's Table 3\n",
                  table(df, config), ordering(df, config),
                  f"Median test cost over seeds [seeds diverged: cost > {DIVERGED}], "
                  f"{config} config:\n", robust_table(df, config)]
    noise = df[df["variant"] == "fixed_noise"].groupby("site")["noise_start"].first()
    if len(noise):
        parts.append("fixedNoise std (variance = 3% of the mean scaled training target): "
                     + ", ".join(f"{s} {v:.4f}" for s, v in noise.items()) + "\n")
    return "\n".join(parts)


def main(argv):
    del argv
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    md = out / "results.md"
    if _FROM_CSV.value:
        header = md.read_text().split("\n## ", 1)[0] if md.exists() else ""
        md.write_text(markdown(done, header))
        return
    table_configs = configs(_EPOCHS.value)
    seeds = tuple(range(_SEEDS.value))
    keys = set(zip(done["site"], done["variant"], done["config"]))
    t_start = time.perf_counter()
    # Site-major: an interrupted run leaves whole sites of both tables.
    for site in _SITES.value:
        for config in _CONFIGS.value:
            for name in _VARIANTS.value:
                if (site, name, config) in keys:
                    continue
                ckpt = (None if _CHECKPOINTS.value is None
                        else str(pathlib.Path(_CHECKPOINTS.value) / config / site))
                t0 = time.perf_counter()
                rows = run_one(name, table_configs[config], site, seeds, ckpt)
                rows["config"] = config
                done = pd.concat([done, rows[COLUMNS]], ignore_index=True)
                done.to_csv(csv, index=False)
                logging.info("%s %s %s: %.5f ± %.5f (%.0f s)", config, site, name,
                             rows["test_cost"].mean(), rows["test_cost"].std(),
                             time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    budget = table_configs["default"]
    flags_used = [f"--seeds={_SEEDS.value}"] + [
        f"--{h.name}={h.value if not isinstance(h.value, list) else ','.join(h.value)}"
        for h in (_SITES, _VARIANTS, _CONFIGS, _EPOCHS, _CHECKPOINTS) if h.present
    ] + [f"--out={_OUT.value}"]
    header = (
        "# toy ablation (paper appendix C, Table 3): test MAE, mean ± std over seeds\n\n"
        f"Command: `python benchmarks/toy_ablation.py {' '.join(flags_used)}` — "
        f"{platform.processor() or platform.machine()}, {jax.device_count()} "
        f"{jax.default_backend()} device(s); this invocation {wall:.0f} s (total "
        f"training time in the CSV: {done.groupby(['site', 'variant', 'config'])['train_s'].first().sum():.0f} s).\n\n"
        f"Budget: {budget.epochs} epochs at batch {budget.batch_size} for every variant "
        f"(default config: {budget.pretrain_epochs} of them MSE pre-training; literal: "
        f"none), seeds {seeds[0]}..{seeds[-1]}, the toy's data split."
        + ("" if _EPOCHS.value is None else
           f" **Reduced budget** (the toy's default is {toy.get_config().epochs} "
           "epochs): not the paper's protocol.")
        + "\n"
    )
    md.write_text(markdown(done, header))
    print(md.read_text())


if __name__ == "__main__":
    app.run(main)
