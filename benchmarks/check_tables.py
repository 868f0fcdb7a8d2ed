"""Is a committed ``l2n_train`` table still what the code produces? Rerun and compare.

    python benchmarks/check_tables.py [--usecases=netalloc,toy] [--seeds=5]

For each use case, reruns ``l2n_train --usecase=X --seeds=N`` (every default method
and site, the command behind ``benchmarks/results/X/results.csv``) into a temporary
workdir and compares the test costs row by row with the committed file. Bitwise
equality is expected on the CPU type the table was made on; on another CPU
(XLA:CPU generates other code) the rows differ by seed noise, so the check is that
every (site, method) mean agrees within 3 standard errors of the difference. Prints
a table and exits non-zero when a committed table is stale (or its rows do not
match the current method list).
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def rerun(usecase: str, seeds: int, workdir: pathlib.Path) -> pd.DataFrame:
    cmd = [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())",
           f"--usecase={usecase}", f"--seeds={seeds}", f"--workdir={workdir}", "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode:
        raise RuntimeError(f"{usecase}: {proc.stderr[-2000:]}")
    return pd.read_csv(workdir / "results.csv")


def compare(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Per (site, method): mean old / new, the difference in standard errors."""
    key = ["site", "method", "seed"]
    merged = old.merge(new, on=key, how="outer", suffixes=("_old", "_new"),
                       indicator=True)
    missing = merged[merged["_merge"] != "both"]
    rows = []
    for (site, method), g in merged[merged["_merge"] == "both"].groupby(["site", "method"],
                                                                         sort=False):
        a, b = g["test_cost_old"].to_numpy(), g["test_cost_new"].to_numpy()
        se = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / len(a)) if len(a) > 1 else 0.0
        z = abs(a.mean() - b.mean()) / se if se > 0 else (0.0 if np.array_equal(a, b)
                                                          else np.inf)
        rows.append({"site": site, "method": method, "old": a.mean(), "new": b.mean(),
                     "bitwise": bool(np.array_equal(a, b)), "z": z})
    table = pd.DataFrame(rows)
    ok = missing.empty and bool((table["z"] <= 3.0).all())
    return table, ok


def main(argv):
    args = dict(a.lstrip("-").split("=", 1) for a in argv)
    usecases = args.get("usecases", "netalloc,toy").split(",")
    seeds = int(args.get("seeds", 5))
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for usecase in usecases:
            old = pd.read_csv(RESULTS / usecase / "results.csv")
            new = rerun(usecase, seeds, pathlib.Path(tmp) / usecase)
            table, ok = compare(old, new)
            all_ok &= ok
            print(f"## {usecase}: {'up to date' if ok else 'STALE'} "
                  f"({int(table['bitwise'].sum())}/{len(table)} site x method bitwise)")
            print(table.to_string(index=False, float_format=lambda x: f"{x:.5f}"))
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
