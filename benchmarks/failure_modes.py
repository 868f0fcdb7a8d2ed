"""Provokes every failure mode (issue 3, and the methods registry's) and records what
the user sees.

    python benchmarks/failure_modes.py

writes ``benchmarks/results/failure_modes.md``: one row per failure (bad data, bad
metric, divergence, bad checkpoint, bad CLI use) with the exception type or exit
status and the message, as produced by the current code. Nothing here is typed by
hand: re-running the script regenerates the table.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import logging  # noqa: E402

import l2n_jax as l2n  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "failure_modes.md"


def _series(n=400, **columns):
    t = np.arange(n)
    frame = pd.DataFrame({"load": np.sin(t / 5.0) + 2.0}, index=pd.date_range(
        "2024-01-01", periods=n, freq="h"))
    for name, values in columns.items():
        frame[name] = values
    return frame


def _windows(frame, **kwargs):
    return lambda: l2n.make_windows(frame, ["load"], 12, **kwargs)


def _with(frame, fn):
    frame = frame.copy()
    fn(frame)
    return frame


def _small_fit(metric, config=None, checkpoint=None, data=None):
    ws = data or l2n.make_windows(_series(), ["load"], 12)
    config = config or l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                                  assembler=(8,), shaper_hidden=(16, 16), log_every=1)
    return lambda: l2n.fit(config, ws.train, metric, seeds=(0, 1), valid=ws.valid,
                           checkpoint=checkpoint, label="netalloc/eu/loss2net")


def _abs_cost(d, y):
    return jnp.sum(jnp.abs(d - y))


def _library_cases(tmp):
    base = _series()
    nan = _with(base, lambda f: f.iloc.__setitem__((30, 0), np.nan))
    inf = _with(base, lambda f: f.iloc.__setitem__((40, 0), np.inf))
    dup = pd.concat([base.iloc[:50], base.iloc[49:]])
    unsorted = pd.concat([base.iloc[100:], base.iloc[:100]])
    missing = base.drop(base.index[[60, 61, 200]])
    text = _with(base, lambda f: f.__setitem__("aux", ["x"] * len(f)))
    const = _with(base, lambda f: f.__setitem__("flat", 1.0))
    damaged = tmp / "damaged.ckpt"
    damaged.write_bytes(b"\x00not a checkpoint")
    other = tmp / "other.ckpt"
    ws = l2n.make_windows(base, ["load"], 12)
    other_cfg = l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                           assembler=(8,), shaper_hidden=(16, 16), log_every=1)
    l2n.fit(other_cfg, ws.train, _abs_cost, seeds=(0, 1), valid=ws.valid,
            checkpoint=str(other))
    calls = []

    def flaky(d, y):  # a host simulator that starts returning NaN after 14 calls
        calls.append(1)
        cost = np.abs(np.asarray(d) - np.asarray(y)).sum(-1)
        return cost * np.nan if len(calls) > 14 else cost

    def nan_metric(d, y):
        return jnp.sum(jnp.where(d > y, jnp.nan, y - d))

    def host_raises(d, y):
        raise RuntimeError("simulator offline")

    return [
        ("data: NaN value", _windows(nan)),
        ("data: NaN value, fill='interpolate'", _windows(nan, fill="interpolate")),
        ("data: infinite value", _windows(inf)),
        ("data: duplicated timestamp", _windows(dup)),
        ("data: unsorted rows", _windows(unsorted)),
        ("data: missing timestamps", _windows(missing)),
        ("data: non-numeric column", lambda: l2n.make_windows(text, ["load"], 12,
                                                              input_columns=["load", "aux"])),
        ("data: constant series", lambda: l2n.make_windows(const, ["load"], 12,
                                                           input_columns=["load", "flat"])),
        ("data: missing target column", lambda: l2n.make_windows(base, ["demand"], 12)),
        ("data: too few rows for the lookback/split", lambda: l2n.make_windows(
            base.iloc[:20], ["load"], 12)),
        ("metric: wrong shape", _small_fit(lambda d, y: d - y)),
        ("metric: integer dtype", _small_fit(lambda d, y: jnp.sum(d > y).astype(jnp.int32))),
        ("metric: host metric raises", _small_fit(
            l2n.host_metric(host_raises, decision_dim=1, obs_dim=1))),
        ("training: NaN cost from the first step", _small_fit(nan_metric)),
        ("training: NaN cost mid-run (with checkpoint)", _small_fit(
            l2n.host_metric(flaky, decision_dim=1, obs_dim=1),
            checkpoint=str(tmp / "run.ckpt"))),
        ("config: bad value", lambda: l2n.Config(lr_max=-1.0)),
        ("config: batch larger than the data", _small_fit(
            _abs_cost, config=other_cfg.replace(batch_size=100_000))),
        ("checkpoint: damaged file", _small_fit(_abs_cost, checkpoint=str(damaged))),
        ("checkpoint: written by another run", _small_fit(
            _abs_cost, config=other_cfg.replace(shaper_lr=5e-4), checkpoint=str(other))),
        ("method: a name registered twice",
         lambda: l2n.methods.register("mse", l2n.methods.trained(l2n.losses.mae))),
        ("method: unknown name", lambda: l2n.methods.get("xgboost")),
    ]


def _cli(args, cwd):
    command = [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())"]
    proc = subprocess.run(command + args, cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=600)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("l2n_train")]
    return f"exit {proc.returncode}", lines[-1] if lines else proc.stderr.strip()[-300:]


def _cli_cases(tmp):
    blocker = tmp / "file"
    blocker.write_text("x")
    ok = ["--usecase=netalloc", "--quick", "--sites=eu", "--method=persistence"]
    subprocess.run([sys.executable, "-c", "from l2n_jax.cli import main; main()"] + ok
                   + ["--seeds=1", f"--workdir={tmp / 'prev'}"], cwd=tmp,
                   capture_output=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return [
        ("CLI: unknown use case", ["--usecase=nope"]),
        ("CLI: no use case", ["--quick"]),
        ("CLI: bad flag value", ["--usecase=netalloc", "--seeds=0"]),
        ("CLI: unknown method", ["--usecase=netalloc", "--method=xgboost"]),
        ("CLI: unknown site", ["--usecase=netalloc", "--sites=atlantis"]),
        ("CLI: stray argument", ["--usecase=netalloc", "extra"]),
        ("CLI: unwritable workdir", ["--usecase=netalloc", f"--workdir={blocker / 'out'}"]),
        ("CLI: workdir of another run", ok + ["--seeds=2", f"--workdir={tmp / 'prev'}"]),
        ("CLI: a plugin that cannot be imported", ["--usecase=netalloc",
                                                   "--plugins=no_such_module"]),
    ]


def _one_line(text, limit=400):
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main():
    logging.set_verbosity(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for name, fn in _library_cases(tmp):
            try:
                fn()
                rows.append((name, "no error", "accepted"))
            except Exception as e:  # recording what the user sees is the point
                rows.append((name, type(e).__name__, _one_line(e)))
            print(rows[-1][:2], flush=True)
        for name, args in _cli_cases(tmp):
            rows.append((name, *map(_one_line, _cli(args, tmp))))
            print(rows[-1][:2], flush=True)
        # Temporary paths vary from run to run; the table shows them as <tmp>.
        rows = [tuple(x.replace(str(tmp), "<tmp>") for x in r) for r in rows]
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        "# Failure modes and what the user sees",
        "",
        "Generated by `python benchmarks/failure_modes.py` (library calls and `l2n_train` "
        "subprocesses; messages verbatim, truncated at 400 characters).",
        "",
        "| failure | raised / exit status | message |",
        "|---|---|---|",
    ] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
