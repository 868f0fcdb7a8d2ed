"""A/B speed check of two source trees: the same timed unit as ``speed.py``.

    python benchmarks/speed_ab.py --before=/path/to/old/checkout [--rounds=4]

The timed unit is one compiled epoch of Loss2Net train steps on the ``netalloc``
``eu`` windows, as in ``speed.py``: the fast model at 1 seed (50 steps, 40 repeats)
and 8 seeds vmapped (15 repeats), the paper LSTM IR at 1 seed (3 steps, 15 repeats).
Each round runs the ``--before`` tree, then this one, in fresh subprocesses (so
both see the same machine state), and records each run's minimum and median time
per step and the optimised HLO's instruction and fusion counts. On a shared
machine single timings vary by +-50%; the minimum over rounds is the robust
estimate of a program's own cost. Writes ``--out`` (JSON) and prints a table.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

UNIT = {"fast_S1": ("fast", 50, 1, 40), "fast_S8": ("fast", 50, 8, 15),
        "lstm_S1": ("lstm", 3, 1, 15)}


def measure():
    """Runs in the tree on PYTHONPATH: {unit: {min_ms_step, median_ms_step, ...}}."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    import l2n_jax as l2n
    from l2n_jax.train import Shapes, make_program
    from l2n_jax.usecases import netalloc

    fast = netalloc.get_config()
    configs = {"fast": fast, "lstm": fast.replace(
        ir_kind="lstm", predictor_lstm=(128, 128, 64), batch_size=256)}
    out = {}
    for name, (model, n_steps, seeds, repeats) in UNIT.items():
        config = configs[model]
        train = netalloc.load("eu").train.take(slice(0, n_steps * config.batch_size))
        train = l2n.Windows(*(jnp.asarray(x) for x in train))
        program = make_program(config, Shapes.of(train), metric=netalloc.make_metric())

        def epoch(key, state, program=program, train=train):
            return program.epochs(key, state, train, None, 0, 1)

        keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
        states = jax.vmap(program.init)(keys)
        if seeds > 1:
            fn, args = jax.jit(jax.vmap(epoch)), (keys, states)
        else:
            fn, args = jax.jit(epoch), (keys[0], jax.tree.map(lambda x: x[0], states))
        compiled = fn.lower(*args).compile()
        hlo = compiled.as_text()
        jax.block_until_ready(compiled(*args))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - t0)
        out[name] = {
            "min_ms_step": 1e3 * min(times) / n_steps,
            "median_ms_step": 1e3 * statistics.median(times) / n_steps,
            "hlo_instructions": len(re.findall(r"^\s+\S+ = ", hlo, flags=re.M)),
            "fusions": len(re.findall(r"^\s+\S+ = \S+ fusion\(", hlo, flags=re.M)),
        }
    return out


def _run(tree):
    env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, __file__, "--measure"], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv):
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure()))
        return
    flags = dict(a.lstrip("-").split("=", 1) for a in argv)
    before = flags["before"]
    after = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rounds = int(flags.get("rounds", 4))
    runs = {"before": [], "after": []}
    for r in range(rounds):
        runs["before"].append(_run(before))
        runs["after"].append(_run(after))
        print(f"round {r + 1}/{rounds} done", flush=True)
    rows = []
    for unit in UNIT:
        row = {"unit": unit}
        for tree, rs in runs.items():
            row[f"{tree}_min_ms"] = min(x[unit]["min_ms_step"] for x in rs)
            row[f"{tree}_median_ms"] = statistics.median(x[unit]["median_ms_step"] for x in rs)
            row[f"{tree}_hlo_instructions"] = rs[0][unit]["hlo_instructions"]
            row[f"{tree}_fusions"] = rs[0][unit]["fusions"]
        row["after_over_before_min"] = row["after_min_ms"] / row["before_min_ms"]
        rows.append(row)
    out = flags.get("out", "benchmarks/results/speed_ab.json")
    with open(out, "w") as f:
        json.dump({"before": before, "rounds": rounds, "rows": rows, "runs": runs}, f,
                  indent=1)
    print("| unit | before min / median ms | after min / median ms | after / before (min) "
          "| HLO instructions before / after | fusions before / after |")
    for r in rows:
        print(f"| {r['unit']} | {r['before_min_ms']:.3f} / {r['before_median_ms']:.3f} | "
              f"{r['after_min_ms']:.3f} / {r['after_median_ms']:.3f} | "
              f"{r['after_over_before_min']:.3f} | {r['before_hlo_instructions']} / "
              f"{r['after_hlo_instructions']} | {r['before_fusions']} / {r['after_fusions']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
