"""The ``netalloc`` paper study (appendices D-E): Table 4 at two SLA fees, the
transfer matrices (Tables 5-7), noise sensitivity (Figs 5-6) and explainability
(Fig 8), on the three real traffic series.

    python benchmarks/netalloc.py                 # full budget (about 70 min, 2 cores)
    python benchmarks/netalloc.py --quick --out=/tmp/na   # smoke (about 3 min)

Every method trains all sites x all seeds in ONE vmapped program (``methods.run``;
the three series have different lengths, so they are padded and masked). Budget:
``usecases/netalloc.get_config()`` for every network method. Parts (``--parts``):

* ``table``: every method of ``l2n_train --usecase=netalloc`` at each ``--betas``
  (SLA fee; gamma = 1); fixed-loss trainings that do not depend on beta (MSE, MSLE,
  MAE, pinball) are trained once and reused.
* ``transfer``: at ``--betas[0]``, the shaper learned at site i (Table 4's Loss2Net,
  seed by seed) trains a fresh predictor at site j, frozen and fine-tuned; diagonal =
  Table 4's Loss2Net at j.
* ``sensitivity``: Loss2Net at ``--sensitivity_sites`` with no noise, ten fixed
  stds geometric 0.001 -> 0.1, and the exponential decay 0.1 -> 0.001.
* ``explain``: Fig 8 at ``--explain_site``: the learned loss against the error for
  the 10% lowest / highest demands beside the alpha-OMC loss, both predictors' error
  distributions, and heat maps of the learned and the true cost.

Writes under ``--out``: ``table4.csv``, ``transfer.csv``, ``sensitivity.csv``,
``sensitivity_curves.csv``, ``explain.csv``, ``shaper_error.csv`` (tidy: one row per site x method x seed,
or per curve point), ``results.md`` (all tables, with the command and the machine),
``timing.csv``, and PNGs (``fig5_noise.png``, ``fig6_curves.png``,
``fig8_loss_error.png``, ``fig8_heatmap.png``; need the ``[plot]`` extra). Every
training checkpoints under ``<out>/checkpoints``, so a killed run resumes.
"""

import json
import os
import pathlib
import platform
import sys
import time

import numpy as np
import pandas as pd
from absl import app, flags, logging

import jax

from l2n_jax import losses, methods, studies
from l2n_jax.usecases import REGISTRY, netalloc

import netalloc_figs  # benchmarks/netalloc_figs.py: the script's folder is on sys.path

_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget: tiny nets, 2 seeds, 2 taus.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method (vmapped).", lower_bound=1)
_BETAS = flags.DEFINE_list("betas", ["0.5", "0.1"],
                           "SLA fees (first = transfer/explain level).")
_PARTS = flags.DEFINE_list("parts", ["table", "transfer", "sensitivity", "explain"],
                           "What to run.")
_SENS_SITES = flags.DEFINE_list("sensitivity_sites", ["worldcup"],
                                "Sites of the noise sensitivity study.")
_EXPLAIN_SITE = flags.DEFINE_string("explain_site", "worldcup", "Site of Fig 8.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/netalloc_study", "Output directory.")

USECASE = "netalloc"


def _header(config, seeds, wall):
    cmd = "python " + " ".join([sys.argv[0]] + sys.argv[1:])
    return (
        f"Command: `{cmd}`  \n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, JAX "
        f"{jax.__version__} on {jax.devices()[0].platform}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall time of this "
        f"invocation {wall:.0f} s (trainings finished in an earlier run are restored "
        "from `checkpoints/`, not retrained; `timing.csv` has each part's seconds).  \n"
        f"Budget (every network method): {config.epochs} epochs at batch "
        f"{config.batch_size} of the same predictor (MLP IR {config.ir_mlp}, assembler "
        f"{config.assembler}); Loss2Net: {config.pretrain_epochs} of them MSE "
        f"pre-training, SIREN shaper {config.shaper_hidden}, replay "
        f"{config.replay_size}. {len(seeds)} seeds; gamma = {netalloc.GAMMA}.\n\n"
    )


def _mean_std(x):
    return f"{x.mean():.5f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.5f}"


