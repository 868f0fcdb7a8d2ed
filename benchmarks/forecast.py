"""Regenerates the ``forecast`` use case: MetaLoss Table 1 (learned loss vs static MAE
on one-step forecasting), a budget study of the gain, and Fig. 2.

    python benchmarks/forecast.py [--quick] [--seeds=5] [--length=20000] \\
        [--epochs=20] [--budgets=5,60] [--out=benchmarks/results/forecast]

Every network method (``usecases/forecast.py``) trains the same predictor with the
same 5-cycle triangular CLR, epochs, batch and seeds; sites of the same window
shapes (the four single series) train in one program per method. Then the budget
study reruns ``--budget_methods`` (static MAE, a Huber-smoothed MAE and MetaLoss) at
every ``--budgets`` epoch count: if the learned loss wins by smoothing the
optimisation landscape, its gain should depend on the budget and a static smooth
MAE should share it. Writes under ``--out``: ``results.csv`` (tidy: usecase, site,
method, seed, epochs, test_cost, gain_pct = (mean MAE of ``mae`` on the site and
budget - test_cost) / that mean, in %), ``fig2.csv`` / ``fig2.png`` (learned loss
and error distributions of the 10% lowest / highest values, MAE vs MetaLoss) and
``results.md`` (the command, machine, wall time and the tables).
"""

import json
import os
import pathlib
import platform
import sys
import time

import jax
import numpy as np
import pandas as pd
from absl import app, flags, logging

import l2n_jax
from l2n_jax import methods, studies
from l2n_jax.usecases import REGISTRY, forecast

_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget: tiny nets, 2 seeds, 1500 rows.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method (vmapped).", lower_bound=1)
_LENGTH = flags.DEFINE_integer(
    "length", 20000, "Most recent rows of each series (0: the whole series; shorter "
    "series are taken whole).", lower_bound=0)
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs of the main table (default: the "
                               "use case's).", lower_bound=2)
_BUDGETS = flags.DEFINE_list("budgets", ["5", "60"], "Extra epoch budgets of the study.")
_BUDGET_METHODS = flags.DEFINE_list("budget_methods", ["mae", "smooth_mae", "metaloss"],
                                    "Methods rerun at every budget.")
_SITES = flags.DEFINE_list("sites", list(forecast.SITES), "Sites.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/forecast", "Output directory.")

EXTRA_METHODS = ("smooth_mae",)  # the smoothness control, beside the defaults
FIG2_SITES = ("eu", "pjme")  # paper Fig. 2: a traffic series and the power grid
# MetaLoss Table 1 (MAE x 1e-2): the row each site stands in for.
PAPER = {
    "eu": ("Facebook traffic", 2.44, 2.33, 4.51),
    "uk": ("Netflix traffic", 4.38, 4.35, 0.68),
    "worldcup": ("Twitch traffic", 3.81, 3.75, 1.57),
    "pjme": ("Power grid (PJM)", 2.68, 2.55, 4.85),
    "appliances": ("House energy (UCI)", 2.33, 2.27, 2.58),
}
TABLE_METHODS = ("persistence", "ar", "mse", "mae", "smooth_mae", "metaloss", "loss2net")


def _groups(wss):
    """Sites trained in one program: those with the same window shapes."""
    groups: dict = {}
    for s, ws in wss.items():
        groups.setdefault(tuple(x.shape[1:] for x in ws.train), []).append(s)
    return [tuple(g) for g in groups.values()]


def run_methods(config, wss, names, seeds, cache, label):
    """Tidy rows of ``names`` on every site, and {method: {site: FitResult}}."""
    frames, fits = [], {}
    metric, options = forecast.make_metric(), forecast.options()
    for group in _groups(wss):
        sub = {s: wss[s] for s in group}
        for name in names:
            task = methods.Task(config, sub, metric, seeds, options, label=label,
                                cache=cache)
            run = methods.run(name, task, "forecast")
            df = run.rows.rename(columns={"cost": "test_cost"})
            df.insert(0, "usecase", "forecast")
            df["epochs"] = config.epochs
            frames.append(df)
            fits.setdefault(name, {}).update(run.fits)
    return pd.concat(frames, ignore_index=True), fits


