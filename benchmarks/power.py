"""Regenerates the ``power`` use case: paper Table 1 on PJME and every other PJM
region, and Fig. 3 (the learned loss against the error, one curve per ``v``).

    python benchmarks/power.py [--quick] [--seeds=5] [--out=benchmarks/results/power]

Every method trains all 12 regions x all seeds in one vmapped program per training
(``methods.run``), with the use case's budget (``usecases/power.py``:
``get_config``, the last ``HOURS`` hours of each region). ``l2n_train
--usecase=power`` runs the same programs and gives the same rows. Writes under
``--out``: ``results.csv`` (one row per site x method x seed), ``results.md``
(Table 1 and the per-region table, with each method's cost relative to Loss2Net),
``fig3.png`` (needs matplotlib, the ``[plot]`` extra), ``config.json``, and then,
unless ``--lstm_seeds=0``, ``lstm.csv`` / ``lstm.md``: one measurement of the paper's
LSTM predictor on PJME (``--only_lstm`` runs just that).
"""

import json
import pathlib
import time

import numpy as np
import pandas as pd
from absl import app, flags, logging

from l2n_jax import methods, tables
from l2n_jax.usecases import REGISTRY, power

_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget: tiny nets, 4000 hours, 2 seeds.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method (vmapped).", lower_bound=1)
_OUT = flags.DEFINE_string("out", "benchmarks/results/power", "Output directory.")
_LSTM_SEEDS = flags.DEFINE_integer(
    "lstm_seeds", 2, "Seeds of the paper-LSTM measurement on PJME (0: skip).",
    lower_bound=0,
)
_LSTM_EPOCHS = flags.DEFINE_integer(
    "lstm_epochs", 5, "Epochs (2 of them MSE pre-training) of the LSTM measurement.",
    lower_bound=3,
)
_ONLY_LSTM = flags.DEFINE_bool(
    "only_lstm", False, "Run only the LSTM measurement (keeps the table files).",
)

LSTM_METHODS = ("loss2net", "mse_margin")


def _tidy(df, ir):
    df = df.rename(columns={"cost": "test_cost"})
    df.insert(0, "usecase", "power")
    df["predictor"] = ir
    return df


def learned_curves(result, ws, errors, n_loads=256, v_max=power.V_CAP):
    """Learned loss f_l(y + e, y, v), averaged over test loads y: [seeds, v, errors]."""
    rng = np.random.default_rng(0)
    loads = np.asarray(ws.test.targets)[rng.choice(len(ws.test), n_loads, replace=False)]
    out = []
    for v in range(v_max + 1):
        y = np.repeat(loads, len(errors), axis=0)  # [n_loads * E, 1]
        d = y + np.tile(errors, n_loads)[:, None]
        f = result.shaper(d, y, np.full_like(y, v))  # [seeds, n_loads * E]
        out.append(f.reshape(f.shape[0], n_loads, len(errors)).mean(axis=1))
    return np.stack(out, axis=1)