def table4_markdown(df: pd.DataFrame) -> str:
    """Per beta: site x method test cost mean ± std and the ratio to Loss2Net."""
    out = []
    for beta, block in df.groupby("beta", sort=False):
        sites = list(dict.fromkeys(block["site"]))
        out.append(f"### beta = {beta:g} (alpha-OMC alpha = {beta / netalloc.GAMMA:g})\n\n")
        out.append("| method | " + " | ".join(f"{s}: cost | × L2N" for s in sites) + " |\n")
        out.append("|---|" + "---|---|" * len(sites) + "\n")
        ref = block[block["method"] == "loss2net"].groupby("site")["test_cost"].mean()
        for method, rows in block.groupby("method", sort=False):
            cells = []
            for s in sites:
                c = rows.loc[rows["site"] == s, "test_cost"]
                cells.append(f"{_mean_std(c)} | {c.mean() / ref[s]:.2f}")
            out.append(f"| {method} | " + " | ".join(cells) + " |\n")
        out.append("\n")
    return "".join(out)


def run_table(config, wss, seeds, betas, out, ckpt, options_for):
    frames, fits, timing = [], {}, []
    path = out / "table4.csv"
    cache = methods.FitCache()  # beta-free trainings are shared across betas
    for beta in betas:
        metric = netalloc.make_metric(beta=beta)
        options = options_for(beta)
        fits[beta] = {}
        for method in REGISTRY[USECASE].methods:
            # Only Loss2Net and alpha-OMC depend on beta; the other trainings share
            # checkpoints (and, in-process, results) across betas.
            per_beta = method in ("loss2net", "alpha_omc")
            ckpt_dir = str(ckpt / (f"beta_{beta:g}" if per_beta else "shared"))
            t0 = time.perf_counter()
            task = methods.Task(config, wss, metric, seeds, options,
                                label=f"beta={beta:g}", checkpoint_dir=ckpt_dir,
                                cache=cache)
            result = methods.run(method, task, USECASE)
            df = result.rows
            timing.append({"part": "table", "beta": beta, "method": method,
                           "seconds": time.perf_counter() - t0})
            if per_beta:
                fits[beta][method] = result.fits
            df = df.rename(columns={"cost": "test_cost"})
            df.insert(0, "usecase", USECASE)
            df.insert(1, "beta", beta)
            frames.append(df)
            pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return pd.concat(frames, ignore_index=True), fits, timing


def transfer_markdown(df: pd.DataFrame, table: pd.DataFrame, beta: float) -> str:
    """Matrices: rows = target site j, columns = source site i; plus references."""
    sites = list(dict.fromkeys(table["site"]))
    ref = table[table["beta"] == beta].groupby(["site", "method"])["test_cost"]
    means = ref.mean()
    out = []
    for method in ("frozen", "finetune"):
        block = df[df["method"] == method]
        out.append(f"### {'Frozen' if method == 'frozen' else 'Fine-tuned'} shaper "
                   f"(beta = {beta:g}); diagonal = Loss2Net at the target site\n\n")
        out.append("| target \\ shaper from | " + " | ".join(sites)
                   + " | α-OMC | best tuned baseline |\n")
        out.append("|---|" + "---|" * (len(sites) + 2) + "\n")
        for j in sites:
            cells = []
            for i in sites:
                if i == j:
                    c = table[(table["beta"] == beta) & (table["site"] == j)
                              & (table["method"] == "loss2net")]["test_cost"]
                    cells.append(f"**{_mean_std(c)}**")
                else:
                    c = block[(block["source"] == i) & (block["site"] == j)]["test_cost"]
                    cells.append(_mean_std(c) if len(c) else "—")
            tuned = [m for m in ("pinball_tuned", "mse_margin", "ar_margin",
                                 "persistence_margin") if (j, m) in means.index]
            best = min(tuned, key=lambda m: means[(j, m)]) if tuned else None
            omc = f"{means[(j, 'alpha_omc')]:.5f}" if (j, "alpha_omc") in means.index else "—"
            best_s = f"{means[(j, best)]:.5f} ({best})" if best else "—"
            out.append(f"| {j} | " + " | ".join(cells) + f" | {omc} | {best_s} |\n")
        out.append("\n")
    return "".join(out)


