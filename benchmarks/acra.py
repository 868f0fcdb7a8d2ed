"""Paper Table 2 and Figs 4/7 for ``acra`` (admission control + resource allocation).

    python benchmarks/acra.py                      # v2 (traffic clients), both families
    python benchmarks/acra.py --usecase=acra_pjm   # v1 (PJM clients), all S, 5 seeds
    python benchmarks/acra.py --quick              # smoke budget
    python benchmarks/acra.py --set=admit_floor=0.01 --set=shaper_input=admission

writes under ``--out`` (default ``benchmarks/results/acra_v2/table2`` for v2, where
issue 19 built it, ``benchmarks/results/acra`` for v1; ``acra_v2`` is accepted as
``acra``):

* ``results.csv``: tidy, one row per S x method x seed (``site`` = ``S<n>``,
  ``test_cost`` = - normalised profit, ``profit``, ``accepted`` = mean admitted
  clients per hour, ``knob`` = tuned margin, ``valid_profit`` = a trained method's
  validation profit, which choices of its settings are made on), resumable: finished (S, method) rows
  are kept and interrupted trainings resume from ``<out>/checkpoints``;
* ``results.md``: Table 2 (profit and accepted clients, mean ± std, × knapsack);
* ``fig4_7_learned_cost_S<n>.png`` (``--fig_sites``; v2: S1 = the paper's Fig. 4,
  S4 = Fig. 7): the learned cost for client 0 as a surface over (allocation,
  demand), the other clients at low / medium / high load, beside the emulator's
  true cost, with Loss2Net's test decisions for client 0 on it (needs ``pip install
  -e .[plot]``).
"""

import os
import pathlib
import platform
import sys
import time

from absl import app, flags, logging

_USECASE = flags.DEFINE_enum("usecase", "acra", ["acra", "acra_v2", "acra_pjm"],
                             "acra (v2, traffic clients; alias acra_v2) or acra_pjm (v1).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: see above).")
_DEFAULT_OUT = {"acra": ("acra_v2", "table2"), "acra_pjm": ("acra",)}
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method.", lower_bound=1)
_SITES = flags.DEFINE_list("sites", None, "Sites (default: all of the use case's).")
_METHODS = flags.DEFINE_list("methods", None, "Methods (default: the use case's METHODS).")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke budget.")
_HEAD = flags.DEFINE_enum("head", None, ["amount", "admit_st", "admit_diff"],
                          "Loss2Net's Config.decision_head (default: the use case's).")
_SET = flags.DEFINE_multi_string("set", [], "NAME=VALUE: a Config field of Loss2Net's "
                                  "(and bm_split's) config, as l2n_train's --set.")
_FIG_SITES = flags.DEFINE_list("fig_sites", None,
                               "Sites whose learned cost is plotted (acra: S4; v2: S1,S4).")
_FORECASTER = {
    "acra_pjm": "the knapsack forecaster is the same predictor trained with MSE for "
                "the same epochs",
    "acra": "the baselines forecast with a per-client linear AR (ridge MSE)",
}


def _module(name):
    from l2n_jax.usecases import acra, acra_v2

    return {"acra_pjm": acra, "acra": acra_v2}[name]


def _obs_of(uc, demand, site):
    """Per-client demands [B, S] -> the use case's obs (v2: each held for H slots)."""
    import numpy as np

    if uc.__name__.endswith("acra_v2"):
        return np.repeat(demand, uc.parse_site(site)[1], axis=1)
    return demand


def _header(cmd, config, usecase):
    import jax

    return (
        f"Command: `{cmd}`  \n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, "
        f"JAX {jax.__version__} on {jax.devices()[0].platform}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  \n"
        f"Budget: {config.epochs} epochs ({config.pretrain_epochs} MSE pre-training), "
        f"batch {config.batch_size}, IR MLP {config.ir_mlp}, assembler "
        f"{config.assembler}, SIREN shaper {config.shaper_hidden}, decision head "
        f"{config.decision_head!r}; {_FORECASTER[usecase]}.\n\n"
    )


