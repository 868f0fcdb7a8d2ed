"""Scale-out: one use-case table as 1 process and as several processes on this machine.

Each layout runs ``l2n_train`` as a user would (``--distributed`` on 127.0.0.1 for more
than one process; ``XLA_FLAGS`` gives each process its devices), with the persistent
compilation cache off so every program is compiled and counted. Per layout it
reports the wall time (processes started to the last one done), the table's own
time, the XLA compilations and their seconds (``timing.json`` of the main process),
and how far the costs are from the first layout's.

    python benchmarks/scaling.py --out=benchmarks/results/scaling
    python benchmarks/scaling.py --quick --repeats=3 --out=/tmp/scaling   # minutes

Output: ``scaling.json`` (everything), ``scaling.csv`` (one row per layout x repeat x
method) and ``scaling.md`` (medians over the repeats).
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import pandas as pd


def _env(devices):
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if "xla_force_host_platform_device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_layout(args, n_proc, devices, workdir, timeout):
    """Runs the table as ``n_proc`` processes x ``devices``; (wall s, timing.json)."""
    base = [sys.executable, "-m", "l2n_jax.cli", f"--usecase={args.usecase}",
            f"--seeds={args.seeds}", f"--workdir={workdir}", "--compilation_cache="]
    base += ["--quick"] if args.quick else []
    base += [f"--method={args.methods}"] if args.methods else []
    commands = [base]
    if n_proc > 1:
        port = _free_port()
        commands = [base + ["--distributed", f"--coordinator=127.0.0.1:{port}",
                            f"--num_processes={n_proc}", f"--process_id={i}"]
                    for i in range(n_proc)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=_env(devices), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    wall = time.perf_counter() - t0
    for p, err in zip(procs, errs):
        if p.returncode != 0:
            raise RuntimeError(f"layout {n_proc}x{devices} failed:\n{err[-3000:]}")
    return wall, json.loads((workdir / "timing.json").read_text())


def _layouts(text):
    out = []
    for item in text.split(","):
        n, _, d = item.partition("x")
        out.append((int(n), int(d)))
    return out


def _markdown(df, diffs, args):
    per = df.groupby(["layout", "repeat"]).agg(
        wall_s=("wall_s", "first"), table_s=("table_s", "first"),
        compile_s=("compile_s", "sum"), xla_compiles=("xla_compiles", "sum")).reset_index()
    med = per.groupby("layout", sort=False).median(numeric_only=True)
    ref = med["wall_s"].iloc[0]
    lines = [f"# Scaling: `{args.usecase}` table, {args.seeds} seeds"
             f"{' (--quick)' if args.quick else ''}, medians over {args.repeats} "
             "repeat(s)\n",
             "| layout (processes x devices) | wall s | table s | compile s (main) | XLA "
             "compilations (main) | speed-up vs first | max abs Δ test cost vs first |",
             "|---|---|---|---|---|---|---|"]
    for layout, row in med.iterrows():
        lines.append(f"| {layout} | {row.wall_s:.1f} | {row.table_s:.1f} | "
                     f"{row.compile_s:.1f} | {row.xla_compiles:.0f} | "
                     f"{ref / row.wall_s:.2f}× | {diffs[layout]:.2e} |")
    methods = df.groupby(["layout", "method"], sort=False).median(numeric_only=True)
    lines += ["", "Per method (medians): wall s / compile s / XLA compilations\n",
              "| layout | method | wall s | compile s | XLA compilations |",
              "|---|---|---|---|---|"]
    for (layout, method), row in methods.iterrows():
        lines.append(f"| {layout} | {method} | {row.method_wall_s:.1f} | "
                     f"{row.compile_s:.1f} | {row.xla_compiles:.0f} |")
    return "\n".join(lines) + "\n"


def _differences(results):
    """Max |Δ| of each layout's test cost (overall) and, per method, of test cost and
    forecast RMSE, against the first layout's rows."""
    keys = ["site", "method", "seed"]
    layouts = list(results)
    first = results[layouts[0]].set_index(keys)
    diffs, frames = {}, []
    for layout in layouts:
        d = (results[layout].set_index(keys)[["test_cost", "forecast_rmse"]]
             - first[["test_cost", "forecast_rmse"]]).abs()
        diffs[layout] = float(d["test_cost"].max())
        if layout != layouts[0]:
            g = d.groupby(level="method", sort=False).max()
            frames.append(g.assign(layout=layout))
    per = pd.concat(frames) if frames else pd.DataFrame()
    return diffs, per


def _diff_markdown(per):
    if per.empty:
        return ""
    lines = ["", "Against the first layout, per method: max |Δ| over sites x seeds\n",
             "| layout | method | forecast RMSE | test cost |", "|---|---|---|---|"]
    for method, row in per.iterrows():
        lines.append(f"| {row.layout} | {method} | {row.forecast_rmse:.1e} | "
                     f"{row.test_cost:.1e} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--usecase", default="netalloc")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default="", help="comma-separated (default: the "
                   "use case's table)")
    p.add_argument("--layouts", default="1x1,2x1", help="PROCESSESxDEVICES, ...")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="l2n_train --quick budget")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per layout run")
    p.add_argument("--out", default="benchmarks/results/scaling")
    p.add_argument("--workdirs", default="", help="keep each layout's workdir here "
                   "(default: a temporary directory)")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, results, blobs = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.workdirs or tmp
        for repeat in range(args.repeats):
            for n_proc, devices in _layouts(args.layouts):
                layout = f"{n_proc}x{devices}"
                workdir = pathlib.Path(tmp) / f"{layout}_{repeat}"
                wall, blob = run_layout(args, n_proc, devices, workdir, args.timeout)
                print(f"{layout} repeat {repeat}: {wall:.1f} s", file=sys.stderr, flush=True)
                blobs.append({"layout": layout, "repeat": repeat, "wall_s": wall, **blob})
                results.setdefault(layout, pd.read_csv(workdir / "results.csv"))
                for e in blob["entries"]:
                    rows.append({"layout": layout, "repeat": repeat, "wall_s": wall,
                                 "table_s": blob["total"]["wall_s"], "method": e["method"],
                                 "sites": "+".join(e["sites"]), "method_wall_s": e["wall_s"],
                                 "compile_s": e["compile_s"],
                                 "xla_compiles": e["xla_compiles"]})
    df = pd.DataFrame(rows)
    diffs, per_method = _differences(results)
    df.to_csv(out / "scaling.csv", index=False)
    (out / "scaling.json").write_text(json.dumps(
        {"args": vars(args), "runs": blobs, "max_abs_test_cost_diff_vs_first": diffs,
         "per_method_diff_vs_first": per_method.reset_index().to_dict("records"),
         "cpus": os.cpu_count()}, indent=2))
    text = _markdown(df, diffs, args) + _diff_markdown(per_method)
    (out / "scaling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