def add_gain(df):
    """gain_pct per row against the mean test cost of ``mae`` on its site and budget."""
    ref = df[df["method"] == "mae"].groupby(["site", "epochs"])["test_cost"].mean()
    base = pd.Series(list(zip(df["site"], df["epochs"]))).map(ref).to_numpy()
    df["gain_pct"] = 100.0 * (base - df["test_cost"].to_numpy()) / base
    return df


def paired(df, method, reference="mae"):
    """Per site x budget: seeds where ``method`` beats ``reference`` at the same seed,
    and the mean ± std of the per-seed gain %."""
    a = df[df["method"] == method].set_index(["site", "epochs", "seed"])["test_cost"]
    b = df[df["method"] == reference].set_index(["site", "epochs", "seed"])["test_cost"]
    gain = (100.0 * (b - a) / b).dropna().rename("gain").reset_index()
    return gain.groupby(["site", "epochs"], sort=False)["gain"].agg(
        wins=lambda g: int((g > 0).sum()), n="count", mean="mean", std="std")


def _cell(block):
    if block.empty:
        return "–"
    m, s = 100 * block.mean(), 100 * block.std()
    return f"{m:.3f} ± {0.0 if np.isnan(s) else s:.3f}"


def table_md(df, epochs):
    """Table 1 beside the paper: MAE x 1e-2 per method, gain % of each learned loss."""
    main = df[df["epochs"] == epochs]
    present = [m for m in TABLE_METHODS if m in set(main["method"])]
    head = ["site (paper row)", "paper MAE → MetaLoss (gain)", *present,
            "gain metaloss", "gain loss2net", "gain smooth_mae"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for site in dict.fromkeys(main["site"]):
        block = main[main["site"] == site]
        name, p_mae, p_ml, p_gain = PAPER[site]
        cells = [f"{site} ({name})", f"{p_mae:.2f} → {p_ml:.2f} ({p_gain:+.2f}%)"]
        cells += [_cell(block[block["method"] == m]["test_cost"]) for m in present]
        for m in ("metaloss", "loss2net", "smooth_mae"):
            g = block[block["method"] == m]["gain_pct"]
            cells.append(f"{g.mean():+.2f}%" if len(g) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budget_md(df):
    """Per budget x site: MAE x 1e-2 of the budget methods and the paired gains."""
    names = [m for m in ("mae", "smooth_mae", "metaloss") if m in set(df["method"])]
    lines = ["| epochs | site | " + " | ".join(names) + " | metaloss vs mae: seeds won, "
             "gain % (paired) | smooth_mae vs mae: seeds won, gain % |",
             "|" + "---|" * (len(names) + 4)]
    pairs = {m: paired(df, m) for m in ("metaloss", "smooth_mae") if m in names}
    for (epochs, site), block in df.groupby(["epochs", "site"], sort=True):
        cells = [str(epochs), site]
        cells += [_cell(block[block["method"] == m]["test_cost"]) for m in names]
        for m in ("metaloss", "smooth_mae"):
            if m in pairs and (site, epochs) in pairs[m].index:
                r = pairs[m].loc[(site, epochs)]
                cells.append(f"{int(r['wins'])}/{int(r['n'])}, {r['mean']:+.2f} ± "
                             f"{0.0 if np.isnan(r['std']) else r['std']:.2f}")
            else:
                cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fig2_data(fits, wss, sites, errors):
    """Learned loss by error for the lowest / highest 10% of values (MetaLoss; MAE's
    loss is |e|), and both predictors' test errors on those samples."""
    curves, errs = [], []
    for site in sites:
        if site not in fits.get("metaloss", {}) or site not in fits.get("mae", {}):
            continue
        test = wss[site].test
        for decile, curve in studies.loss_by_error(fits["metaloss"][site], test,
                                                   errors).items():
            curves.append(pd.DataFrame({"site": site, "decile": decile, "error": errors,
                                        "learned": curve.mean(0), "lo": curve.min(0),
                                        "hi": curve.max(0), "mae": np.abs(errors)}))
        for name in ("mae", "metaloss"):
            pred = fits[name][site].predict(test.inputs)
            for decile, e in studies.error_deciles(pred, test).items():
                errs.append(pd.DataFrame({"site": site, "method": name, "decile": decile,
                                          "error": e.reshape(-1)}))
    if not curves:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(curves, ignore_index=True), pd.concat(errs, ignore_index=True)


def fig2_md(curves, errs):
    """The bias of each predictor on the lowest / highest values, and where the
    learned loss has its minimum (0 for MAE)."""
    lines = ["| site | decile | MAE-trained error: mean (bias), MAE | MetaLoss error: "
             "mean, MAE | argmin of learned loss |", "|---|---|---|---|---|"]
    for (site, decile), block in errs.groupby(["site", "decile"], sort=False):
        e = {m: block[block["method"] == m]["error"] for m in ("mae", "metaloss")}
        c = curves[(curves["site"] == site) & (curves["decile"] == decile)]
        argmin = c["error"].iloc[int(np.argmin(c["learned"].to_numpy()))]
        lines.append(f"| {site} | {decile} 10% | {100 * e['mae'].mean():+.3f}, "
                     f"{100 * e['mae'].abs().mean():.3f} | {100 * e['metaloss'].mean():+.3f}"
                     f", {100 * e['metaloss'].abs().mean():.3f} | {100 * argmin:+.2f} |")
    return "(errors × 10⁻², scaled units)\n\n" + "\n".join(lines) + "\n"


def plot_fig2(curves, errs, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed (pip install -e '.[plot]'): no %s",
                        path)
        return False
    sites = list(dict.fromkeys(curves["site"]))
    fig, axes = plt.subplots(len(sites), 2, figsize=(11, 4 * len(sites)), dpi=130,
                             squeeze=False)
    colors = {"low": "tab:green", "high": "tab:purple"}
    for row, site in enumerate(sites):
        c, e = curves[curves["site"] == site], errs[errs["site"] == site]
        grid = np.sort(c["error"].unique())
        bins = np.linspace(grid[0], grid[-1], 61)
        for col, name in enumerate(("mae", "metaloss")):
            ax = axes[row, col]
            hist = ax.twinx()
            for decile in ("low", "high"):
                hist.hist(e[(e["method"] == name) & (e["decile"] == decile)]["error"],
                          bins=bins, density=True, alpha=0.3, color=colors[decile],
                          label=f"errors, {decile} 10% values")
                if name == "metaloss":
                    d = c[c["decile"] == decile]
                    ax.plot(d["error"], d["learned"], color=colors[decile], lw=2,
                            label=f"learned loss, {decile} 10%")
                    ax.fill_between(d["error"], d["lo"], d["hi"], color=colors[decile],
                                    alpha=0.15, lw=0)
            ax.plot(grid, np.abs(grid), color="black", lw=1, ls="--", label="|e| (MAE)")
            letter = "ab"[col] if row == 0 else "cd"[col]
            ax.set_title(f"({letter}) {site}: {'static MAE' if name == 'mae' else 'MetaLoss'}")
            ax.set_xlabel("error ŷ − y (scaled units)")
            ax.set_ylabel("loss")
            hist.set_ylabel("error density")
            lines, labels = ax.get_legend_handles_labels()
            more, more_labels = hist.get_legend_handles_labels()
            ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
            f"jax {jax.__version__} on {jax.devices()[0].platform}, l2n_jax "
            f"{l2n_jax.__version__}; load average at start {load[0]:.1f}")


def main(argv):
    del argv
    t0 = time.perf_counter()
    machine = _machine()
    uc = REGISTRY["forecast"]
    quick = _QUICK.value
    config = uc.get_config(quick=quick)
    if _EPOCHS.value is not None:
        config = config.replace(epochs=_EPOCHS.value,
                                pretrain_epochs=min(config.pretrain_epochs,
                                                    _EPOCHS.value // 2))
    length = 1500 if quick else (_LENGTH.value or None)
    seeds = tuple(range(2 if quick else _SEEDS.value))
    budgets = [int(b) for b in _BUDGETS.value if int(b) != config.epochs]
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    wss = {s: forecast.load(s, length) for s in _SITES.value}
    cache = methods.FitCache()

    names = (*uc.methods, *EXTRA_METHODS)
    main_rows, fits = run_methods(config, wss, names, seeds, cache, "forecast")
    timing = {"table_s": time.perf_counter() - t0}
    frames = [main_rows]
    for epochs in budgets:
        t = time.perf_counter()
        cfg = config.replace(epochs=epochs, pretrain_epochs=min(config.pretrain_epochs,
                                                                 epochs // 2))
        frames.append(run_methods(cfg, wss, _BUDGET_METHODS.value, seeds, cache,
                                  f"forecast@{epochs}")[0])
        timing[f"budget_{epochs}_s"] = time.perf_counter() - t
        add_gain(pd.concat(frames, ignore_index=True)).to_csv(out / "results.csv",
                                                              index=False)
    df = add_gain(pd.concat(frames, ignore_index=True))
    cols = ["usecase", "site", "method", "seed", "epochs", "test_cost", "gain_pct"]
    df = df[cols + [c for c in df.columns if c not in cols]]
    df.to_csv(out / "results.csv", index=False)

    errors = np.linspace(-0.06, 0.06, 121).astype(np.float32)
    curves, errs = fig2_data(fits, wss, [s for s in FIG2_SITES if s in wss], errors)
    if not curves.empty:
        curves.to_csv(out / "fig2.csv", index=False)
        plot_fig2(curves, errs, out / "fig2.png")
    total = time.perf_counter() - t0
    sizes = ", ".join(f"{s} {len(ws.train)}/{len(ws.valid)}/{len(ws.test)}"
                      for s, ws in wss.items())
    study = df[df["method"].isin(_BUDGET_METHODS.value)]
    text = [
        f"# forecast: MetaLoss Table 1 (MAE ×10⁻², mean ± std over {len(seeds)} seeds)"
        f"\n\nCommand: `python {' '.join(['benchmarks/forecast.py', *sys.argv[1:]])}`."
        f"\n\nMachine: {machine}. Wall time {total:.0f} s (main table "
        f"{timing['table_s']:.0f} s); other jobs shared the CPU, so times are "
        "inflated.\n\n"
        f"Budget: every network method {config.epochs} epochs at batch "
        f"{config.batch_size} of the same predictor (MLP IR {config.ir_mlp}, assembler "
        f"{config.assembler}, forecast skip, lookback {forecast.LOOKBACK}), triangular "
        f"CLR {config.lr_min:g}..{config.lr_max:g} with {config.lr_cycles} cycles for "
        f"all; the epoch of lowest validation MAE kept. Loss2Net: "
        f"{config.pretrain_epochs} of the epochs MSE pre-training, SIREN shaper "
        f"{config.shaper_hidden}, replay {config.replay_size}. MetaLoss: ReLU MLP "
        f"{forecast.METALOSS['shaper_hidden']} on (ŷ + ε, y), ε fed to the predictor. "
        f"Data: the last {length or 'all'} rows of each series (train/valid/test "
        f"windows: {sizes}). Gain = (MAE_mae − MAE_method) / MAE_mae of the means.\n\n",
        table_md(df, config.epochs),
        "\n## Budget study (the same methods at other epoch counts)\n\n",
        budget_md(study),
        "\n## Fig. 2: the 10% lowest / highest values (`fig2.png`)\n\n",
        fig2_md(curves, errs) if not curves.empty else "(no MetaLoss / MAE fits)\n",
    ]
    (out / "results.md").write_text("".join(text))
    info = {"config": config.to_dict(), "metaloss": {k: (list(v) if isinstance(v, tuple)
                                                         else v)
                                                     for k, v in forecast.METALOSS.items()},
            "length": length, "seeds": list(seeds), "budgets": budgets,
            "sites": list(wss), "seconds": timing, "total_s": total, "machine": machine}
    (out / "config.json").write_text(json.dumps(info, indent=2))
    print("".join(text))


if __name__ == "__main__":
    app.run(main)