def shaper_error_table(l2n_fits, wss, beta):
    """RMSE of site i's learned loss against the true cost on site j's test demands
    (errors -0.1..0.1): rows and a Markdown matrix (rows j, columns i)."""
    metric = netalloc.make_metric(beta=beta)
    errors = np.linspace(-0.1, 0.1, 41)
    rows = []
    for i, fit in l2n_fits.items():
        for j, ws in wss.items():
            for seed, e in zip(fit.seeds, studies.shaper_error(fit, ws.test, metric, errors)):
                rows.append({"usecase": USECASE, "beta": beta, "source": i, "site": j,
                             "seed": seed, "shaper_rmse": float(e)})
    df = pd.DataFrame(rows)
    sites = list(wss)
    md = ["| demands of \\ shaper from | " + " | ".join(sites) + " |\n",
          "|---|" + "---|" * len(sites) + "\n"]
    for j in sites:
        cells = [_mean_std(df[(df["source"] == i) & (df["site"] == j)]["shaper_rmse"])
                 for i in sites]
        md.append(f"| {j} | " + " | ".join(cells) + " |\n")
    return df, "".join(md)


def run_transfer(config, wss, seeds, beta, shapers, ckpt):
    frames, timing = [], []
    metric = netalloc.make_metric(beta=beta)
    for finetune in (False, True):
        t0 = time.perf_counter()
        name = "finetune" if finetune else "frozen"
        frames.append(studies.transfer(
            config, wss, metric, seeds, shapers, finetune=finetune,
            label=f"beta={beta:g}", checkpoint=str(ckpt / f"transfer_{name}_{beta:g}.ckpt"),
        ))
        timing.append({"part": "transfer", "beta": beta, "method": name,
                       "seconds": time.perf_counter() - t0})
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "usecase", USECASE)
    df.insert(1, "beta", beta)
    return df, timing


def sensitivity_markdown(rows: pd.DataFrame) -> str:
    out = ["| noise | std | " + " | ".join(
        f"{s}: test cost" for s in dict.fromkeys(rows["site"])) + " |\n"]
    out.append("|---|---|" + "---|" * rows["site"].nunique() + "\n")
    for (name, std), block in rows.groupby(["noise", "noise_std"], sort=False, dropna=False):
        cells = [_mean_std(block.loc[block["site"] == s, "test_cost"])
                 for s in dict.fromkeys(rows["site"])]
        label = "exp decay 0.1 → 0.001" if name == "exp" else name
        std_s = "—" if name != "fixed" else f"{std:.4g}"
        out.append(f"| {label} | {std_s} | " + " | ".join(cells) + " |\n")
    return "".join(out)


def run_explain(fits, ws, beta, site, out):
    """Fig 8 data (and PNGs): learned loss vs error per demand decile, alpha-OMC."""
    l2n_fit, omc_fit = fits["loss2net"][site], fits["alpha_omc"][site]
    errors = np.linspace(-0.1, 0.1, 201).astype(np.float32)
    learned = studies.loss_by_error(l2n_fit, ws.test, errors)  # {decile: [seeds, E]}
    alpha = beta / netalloc.GAMMA
    omc = np.asarray(jax.vmap(losses.alpha_omc(alpha), (0, None))(
        errors[:, None], np.zeros(1, np.float32)))
    true = np.where(errors < 0, beta, netalloc.GAMMA * errors)
    err = {"loss2net": studies.error_deciles(l2n_fit.predict(ws.test.inputs), ws.test),
           "alpha_omc": studies.error_deciles(omc_fit.predict(ws.test.inputs), ws.test)}
    rows = []
    for decile, curve in learned.items():
        for s, seed in enumerate(l2n_fit.seeds):
            rows.append(pd.DataFrame({"site": site, "beta": beta, "curve": "learned_loss",
                                      "decile": decile, "seed": seed, "error": errors,
                                      "value": curve[s]}))
    rows.append(pd.DataFrame({"site": site, "beta": beta, "curve": "alpha_omc_loss",
                              "decile": "all", "seed": -1, "error": errors, "value": omc}))
    rows.append(pd.DataFrame({"site": site, "beta": beta, "curve": "true_cost",
                              "decile": "all", "seed": -1, "error": errors, "value": true}))
    explain = pd.concat(rows, ignore_index=True)
    # Summary: where each learned curve is lowest, and the predictors' errors.
    lines = ["| demand decile | argmin of learned loss (error) | Loss2Net error: mean, "
             "under-provision rate | α-OMC error: mean, under-provision rate |\n",
             "|---|---|---|---|\n"]
    for decile, curve in learned.items():
        argmin = errors[np.argmin(curve, axis=1)]
        e_l, e_o = err["loss2net"][decile], err["alpha_omc"][decile]
        lines.append(
            f"| {decile} 10% | {argmin.mean():+.4f} ± {argmin.std(ddof=1) if len(argmin) > 1 else 0:.4f} "
            f"| {e_l.mean():+.4f}, {(e_l < 0).mean():.3f} "
            f"| {e_o.mean():+.4f}, {(e_o < 0).mean():.3f} |\n")
    md = "".join(lines)

    netalloc_figs.plot_loss_error(errors, learned, err, omc, true, alpha, beta, site, out)
    netalloc_figs.plot_heatmap(l2n_fit, beta, site, out)
    return explain, md


