"""Training speed: 1 seed, S seeds vmapped in one jit, mapped in one jit, in a loop.

    python benchmarks/speed.py                       # full (about 7 min on 2 cores)
    python benchmarks/speed.py --seeds=1,2 --repeats=2 --out=/tmp/speed   # smoke

The timed unit is one epoch of ``--steps`` Loss2Net train steps (a ``lax.scan``, as
training runs) on the ``netalloc`` ``eu`` windows; per-step time = epoch time /
steps. For every S in ``--seeds``: the vmapped program (one jit over S seeds), the
mapped program (one jit, ``lax.map`` over the S seeds: ``Config.seed_batching='map'``)
and the loop (S calls of the single-seed jitted epoch, already compiled). Compile time
(AOT ``lower().compile()``) is reported apart from run time; run times are medians
of ``--repeats``. Also: XLA's FLOP count of one train step (``cost_analysis`` of the
un-scanned step, since XLA counts a loop body once; the LSTM IR unrolls its window,
so every time step is counted, and a step whose compiled program still loops over
matmuls is flagged, its count being a lower bound), the achieved FLOP/s, the
machine's measured f32 matmul peak, and the program's memory (XLA
``memory_analysis``: arguments + outputs + temporaries; on GPU also the device's
peak bytes in use). Models: the netalloc default (MLP IR, batch 64) and the paper's
LSTM IR (128, 128, 64) at batch 256.

Writes ``<out>.json`` and ``<out>.md``.
"""

import json
import os
import pathlib
import platform
import re
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import l2n_jax as l2n
from l2n_jax.runs import map_over  # the seed_batching='map' code path
from l2n_jax.train import Shapes, make_program
from l2n_jax.usecases import netalloc

_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "4", "8", "16", "32"], "Values of S.")
_LSTM_SEEDS = flags.DEFINE_list("lstm_seeds", ["1", "2", "4", "8"], "S for the LSTM.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (median reported).")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed epoch (fast model).")
_LSTM_STEPS = flags.DEFINE_integer("lstm_steps", 3, "Steps per timed epoch (LSTM).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/speed", "Output path stem.")


def _median(fn, repeats):
    jax.block_until_ready(fn())  # warm-up: first-call allocations are not timed
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(repeats):
    """The best f32 matmul FLOP/s over a few square sizes (the roofline's ceiling)."""
    best = 0.0
    for n in (512, 1024, 2048):
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        f = jax.jit(lambda x: x @ x).lower(a).compile()
        best = max(best, 2 * n**3 / _median(lambda: f(a), repeats))
    return best


def _memory(compiled):
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               + stats.temp_size_in_bytes)


def _loops_over_matmuls(hlo):
    """Whether a while loop of the compiled HLO text runs a dot or convolution.

    XLA's cost analysis counts a loop body once, whatever its trip count, so such a
    program's FLOP count is a lower bound. (Loops without matmuls, like the PRNG's
    threefry rounds, hardly count.)
    """
    computations = {m.group(1): m.group(0) for m in re.finditer(
        r"^(?:ENTRY )?%?([\w.\-]+) .*?^}", hlo, re.M | re.S)}

    def has_matmul(name, seen):
        if name in seen or name not in computations:
            return False
        seen.add(name)
        text = computations[name]
        return bool(re.search(r" (dot|convolution)\(", text)) or any(
            has_matmul(callee, seen) for callee in re.findall(r"%([\w.\-]+)", text)
            if callee in computations)

    bodies = re.findall(r" while\(.*?body=%([\w.\-]+)", hlo)
    return any(has_matmul(body, set()) for body in bodies)


