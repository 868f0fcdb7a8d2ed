"""Why Loss2Net loses where it does on the probes (issue 18, item 2).

    python benchmarks/probe_diagnosis.py --checkpoint_dir=/tmp/pr/ckpt \\
        [--series=appliances,uk] [--probes=...] [--variant=default] \\
        [--out=benchmarks/results/probes/diagnosis]

Restores (or trains) each case's Loss2Net from ``benchmarks/probes.py``'s
checkpoints and shifts its validation decisions by offsets ``delta`` (in units
of the predictor's validation residual std). Three curves per seed:

* ``learned``: the shaper's mean cost ``f_l(d + delta, y, v)``, ``v`` from the
  sequence the predictor's own decisions produced (what the predictor descends);
* ``myopic``: the true cost of the hour alone at that ``v`` (what the shaper is
  fitted to: without state, the true cost);
* ``sequence``: the true mean cost when every decision of the split is shifted
  by ``delta`` and the states follow (what a tuned margin minimises).

Where ``learned`` and ``myopic`` have different minima, the shaper is wrong near
the decisions; where ``myopic`` and ``sequence`` do, fitting the hour's cost is
the wrong target (a decision's effect on later hours is not in it). Also per
seed: the validation residual std against the exploration noise at the end, and
the test cost with a margin tuned on validation (the offset head-room).
Writes ``curves.csv``, ``summary.csv``, ``summary.md`` and ``curves.png``.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags

import l2n_jax as l2n
from l2n_jax import baselines, registry
from l2n_jax.metrics import StatefulMetric, batch_metric
from l2n_jax.usecases import probes

_SERIES = flags.DEFINE_list("series", list(probes.SERIES), "Series.")
_PROBES = flags.DEFINE_list("probes", list(probes.PROBES), "Probe metrics.")
_VARIANT = flags.DEFINE_string("variant", "default", "Loss2Net variant.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/probes/diagnosis", "Output.")
_CKPT = flags.DEFINE_string("checkpoint_dir", None, "probes.py's checkpoints.")

OFFSETS = np.linspace(-2.0, 2.0, 41)  # in residual std units


def _states(metric, decisions, obs):
    """v and the state before every step of one sequence: (v [N, j], states)."""

    def body(s, x):
        _, v, new = metric.step(s, *x)
        return new, (jnp.asarray(v, jnp.float32), s)

    _, (v, states) = jax.lax.scan(body, metric.init(), (decisions, obs))
    return v, states


def curves(fit, windows, metric) -> pd.DataFrame:
    """Per seed x offset: learned, myopic and sequence costs on ``windows`` (every
    offset of a seed in one vmapped program per curve)."""
    decisions = jnp.asarray(fit.predict(windows.inputs))  # [S, N, m]
    obs = jnp.asarray(windows.obs, jnp.float32)
    n, m = decisions.shape[1:]
    sigma = np.asarray(decisions[..., 0] - np.asarray(windows.targets)[None, :, 0]).std(axis=1)
    stateful = isinstance(metric, StatefulMetric)
    over_offsets = jax.jit(jax.vmap(batch_metric(metric), in_axes=(0, None)))
    hour = jax.jit(jax.vmap(jax.vmap(lambda s, d, o: metric.step(s, d, o)[0]),
                            in_axes=(None, 0, None))) if stateful else over_offsets
    frames = []
    for i, seed in enumerate(fit.seeds):
        shifted = decisions[i][None] + jnp.asarray(OFFSETS * sigma[i], jnp.float32)[:, None, None]
        flat, tiled = shifted.reshape(-1, m), jnp.tile(obs, (len(OFFSETS), 1))
        if stateful:
            v, states = _states(metric, decisions[i], obs)
            myopic = hour(states, shifted, obs)
            learned = fit.shaper(flat, tiled, jnp.tile(v, (len(OFFSETS), 1)))[i]
        else:
            myopic = hour(shifted, obs)
            learned = fit.shaper(flat, tiled)[i]
        frames.append(pd.DataFrame({
            "seed": seed, "offset": OFFSETS, "delta": OFFSETS * sigma[i],
            "learned": learned.reshape(len(OFFSETS), n).mean(axis=1),
            "myopic": np.asarray(myopic).mean(axis=1),
            "sequence": np.asarray(over_offsets(shifted, obs)).mean(axis=1),
            "resid_std": sigma[i]}))
    return pd.concat(frames, ignore_index=True)


def case_summary(fit, ws, metric, curve: pd.DataFrame) -> pd.DataFrame:
    """Per seed: each curve's minimising offset, the noise at the end against the
    residual, and the test cost without / with a validation-tuned margin."""
    out = []
    margins = baselines.tune_margin(fit.predict(ws.valid.inputs), ws.valid, metric)
    test = fit.predict(ws.test.inputs)
    plain = l2n.evaluate(fit, ws.test, metric)["cost"].to_numpy()
    tuned = l2n.evaluate(fit, ws.test, metric,
                         decisions=test + margins[:, None, None])["cost"].to_numpy()
    for i, (seed, g) in enumerate(curve.groupby("seed", sort=False)):
        arg = {k: g["offset"].to_numpy()[g[k].to_numpy().argmin()]
               for k in ("learned", "myopic", "sequence")}
        out.append({"seed": seed, **{f"argmin_{k}": v for k, v in arg.items()},
                    "resid_std": g["resid_std"].iloc[0],
                    "noise_end_over_resid": fit.config.noise_end / g["resid_std"].iloc[0],
                    "margin_over_resid": margins[i] / g["resid_std"].iloc[0],
                    "test_cost": plain[i], "test_cost_margin": tuned[i],
                    "best_epoch": int(fit.best_epoch[i])})
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame) -> str:
    """A (series, probe)-indexed frame of numbers as a Markdown table (3 digits)."""
    lines = ["| series | probe | " + " | ".join(df.columns) + " |",
             "|---|---|" + "---|" * len(df.columns)]
    for (series, probe), row in df.iterrows():
        lines.append(f"| {series} | {probe} | " + " | ".join(f"{x:.3g}" for x in row) + " |")
    return "\n".join(lines) + "\n"


def plot(curve: pd.DataFrame, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(curve.groupby(["series", "probe"], sort=False))
    fig, axes = plt.subplots(2, (len(cases) + 1) // 2, figsize=(3.2 * ((len(cases) + 1) // 2), 6),
                             squeeze=False)
    for ax, ((series, probe), g) in zip(axes.flat, cases):
        mean = g.groupby("offset")[["learned", "myopic", "sequence"]].mean()
        for col, style in (("learned", "-"), ("myopic", "--"), ("sequence", ":")):
            y = mean[col] - mean[col].min()
            ax.plot(mean.index, y / max(y.max(), 1e-12), style, label=col)
            ax.axvline(mean[col].idxmin(), ls=style, lw=0.6, color="grey")
        ax.set_title(f"{series} / {probe}", fontsize=9)
        ax.set_xlabel("offset (residual std)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    all_curves, all_summary = [], []
    for series in _SERIES.value:
        ws = probes.load(series)
        for probe in _PROBES.value:
            metric = probes.make_metric(probe)
            changes, segments = probes.variant(_VARIANT.value, probe)
            config = probes.CONFIG.replace(**changes)
            ckpt = _CKPT.value and f"{_CKPT.value}/{series}_{probe}_{_VARIANT.value}"
            cmp = l2n.compare(ws, metric, config=config, seeds=range(_SEEDS.value),
                              methods=("loss2net",), checkpoint_dir=ckpt,
                              options=registry.Options(segments=segments), verbose=False)
            fit = cmp.fits["loss2net"]["data"]
            curve = curves(fit, ws.valid, metric).assign(series=series, probe=probe)
            summ = case_summary(fit, ws, metric, curve).assign(series=series, probe=probe)
            print(summ.to_string(), flush=True)
            all_curves.append(curve)
            all_summary.append(summ)
    curve, summ = pd.concat(all_curves), pd.concat(all_summary)
    curve.to_csv(out / "curves.csv", index=False)
    summ.to_csv(out / "summary.csv", index=False)
    agg = summ.groupby(["series", "probe"], sort=False).median(numeric_only=True)
    (out / "summary.md").write_text(markdown(agg.drop(columns="seed")))
    plot(curve, out / "curves.png")
    print(agg.to_string())


if __name__ == "__main__":
    app.run(main)