def _figure(uc, config, site, seeds, out, ckpt_dir):
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

    ws = uc.load(site)
    metric = uc.make_metric()
    # The finished checkpoint returns the trained run without training again.
    result = l2n.fit(config, ws.train, metric, seeds=seeds, valid=ws.valid,
                     checkpoint=os.path.join(ckpt_dir, site, "loss2net.ckpt"))
    n = ws.train.targets.shape[1]
    train = np.asarray(ws.train.targets)
    alloc = np.linspace(0.0, 1.4, 71)
    demand = np.linspace(max(0.2, train[:, 0].min()), 1.0, 41)
    a, d = np.meshgrid(alloc, demand)
    loads = (("low", 0.1), ("medium", 0.5), ("high", 0.9)) if n > 1 else (("", 0.5),)
    test_d = np.asarray(result.predict(ws.test.inputs))[0, :, 0]
    test_y = np.asarray(ws.test.targets)[:, 0]
    fig, axes = plt.subplots(2, len(loads), figsize=(max(10.0, 4.4 * len(loads) + 0.5), 7.5),
                             sharex=True, sharey=True, squeeze=False)
    for j, (name, q) in enumerate(loads):
        others = np.quantile(train[:, 1:], q, axis=0)
        dec = np.tile(others, (a.size, 1))
        obs = np.tile(others, (a.size, 1))
        dec = np.concatenate([a.reshape(-1, 1), dec], axis=1).astype(np.float32)
        obs = np.concatenate([d.reshape(-1, 1), obs], axis=1)
        obs = _obs_of(uc, obs, site).astype(np.float32)
        learned = result.shaper(dec, obs)[0].reshape(a.shape)
        true = np.asarray(jax.vmap(metric)(jnp.asarray(dec), jnp.asarray(obs))).reshape(a.shape)
        for row, (z, title) in enumerate(((learned, "learned cost f_l"), (true, "true cost"))):
            ax = axes[row, j]
            im = ax.contourf(a, d, z, levels=30, cmap="viridis")
            ax.plot(alloc, alloc, "w--", lw=0.8)
            ax.scatter(test_d, test_y, s=2, c="r", alpha=0.3)
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{title}; other {n - 1} clients at {name} load" if n > 1
                         else title)
            if row == 1:
                ax.set_xlabel("allocation to client 0 (peak units)")
            if j == 0:
                ax.set_ylabel("demand of client 0 (peak units)")
    fig.suptitle(f"{uc.USECASE.name} {site}: cost for client 0 ({ws.target_columns[0]}), "
                 f"seed {seeds[0]} (dashed: allocation = demand; red: Loss2Net's test "
                 "decisions, as the mean demand of the period)")
    fig.tight_layout()
    path = out / f"fig4_7_learned_cost_{site}.png"
    fig.savefig(path, dpi=110)
    logging.info("wrote %s", path)


def main(argv):
    del argv
    import pandas as pd

    import l2n_jax as l2n
    from l2n_jax import methods as methods_lib
    from l2n_jax.usecases import ALIASES, quick_config

    name = ALIASES.get(_USECASE.value, _USECASE.value)
    uc = _module(name)
    out = pathlib.Path(_OUT.value or pathlib.Path(__file__).resolve().parent.joinpath(
        "results", *_DEFAULT_OUT[name]))
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    config = quick_config() if _QUICK.value else uc.get_config()
    if _HEAD.value:
        config = config.replace(decision_head=_HEAD.value)
    if _SET.value:
        from l2n_jax.config import parse_field

        try:
            config = config.replace(**dict(parse_field(config, t) for t in _SET.value))
        except ValueError as e:
            raise app.UsageError(str(e)) from None
    seeds = tuple(range(_SEEDS.value))
    sites = tuple(_SITES.value or uc.SITES)
    methods = tuple(_METHODS.value or uc.METHODS)
    for s in sites:  # a bad site fails here, before any training
        if s not in uc.SITES:
            raise app.UsageError(f"{name}: unknown site {s!r}; sites are {list(uc.SITES)}")
    metric = uc.make_metric()
    csv = out / "results.csv"
    done = pd.read_csv(csv) if csv.exists() else None
    if done is not None and sorted(set(done["seed"])) != list(seeds):
        raise app.UsageError(f"{csv} holds seeds {sorted(set(done['seed']))}; "
                             f"delete it or pass --seeds={done['seed'].nunique()}")
    frames = [] if done is None else [done]
    cmd = "python benchmarks/acra.py " + " ".join(sys.argv[1:])
    for site in sites:
        ws = uc.load(site)
        cache = methods_lib.FitCache()  # the knapsack family shares one MSE forecaster
        for method in methods:
            if done is not None and ((done["site"] == site) & (done["method"] == method)).any():
                continue
            t0 = time.perf_counter()
            task = methods_lib.Task(config, {site: ws}, metric, seeds, uc.options(),
                                    label=f"{name}/{site}",
                                    checkpoint_dir=str(ckpt_dir / site), cache=cache)
            run = methods_lib.run(method, task, name)
            df = run.rows.rename(columns={"cost": "test_cost"})
            if site in run.fits:  # trained methods: the profit their selection saw
                valid = l2n.evaluate(run.fits[site], ws.valid, metric)
                df["valid_profit"] = -valid.set_index("seed").loc[df.seed, "cost"].values
            df.insert(0, "usecase", name)
            df["wall_s"] = time.perf_counter() - t0
            frames.append(df)
            results = pd.concat(frames, ignore_index=True)
            results.to_csv(csv, index=False)
            (out / "results.md").write_text(
                f"# {name}: paper Table 2 (normalised profit, higher is better)\n\n"
                + _header(cmd, config, name) + uc.summary_table(results))
    default_figs = ["S1", "S4"] if name == "acra" else ["S4"]
    for site in _FIG_SITES.value or default_figs:
        if site in sites and "loss2net" in methods:
            _figure(uc, config, site, seeds, out, ckpt_dir)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