def measure(name, config, n_steps, seed_counts, repeats):
    ws = netalloc.load("eu")
    train = ws.train.take(slice(0, n_steps * config.batch_size))
    train = l2n.Windows(*(jnp.asarray(x) for x in train))
    program = make_program(config, Shapes.of(train), metric=netalloc.make_metric())
    batch = train.take(jnp.arange(config.batch_size))

    def epoch(key, state):
        return program.epochs(key, state, train, None, 0, 1)

    key0 = jax.random.key(0)
    state0 = program.init(key0)
    step_c = jax.jit(program.step(train)).lower(key0, state0, batch).compile()
    flops = float((step_c.cost_analysis() or {}).get("flops", float("nan")))
    flops_lower_bound = _loops_over_matmuls(step_c.as_text())
    if flops_lower_bound:
        print(f"{name}: the train step loops over matmuls; its FLOP count is a "
              "lower bound", flush=True)
    one = jax.jit(epoch)
    t0 = time.perf_counter()
    one_c = one.lower(key0, state0).compile()
    compile_one = time.perf_counter() - t0
    rows = []
    for s in seed_counts:
        keys = jax.vmap(jax.random.key)(jnp.arange(s, dtype=jnp.uint32))
        states = jax.vmap(program.init)(keys)
        t0 = time.perf_counter()
        many_c = jax.jit(jax.vmap(epoch)).lower(keys, states).compile()
        compile_many = time.perf_counter() - t0
        mapped_c = jax.jit(map_over(epoch, (0, 0))).lower(keys, states).compile()
        singles = [(keys[i], jax.tree.map(lambda x, i=i: x[i], states)) for i in range(s)]
        tv = _median(lambda: many_c(keys, states), repeats) / n_steps
        tm = _median(lambda: mapped_c(keys, states), repeats) / n_steps
        tl = _median(lambda: [one_c(k, st) for k, st in singles], repeats) / n_steps
        rows.append({
            "model": name, "batch_size": config.batch_size, "steps_timed": n_steps,
            "seeds": s, "compile_s_1_seed": compile_one, "compile_s_vmapped": compile_many,
            "step_s_vmapped": tv, "step_s_mapped": tm, "step_s_loop": tl,
            "vmap_speedup": tl / tv, "map_speedup": tl / tm,
            "steps_per_s_vmapped": s / tv, "samples_per_s_vmapped": s * config.batch_size / tv,
            "samples_per_s_loop": s * config.batch_size / tl,
            "flops_per_step_per_seed": flops, "flops_per_s_vmapped": flops * s / tv,
            "flops_lower_bound": flops_lower_bound,
            "program_bytes_vmapped": _memory(many_c),
        })
        print(rows[-1], flush=True)
    return rows


def main(argv):
    del argv
    fast = netalloc.get_config()
    lstm = fast.replace(ir_kind="lstm", predictor_lstm=(128, 128, 64), batch_size=256)
    peak = matmul_peak(_REPEATS.value)
    rows = measure("fast default (MLP IR, batch 64)", fast, _STEPS.value,
                   [int(s) for s in _SEEDS.value], _REPEATS.value)
    rows += measure("paper LSTM IR (128,128,64), batch 256", lstm, _LSTM_STEPS.value,
                    [int(s) for s in _LSTM_SEEDS.value], _REPEATS.value)
    device = jax.devices()[0]
    gpu_peak = None
    if device.platform != "cpu" and hasattr(device, "memory_stats"):
        gpu_peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    meta = {
        "command": "python benchmarks/speed.py",
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_kind": getattr(device, "device_kind", device.platform),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "matmul_peak_flops": peak,
        "device_peak_bytes_in_use": gpu_peak,
        "repeats": _REPEATS.value,
    }
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Command: `{meta['command']}` on {meta['device_kind']} ({meta['machine']}, "
        f"{meta['cpu_count']} cores), jax {meta['jax']}"
        + (f", XLA_FLAGS={meta['xla_flags']}" if meta["xla_flags"] else "")
        + f"; medians of {meta['repeats']} "
        f"repeats; measured f32 matmul peak {peak / 1e9:.1f} GFLOP/s.\n",
        "| model | S | vmapped ms/step | mapped ms/step | loop ms/step | vmap speed-up | "
        "map speed-up | seed-steps/s (vmapped) | samples/s vmapped / loop | GFLOP/s "
        "vmapped (% of peak) | program MB | compile 1 / vmapped (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mb = r["program_bytes_vmapped"]
        lines.append(
            f"| {r['model']} | {r['seeds']} | {1e3 * r['step_s_vmapped']:.2f} | "
            f"{1e3 * r['step_s_mapped']:.2f} | {1e3 * r['step_s_loop']:.2f} | "
            f"{r['vmap_speedup']:.2f}× | {r['map_speedup']:.2f}× | "
            f"{r['steps_per_s_vmapped']:.0f} | {r['samples_per_s_vmapped']:.0f} / "
            f"{r['samples_per_s_loop']:.0f} | {r['flops_per_s_vmapped'] / 1e9:.1f} "
            f"({100 * r['flops_per_s_vmapped'] / peak:.0f}%) | "
            f"{'n/a' if mb is None else f'{mb / 2**20:.1f}'} | "
            f"{r['compile_s_1_seed']:.1f} / {r['compile_s_vmapped']:.1f} |"
        )
    if any(r["flops_lower_bound"] for r in rows):
        lines.append("\nFLOP counts of models whose train step loops over matmuls are "
                     "lower bounds (XLA counts a loop body once).")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
