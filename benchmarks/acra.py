"""Paper Table 2 and Figs 4/7 for ``acra`` (admission control + resource allocation).

    python benchmarks/acra.py                 # full budget, all S, 5 seeds
    python benchmarks/acra.py --quick         # smoke budget

writes under ``--out`` (default ``benchmarks/results/acra``):

* ``results.csv``: tidy, one row per S x method x seed (``site`` = ``S<n>``,
  ``test_cost`` = - normalised profit, ``profit``, ``accepted`` = mean admitted
  clients per hour, ``knob`` = tuned margin), resumable: finished (S, method) rows
  are kept and interrupted trainings resume from ``<out>/checkpoints``;
* ``results.md``: Table 2 (profit and accepted clients, mean ± std, × knapsack);
* ``fig4_7_learned_cost_S<n>.png``: the learned cost for client 0 as a surface over
  (allocation, demand), the other clients at low / medium / high load, beside the
  emulator's true cost (needs ``pip install -e .[plot]``).
"""

import os
import pathlib
import platform
import sys
import time

from absl import app, flags, logging

_OUT = flags.DEFINE_string("out", None, "Output folder (default benchmarks/results/acra).")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method.", lower_bound=1)
_SITES = flags.DEFINE_list("sites", None, "Client counts (default S2,S4,S6,S8,S10).")
_METHODS = flags.DEFINE_list("methods", None, "Methods (default all of acra.METHODS).")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget.")
_FIG_SITE = flags.DEFINE_string("fig_site", "S4", "S whose learned cost is plotted.")


def _header(cmd, config):
    import jax

    return (
        f"Command: `{cmd}`  \n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, "
        f"JAX {jax.__version__} on {jax.devices()[0].platform}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  \n"
        f"Budget: {config.epochs} epochs ({config.pretrain_epochs} MSE pre-training), "
        f"batch {config.batch_size}, IR MLP {config.ir_mlp}, assembler "
        f"{config.assembler}, SIREN shaper {config.shaper_hidden}; the knapsack "
        "forecaster is the same predictor trained with MSE for the same epochs.\n\n"
    )


def _figure(config, site, seeds, out, ckpt_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib missing (pip install -e .[plot]): no figure")
        return
    import jax
    import jax.numpy as jnp
    import numpy as np

    import l2n_jax as l2n
    from l2n_jax.usecases import acra

    ws = acra.load(site)
    metric = acra.make_metric()
    # The finished checkpoint returns the trained run without training again.
    result = l2n.fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                     checkpoint=os.path.join(ckpt_dir, site, "loss2net.ckpt"))
    n = ws.train.targets.shape[1]
    train = np.asarray(ws.train.targets)
    alloc = np.linspace(0.0, 1.4, 71)
    demand = np.linspace(max(0.2, train[:, 0].min()), 1.0, 41)
    a, d = np.meshgrid(alloc, demand)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True, sharey=True)
    for j, (name, q) in enumerate((("low", 0.1), ("medium", 0.5), ("high", 0.9))):
        others = np.quantile(train[:, 1:], q, axis=0)
        dec = np.tile(others, (a.size, 1))
        obs = np.tile(others, (a.size, 1))
        dec = np.concatenate([a.reshape(-1, 1), dec], axis=1).astype(np.float32)
        obs = np.concatenate([d.reshape(-1, 1), obs], axis=1).astype(np.float32)
        learned = result.shaper(dec, obs)[0].reshape(a.shape)
        true = np.asarray(jax.vmap(metric)(jnp.asarray(dec), jnp.asarray(obs))).reshape(a.shape)
        for row, (z, title) in enumerate(((learned, "learned cost f_l"), (true, "true cost"))):
            ax = axes[row, j]
            im = ax.contourf(a, d, z, levels=30, cmap="viridis")
            ax.plot(alloc, alloc, "w--", lw=0.8)
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{title}; other {n - 1} clients at {name} load")
            if row == 1:
                ax.set_xlabel("allocation to client 0 (peak units)")
            if j == 0:
                ax.set_ylabel("demand of client 0 (peak units)")
    fig.suptitle(f"acra {site}: cost for client 0 ({ws.target_columns[0]}), seed {seeds[0]}"
                 " (dashed: allocation = demand)")
    fig.tight_layout()
    path = out / f"fig4_7_learned_cost_{site}.png"
    fig.savefig(path, dpi=110)
    logging.info("wrote %s", path)


def main(argv):
    del argv
    import pandas as pd

    from l2n_jax import methods as methods_lib
    from l2n_jax.usecases import acra, quick_config

    out = pathlib.Path(_OUT.value or pathlib.Path(__file__).resolve().parent / "results" / "acra")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    config = quick_config() if _QUICK.value else acra.get_config()
    seeds = tuple(range(_SEEDS.value))
    sites = tuple(_SITES.value or acra.SITES)
    methods = tuple(_METHODS.value or acra.METHODS)
    for s in sites:
        acra.n_clients(s)  # a bad site fails here, before any training
    metric = acra.make_metric()
    csv = out / "results.csv"
    done = pd.read_csv(csv) if csv.exists() else None
    if done is not None and sorted(set(done["seed"])) != list(seeds):
        raise app.UsageError(f"{csv} holds seeds {sorted(set(done['seed']))}; "
                             f"delete it or pass --seeds={done['seed'].nunique()}")
    frames = [] if done is None else [done]
    cmd = "python benchmarks/acra.py " + " ".join(sys.argv[1:])
    for site in sites:
        ws = acra.load(site)
        cache = methods_lib.FitCache()  # the knapsack family shares one MSE forecaster
        for method in methods:
            if done is not None and ((done["site"] == site) & (done["method"] == method)).any():
                continue
            task = methods_lib.Task(config, {site: ws}, metric, seeds, acra.options(),
                                    label=f"acra/{site}",
                                    checkpoint_dir=str(ckpt_dir / site), cache=cache)
            df = methods_lib.run(method, task, "acra").rows
            df = df.rename(columns={"cost": "test_cost"})
            df.insert(0, "usecase", "acra")
            frames.append(df)
            results = pd.concat(frames, ignore_index=True)
            results.to_csv(csv, index=False)
            (out / "results.md").write_text(
                "# acra: paper Table 2 (normalised profit, higher is better)\n\n"
                + _header(cmd, config) + acra.summary_table(results))
    if _FIG_SITE.value in sites and "loss2net" in methods:
        _figure(config, _FIG_SITE.value, seeds, out, ckpt_dir)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