def plot_fig3(result, ws, path, site="PJME"):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed (pip install -e '.[plot]'): "
                        "no %s", path)
        return None
    errors = np.linspace(-0.15, 0.15, 121).astype(np.float32)
    curves = learned_curves(result, ws, errors)  # [seeds, v, E]
    mean = curves.mean(axis=0)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    cmap = plt.get_cmap("viridis")
    for v in range(mean.shape[0]):
        color = cmap(v / (mean.shape[0] - 1))
        ax.plot(errors, mean[v], color=color, lw=2, label=f"v = {v}")
        ax.fill_between(errors, curves[:, v].min(0), curves[:, v].max(0), color=color,
                        alpha=0.15, lw=0)
        true = np.where(errors < 0, power.BETA * (v + 1), power.GAMMA * errors)
        ax.plot(errors, true, color=color, lw=1, ls="--")
    ax.set_xlabel("error  ŷ − y  (scaled units)")
    ax.set_ylabel("loss")
    ax.set_title(f"Learned loss f_l(ŷ, y, v), {site} (mean of {curves.shape[0]} seeds;"
                 " dashed: true cost)", fontsize=9)
    ax.legend(title="consecutive outages", fontsize=8, title_fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return curves


def _lstm_config(epochs):
    """The paper's predictor: LSTM (128, 128, 64) + one output layer (and the paper's
    decision head: the measurement is the paper's architecture)."""
    return REGISTRY["power"].get_config().replace(
        ir_kind="lstm", predictor_lstm=(128, 128, 64), assembler=(), epochs=epochs,
        decision_head="amount",
        pretrain_epochs=2, log_every=1,
    )


def lstm_measurement(ws, metric, options, n_seeds, epochs, out):
    """The paper's LSTM predictor on one site: Loss2Net and two baselines.

    One fit per seed (a loop, not a vmap): with the LSTM IR, XLA:CPU (jax 0.10.2)
    hangs executing the program vmapped over 2+ seeds (all threads idle inside
    block_until_ready; see BUILD_NOTES), while the 1-seed program runs.
    """
    frames, timing = [], {}
    config = _lstm_config(epochs)
    cache = methods.FitCache()
    for method in LSTM_METHODS:
        t0 = time.perf_counter()
        for seed in range(n_seeds):
            task = methods.Task(config, {"PJME": ws}, metric, (seed,), options,
                                label=f"power-lstm/seed{seed}", cache=cache)
            df = methods.run(method, task, "power").rows
            frames.append(_tidy(df, "lstm"))
        timing[f"lstm/{method}"] = time.perf_counter() - t0
    lstm = pd.concat(frames, ignore_index=True)
    lstm.to_csv(out / "lstm.csv", index=False)
    text = (
        f"# power: the paper's LSTM predictor, one measurement (PJME)\n\n"
        f"Command: `python benchmarks/power.py --only_lstm`. LSTM IR (128, 128, 64) + "
        f"one output layer, {epochs} epochs at batch {config.batch_size} "
        f"({config.pretrain_epochs} MSE pre-training for Loss2Net), {n_seeds} seeds "
        f"(one program per seed), same data, metric and shaper as Table 1. Wall time "
        f"{sum(timing.values()):.0f} s.\n\n" + tables.summary_table(lstm)
    )
    (out / "lstm.md").write_text(text)
    return lstm, timing


def main(argv):
    del argv
    t_start = time.perf_counter()
    uc = REGISTRY["power"]
    quick = _QUICK.value
    config = uc.get_config(quick=quick)
    hours = power.QUICK_HOURS if quick else power.HOURS
    seeds = tuple(range(2 if quick else _SEEDS.value))
    options = power.options()
    metric = power.make_metric()
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    wss = {s: power.load(s, hours) for s in uc.sites}
    if _ONLY_LSTM.value:
        _, timing = lstm_measurement(wss["PJME"], metric, options, _LSTM_SEEDS.value,
                                     _LSTM_EPOCHS.value, out)
        print((out / "lstm.md").read_text())
        return

    frames, fits, timing = [], {}, {}
    cache = methods.FitCache()
    for method in uc.methods:
        t0 = time.perf_counter()
        result = methods.run(method, methods.Task(config, wss, metric, seeds, options,
                                                  label="power", cache=cache), "power")
        df = result.rows
        if method == "loss2net":
            fits = result.fits
        timing[method] = time.perf_counter() - t0
        frames.append(_tidy(df, "mlp"))
        pd.concat(frames, ignore_index=True).to_csv(out / "results.csv", index=False)
    results = pd.concat(frames, ignore_index=True)
    t_table = time.perf_counter() - t_start

    curves = plot_fig3(fits["PJME"], wss["PJME"], out / "fig3.png")
    total = time.perf_counter() - t_start

    header = (
        f"# power: Table 1 (normalised cost, mean ± std over {len(seeds)} seeds)\n\n"
        f"Command: `python benchmarks/power.py{' --quick' if quick else ''}`. "
        f"Budget: last {hours} hours of each of the {len(uc.sites)} PJM regions "
        f"(split 70/10/20 in time order, lookback {power.LOOKBACK} h), every network "
        f"method {config.epochs} epochs at batch {config.batch_size} of the same fast "
        f"predictor (MLP IR {config.ir_mlp}, assembler {config.assembler}; Loss2Net: "
        f"{config.pretrain_epochs} of them MSE pre-training, SIREN shaper "
        f"{config.shaper_hidden}, {options.segments} contiguous segments per batch); "
        f"beta = {power.BETA}, gamma = {power.GAMMA}, v capped at {power.V_CAP}. "
        f"Wall time: {total:.0f} s (table {t_table:.0f} s).\n\n"
    )
    text = [header, power.summary(results)]
    (out / "results.md").write_text("".join(text))
    info = {
        "config": config.to_dict(), "hours": hours, "seeds": list(seeds),
        "segments": options.segments, "beta": power.BETA, "gamma": power.GAMMA,
        "v_cap": power.V_CAP, "taus": list(options.taus), "seconds": timing,
        "total_s": total,
    }
    if curves is not None:
        info["fig3_learned_loss_at_error_-0.05_by_v"] = [
            float(x) for x in curves.mean(0)[:, 40]
        ]
    (out / "config.json").write_text(json.dumps(info, indent=2))
    print("".join(text))
    if _LSTM_SEEDS.value and not quick:
        lstm_measurement(wss["PJME"], metric, options, _LSTM_SEEDS.value,
                         _LSTM_EPOCHS.value, out)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
