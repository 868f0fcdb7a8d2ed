"""Wall time of ``l2n_train --usecase=X --quick`` for every use case, cold and warm.

    python benchmarks/quick.py [--usecases=netalloc,power,toy,acra] [--repeats=1]

"Cold" runs with an empty persistent compilation cache (a first run on a fresh
machine), "warm" right after with the cache it filled (every later run). Each run is
a fresh ``l2n_train`` process with the default 5 seeds and every default method
and site, as a user types it. Target (SPEC §6): every ``--quick`` run <= 30 s on 2
cores. Writes ``benchmarks/results/quick.json`` and ``quick.md``.
"""

import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

OUT = pathlib.Path(__file__).resolve().parent / "results"


def _time(usecase, cache, workdir):
    cmd = [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())",
           f"--usecase={usecase}", "--quick", f"--workdir={workdir}", "--overwrite",
           f"--compilation_cache={cache}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if proc.returncode:
        raise RuntimeError(f"{usecase}: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv):
    args = dict(a.lstrip("-").split("=", 1) for a in argv)
    usecases = args.get("usecases", "netalloc,power,toy,acra").split(",")
    repeats = int(args.get("repeats", 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for usecase in usecases:
            for r in range(repeats):
                cache = pathlib.Path(tmp) / f"cache_{usecase}_{r}"
                shutil.rmtree(cache, ignore_errors=True)
                cold = _time(usecase, cache, pathlib.Path(tmp) / "run")
                warm = _time(usecase, cache, pathlib.Path(tmp) / "run")
                rows.append({"usecase": usecase, "repeat": r, "cold_s": cold, "warm_s": warm})
                print(f"{usecase}: cold {cold:.1f} s, warm {warm:.1f} s", flush=True)
    meta = {"command": "python benchmarks/quick.py " + " ".join(argv),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quick.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# `l2n_train --quick` wall time\n\nCommand: `{meta['command']}` on "
             f"{meta['machine']}, {meta['cpu_count']} cores, {meta['date']}. Cold: empty "
             "compilation cache; warm: the cache the cold run filled. Target <= 30 s.\n",
             "| use case | cold (s) | warm (s) |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['usecase']} | {r['cold_s']:.1f} | {r['warm_s']:.1f} |")
    (OUT / "quick.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
