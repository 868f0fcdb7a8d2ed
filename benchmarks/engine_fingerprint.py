"""Bitwise fingerprints of every training code path, for refactoring the engine.

    python benchmarks/engine_fingerprint.py --out=/tmp/fp_before      # record
    python benchmarks/engine_fingerprint.py --out=/tmp/fp_after --compare=/tmp/fp_before

Runs tiny trainings through the public API only (``fit``, ``fit_sites``,
``fit_fixed_loss``, ``fit_fixed_loss_sites``, ``evaluate``, ``FitResult.shaper``),
one per code path: Loss2Net at the default and the literal config, every added
measure (replay, range penalty, shaper warm-up, error input, ReLU shaper, no eps
input, fixed noise, exp LR), the LSTM IR, split IRs, ``seed_batching='map'``, a host
metric, a stateful metric (plain and two sites), even and padded sites, a frozen and
a fine-tuned transferred shaper, chunked vs whole runs, and fixed losses (plain and
padded sites). Each case writes its final parameters, best epochs, history and test
costs; ``--compare`` reports, per case, whether they are bitwise equal to another
recording and, where not, the largest absolute difference per part. With
``--cli``, also runs ``l2n_train --quick`` on every use case (one or two sites) and
compares ``results.csv`` (all columns but ``train_s``).

Default XLA flags (as real runs use), CPU.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import l2n_jax as l2n  # noqa: E402

_OUT = flags.DEFINE_string("out", "/tmp/engine_fingerprint", "Output directory.")
_COMPARE = flags.DEFINE_string("compare", None, "A directory recorded earlier.")
_CLI = flags.DEFINE_bool("cli", False, "Also run l2n_train --quick on every use case.")
_ONLY = flags.DEFINE_list("only", None, "Run only these cases.")


def _series(n, seed=0, columns=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    data = {}
    for c in range(columns):
        ar = np.zeros(n)
        shocks = rng.normal(0.0, 1.0, n)
        for i in range(1, n):
            ar[i] = 0.6 * ar[i - 1] + shocks[i]
        data[f"x{c}"] = np.sin(2 * np.pi * t / 24 + c) + 0.3 * ar
    return pd.DataFrame(data)


def cost(decision, obs):
    x = decision - obs
    return jnp.sum(4.0 * jnp.maximum(-x, 0.0) + jnp.maximum(x, 0.0))


def cost_np(decisions, obs):
    x = np.asarray(decisions) - np.asarray(obs)
    return np.sum(4.0 * np.maximum(-x, 0.0) + np.maximum(x, 0.0), axis=-1)


def outage():
    def init():
        return {"cost": jnp.zeros(()), "run": jnp.zeros((), jnp.int32)}

    def step(state, decision, obs):
        under = decision[0] < obs[0]
        c = jnp.where(under, 0.5 + jnp.where(state["run"] > 0, state["cost"], 0.0),
                      decision[0] - obs[0])
        v = jnp.minimum(state["run"], 3).astype(jnp.float32)[None]
        return c, v, {"cost": c, "run": jnp.where(under, state["run"] + 1, 0)}

    return l2n.StatefulMetric(init, step)


def tiny(**changes):
    base = dict(epochs=4, pretrain_epochs=1, batch_size=32, ir_mlp=(8,), assembler=(8,),
                shaper_hidden=(16, 16), log_every=1, replay_size=64)
    base.update(changes)
    return l2n.Config(**base)


def _data():
    one = l2n.make_windows(_series(500), ["x0"], lookback=8)
    two = l2n.make_windows(_series(500, seed=1, columns=2), ["x0"], lookback=8)
    short = l2n.make_windows(_series(380, seed=2), ["x0"], lookback=8)
    multi = l2n.make_windows(_series(500, seed=3, columns=2), ["x0", "x1"], lookback=8)
    other = l2n.make_windows(_series(500, seed=4), ["x0"], lookback=8)
    return {"one": one, "two": two, "short": short, "multi": multi, "other": other}


def cases(d):
    """name -> () -> FitResult or {site: FitResult}, with the split to score on."""
    one, two, short, multi, other = (d[k] for k in ("one", "two", "short", "multi", "other"))
    seeds = (0, 1)

    def l2n_fit(cfg, ws=one, metric=cost, **kw):
        return lambda: (l2n.fit(cfg, ws.train, metric, seeds=seeds, valid=ws.valid, **kw),
                        ws, metric)

    def sites(cfg, wss, metric=cost, **kw):
        return lambda: (l2n.fit_sites(cfg, {s: w.train for s, w in wss.items()}, metric,
                                      seeds=seeds, valids={s: w.valid for s, w in
                                                           wss.items()}, **kw),
                        wss, metric)

    def fixed(cfg, loss, ws=one):
        return lambda: (l2n.fit_fixed_loss(cfg, ws.train, loss, seeds=seeds, valid=ws.valid,
                                           metric=cost), ws, cost)

    def transfer(freeze):
        def run():
            src = l2n.fit(tiny(), one.train, cost, seeds=seeds, valid=one.valid)
            cfg = tiny(freeze_shaper=freeze)
            return (l2n.fit(cfg, two.train, cost, seeds=seeds, valid=two.valid,
                            shaper=src.params["shaper"]), two, cost)
        return run

    host = l2n.host_metric(cost_np, 1, 1)
    return {
        "default": l2n_fit(tiny()),
        "no_replay": l2n_fit(tiny(replay_size=0)),
        "literal": l2n_fit(l2n.Config.literal(**{k: v for k, v in tiny().to_dict().items()
                                                 if k in ("epochs", "batch_size", "ir_mlp",
                                                          "assembler", "shaper_hidden",
                                                          "log_every")})),
        "measures": l2n_fit(tiny(range_penalty=0.5, shaper_warmup_epochs=1, epochs=5,
                                 shaper_input="error", feed_eps=False,
                                 noise_schedule="fixed", lr_schedule="exp")),
        "relu_xla": l2n_fit(tiny(shaper_activation="relu", noise_schedule="none",
                                 lr_schedule="fixed")),
        "siren_xla": l2n_fit(tiny(shaper_sin="xla")),
        "lstm": l2n_fit(tiny(ir_kind="lstm", predictor_lstm=(4,)), ws=two),
        "split_irs": l2n_fit(tiny(split_irs=True), ws=multi),
        "two_series": l2n_fit(tiny(), ws=two),
        "map": l2n_fit(tiny(seed_batching="map")),
        "chunk3": l2n_fit(tiny(log_every=3)),
        "host": l2n_fit(tiny(), metric=host),
        "stateful": l2n_fit(tiny(batch_size=16, shaper_input="error"), metric=outage(),
                            segments=2),
        "stateful_sites": sites(tiny(batch_size=16), {"a": one, "b": other}, metric=outage(),
                                segments=4),
        "sites_even": sites(tiny(), {"a": one, "b": other}),
        "sites_padded": sites(tiny(), {"a": one, "s": short}),
        "sites_pad_true": sites(tiny(), {"a": one, "b": other}, pad=True),
        "frozen": transfer(True),
        "finetune": transfer(False),
        "mse": fixed(tiny(), l2n.losses.mse),
        "pinball": fixed(tiny(), l2n.losses.pinball(0.8)),
        "mse_map": fixed(tiny(seed_batching="map"), l2n.losses.mse),
        "fixed_sites_padded": lambda: (
            l2n.fit_fixed_loss_sites(tiny(), {"a": one.train, "s": short.train},
                                     l2n.losses.mse, seeds=seeds,
                                     valids={"a": one.valid, "s": short.valid},
                                     metric=cost), {"a": one, "s": short}, cost),
    }


def _record(result, ws, metric):
    """Arrays that must not change: params, best epochs, history, test costs."""
    out = {f"params/{jax.tree_util.keystr(p)}": np.asarray(x)
           for p, x in jax.tree_util.tree_leaves_with_path(result.params)}
    out["best_epoch"] = np.asarray(result.best_epoch)
    hist = result.history
    for c in sorted(hist.columns):
        out[f"history/{c}"] = np.asarray(hist[c], np.float64)
    out["test_cost"] = np.asarray(l2n.evaluate(result, ws.test, metric)["cost"])
    if "shaper" in result.params:
        n = min(64, len(ws.test))
        obs = np.asarray(ws.test.obs)[:n]
        v = None if not isinstance(metric, l2n.StatefulMetric) else np.zeros((n, 1))
        out["shaper_values"] = result.shaper(np.asarray(ws.test.targets)[:n] + 0.05, obs,
                                             v)
    return out


def _digest(arrays):
    h = hashlib.sha1()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def run_cases(out: pathlib.Path):
    d = _data()
    digests = {}
    for name, make in cases(d).items():
        if _ONLY.value and name not in _ONLY.value:
            continue
        result, ws, metric = make()
        arrays = {}
        if isinstance(result, dict):
            for site, r in result.items():
                arrays.update({f"{site}/{k}": v for k, v in _record(r, ws[site], metric).items()})
        else:
            arrays = _record(result, ws, metric)
        np.savez(out / f"{name}.npz", **arrays)
        digests[name] = _digest(arrays)
        logging.info("%s %s", name, digests[name])
    (out / "digests.json").write_text(json.dumps(digests, indent=1))
    return digests


CLI_RUNS = {
    "netalloc": ["--usecase=netalloc", "--sites=eu",
                 "--method=loss2net,mse,mse_margin,pinball_tuned,ar_margin,alpha_omc"],
    "toy": ["--usecase=toy", "--sites=n2", "--method=loss2net,mae,persistence,ar"],
    "power": ["--usecase=power", "--sites=PJME,DOM", "--method=loss2net,mse_margin"],
    "acra": ["--usecase=acra_pjm", "--method=loss2net,bm_split,knapsack_margin,greedy,oracle"],
}


def run_cli(out: pathlib.Path):
    for name, args in CLI_RUNS.items():
        workdir = out / f"cli_{name}"
        cmd = [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())",
               *args, "--quick", "--seeds=2", f"--workdir={workdir}", "--overwrite"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{name}: {proc.stderr[-2000:]}")
        logging.info("cli %s done", name)


def compare(out: pathlib.Path, ref: pathlib.Path):
    lines = []
    for path in sorted(ref.glob("*.npz")):
        mine = out / path.name
        if not mine.exists():
            continue
        a, b = np.load(path), np.load(mine)
        diffs = {}
        for k in sorted(set(a.files) | set(b.files)):
            if k not in a.files or k not in b.files:
                diffs[k] = "missing"
            elif a[k].shape != b[k].shape:
                diffs[k] = f"shape {a[k].shape} vs {b[k].shape}"
            elif not np.array_equal(a[k], b[k], equal_nan=True):
                diffs[k] = float(np.nanmax(np.abs(a[k].astype(np.float64)
                                                  - b[k].astype(np.float64))))
        status = "bitwise" if not diffs else "DIFFERS"
        lines.append(f"{path.stem}: {status}")
        worst = sorted(diffs.items(), key=lambda kv: -kv[1] if isinstance(kv[1], float)
                       else -np.inf)[:6]
        lines += [f"    {k}: {v}" for k, v in worst]
    for csv in sorted(ref.glob("cli_*/results.csv")):
        mine = out / csv.parent.name / "results.csv"
        if not mine.exists():
            continue
        a = pd.read_csv(csv).drop(columns="train_s")
        b = pd.read_csv(mine).drop(columns="train_s")
        key = ["site", "method", "seed"]
        a, b = (x.sort_values(key).reset_index(drop=True) for x in (a, b))
        common = [c for c in a.columns if c in b.columns]
        same = len(a) == len(b) and all(a[c].equals(b[c]) for c in common)
        extra = sorted(set(a.columns) ^ set(b.columns))
        lines.append(f"{csv.parent.name}: {'bitwise' if same else 'DIFFERS'}"
                     + (f" (columns in one only: {extra})" if extra else ""))
        if not same and len(a) == len(b):
            for c in common:
                if not a[c].equals(b[c]) and a[c].dtype.kind == "f":
                    lines.append(f"    {c}: {np.nanmax(np.abs(a[c] - b[c])):.3g}")
        elif not same:
            lines.append(f"    rows {a.shape} vs {b.shape}")
    text = "\n".join(lines)
    (out / "compare.txt").write_text(text + "\n")
    print(text)


def main(argv):
    del argv
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    run_cases(out)
    if _CLI.value:
        run_cli(out)
    if _COMPARE.value:
        compare(out, pathlib.Path(_COMPARE.value))


if __name__ == "__main__":
    app.run(main)