def main(argv):
    del argv
    t_start = time.perf_counter()
    quick = _QUICK.value
    uc = REGISTRY[USECASE]
    config = uc.get_config(quick=quick)
    seeds = tuple(range(2 if quick else _SEEDS.value))
    betas = [float(b) for b in _BETAS.value]
    parts = set(_PARTS.value)
    unknown = parts - {"table", "transfer", "sensitivity", "explain"}
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}")
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    wss = {s: uc.load(s) for s in uc.sites}

    def options_for(beta):
        options = uc.options(beta=beta)
        return options._replace(taus=(0.5, 0.9)) if quick else options

    md, timing = [], []
    # Transfer and explain need Table 4's fits: the table part always runs first
    # (restored from its checkpoints when they are finished).
    need_table = parts & {"table", "transfer", "explain"}
    table, fits = None, {}
    if need_table:
        table, fits, t = run_table(config, wss, seeds, betas, out, ckpt, options_for)
        timing += t
        md.append("## Table 4: test cost per site × method (mean ± std over seeds), "
                  "× Loss2Net\n\n" + table4_markdown(table))
    beta0 = betas[0]
    if "transfer" in parts:
        shapers = {s: r.params["shaper"] for s, r in fits[beta0]["loss2net"].items()}
        transfer, t = run_transfer(config, wss, seeds, beta0, shapers, ckpt)
        timing += t
        transfer.to_csv(out / "transfer.csv", index=False)
        md.append("## Tables 5–7: transfer of the learned loss (test cost, mean ± std)\n\n"
                  + transfer_markdown(transfer, table, beta0))
        err, err_md = shaper_error_table(fits[beta0]["loss2net"], wss, beta0)
        err.to_csv(out / "shaper_error.csv", index=False)
        md.append("### How far each learned loss is from the true cost (RMSE of f_l(y+e, y)"
                  " − M(y+e, y) over the row site's test demands × e ∈ [−0.1, 0.1])\n\n"
                  + err_md + "\n")
    if "sensitivity" in parts:
        t0 = time.perf_counter()
        sens_wss = {s: wss[s] for s in _SENS_SITES.value}
        rows, curves = studies.noise_sensitivity(
            config, sens_wss, netalloc.make_metric(beta=beta0), seeds,
            label=f"beta={beta0:g}", checkpoint_dir=str(ckpt / f"noise_{beta0:g}"),
        )
        timing.append({"part": "sensitivity", "beta": beta0, "method": "loss2net",
                       "seconds": time.perf_counter() - t0})
        for df in (rows, curves):
            df.insert(0, "usecase", USECASE)
            df.insert(1, "beta", beta0)
        rows.to_csv(out / "sensitivity.csv", index=False)
        curves.to_csv(out / "sensitivity_curves.csv", index=False)
        netalloc_figs.plot_sensitivity(rows, curves, out)
        md.append(f"## Figs 5–6: exploration-noise sensitivity (beta = {beta0:g}), "
                  "test cost mean ± std\n\n" + sensitivity_markdown(rows) + "\n")
    if "explain" in parts:
        site = _EXPLAIN_SITE.value
        explain, summary = run_explain(fits[beta0], wss[site], beta0, site, out)
        explain.to_csv(out / "explain.csv", index=False)
        md.append(f"## Fig 8: explainability at {site} (beta = {beta0:g})\n\n" + summary
                  + "\nFigures: `fig8_loss_error.png`, `fig8_heatmap.png`.\n")
    wall = time.perf_counter() - t_start
    pd.DataFrame(timing).to_csv(out / "timing.csv", index=False)
    text = ("# netalloc study (paper appendices D–E)\n\n" + _header(config, seeds, wall)
            + "\n".join(md))
    (out / "results.md").write_text(text)
    (out / "config.json").write_text(json.dumps(
        {"config": config.to_dict(), "seeds": list(seeds), "betas": betas,
         "gamma": netalloc.GAMMA, "parts": sorted(parts), "wall_s": wall}, indent=2))
    print(text)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
