"""Time per Loss2Net training step: 1 seed jitted, S seeds vmapped, S seeds in a loop.

The timed unit is one epoch (a ``lax.scan`` over ``--steps`` train steps, the way
training runs), on the ``netalloc`` ``eu`` windows; time per step = epoch time /
steps. Compile time is measured apart (AOT ``lower().compile()``); run times are
medians over ``--repeats``. Models: the fast default (MLP IR) and the paper-size
LSTM IR (128, 128, 64) at batch 256.

    python benchmarks/step_time.py --out=benchmarks/results/step_time

writes ``<out>.json`` and ``<out>.md``.
"""

import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import l2n_jax as l2n
from l2n_jax.train import Shapes, make_program
from usecases import netalloc

_SEEDS = flags.DEFINE_integer("seeds", 8, "S, the number of seeds vmapped / looped.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (median reported).")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed epoch (fast model).")
_LSTM_STEPS = flags.DEFINE_integer("lstm_steps", 3, "Steps per timed epoch (LSTM).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/step_time", "Output path stem.")


def _median_time(fn, *args, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name, config, n_steps, n_seeds, repeats):
    ws = netalloc.load("eu")
    train = ws.train.take(slice(0, n_steps * config.batch_size))
    train = l2n.Windows(*(jnp.asarray(x) for x in train))
    program = make_program(config, Shapes.of(train), metric=netalloc.make_metric())
    keys = jax.vmap(jax.random.key)(jnp.arange(n_seeds, dtype=jnp.uint32))
    states = jax.vmap(program.init)(keys)

    def epoch(key, state):
        return program.epochs(key, state, train, None, 0, 1)

    one = jax.jit(epoch)
    many = jax.jit(jax.vmap(epoch))
    state0 = jax.tree.map(lambda x: x[0], states)
    t0 = time.perf_counter()
    one_c = one.lower(keys[0], state0).compile()
    compile_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    many_c = many.lower(keys, states).compile()
    compile_many = time.perf_counter() - t0

    per_seed_states = [jax.tree.map(lambda x: x[i], states) for i in range(n_seeds)]

    def loop_prepared():
        return [one_c(keys[i], per_seed_states[i]) for i in range(n_seeds)]

    one_c(keys[0], state0)  # warm
    many_c(keys, states)
    t1 = _median_time(one_c, keys[0], state0, repeats=repeats) / n_steps
    tv = _median_time(many_c, keys, states, repeats=repeats) / n_steps
    tl = _median_time(loop_prepared, repeats=repeats) / n_steps
    return {
        "model": name,
        "batch_size": config.batch_size,
        "steps_timed": n_steps,
        "seeds": n_seeds,
        "compile_s_1_seed": compile_one,
        "compile_s_vmapped": compile_many,
        "step_s_1_seed": t1,
        f"step_s_{n_seeds}_seeds_vmapped": tv,
        f"step_s_{n_seeds}_seeds_loop": tl,
        "vmap_speedup_over_loop": tl / tv,
    }


def main(argv):
    del argv
    fast = netalloc.get_config()
    lstm = fast.replace(ir_kind="lstm", predictor_lstm=(128, 128, 64), batch_size=256)
    rows = [
        measure("fast default (MLP IR, batch 64)", fast, _STEPS.value, _SEEDS.value,
                _REPEATS.value),
        measure("paper LSTM IR (128,128,64), batch 256", lstm, _LSTM_STEPS.value,
                _SEEDS.value, _REPEATS.value),
    ]
    meta = {
        "command": "python benchmarks/step_time.py",
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
    }
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    s = _SEEDS.value
    lines = [
        f"Command: `{meta['command']}` — {meta['machine']}, {meta['cpu_count']} cores, "
        f"{meta['backend']}, jax {meta['jax']}; medians of {_REPEATS.value} repeats.\n",
        f"| model | 1 seed (ms/step) | {s} seeds vmapped (ms/step) | {s} seeds loop "
        "(ms/step) | vmap speed-up | compile 1 / vmapped (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {1e3 * r['step_s_1_seed']:.2f} | "
            f"{1e3 * r[f'step_s_{s}_seeds_vmapped']:.2f} | "
            f"{1e3 * r[f'step_s_{s}_seeds_loop']:.2f} | {r['vmap_speedup_over_loop']:.2f}× | "
            f"{r['compile_s_1_seed']:.1f} / {r['compile_s_vmapped']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
