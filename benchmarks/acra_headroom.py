"""How much any acra policy could gain over the knapsack: two oracle references.

    python benchmarks/acra_headroom.py

For every S, on the test split: the exact knapsack on the TRUE demands with
allocation = demand (the ``oracle`` method), and the same knapsack where each
admitted client gets the allocation that just reaches the contract QoE,
``(t_s + logit(Q0) / k_s) * d_s`` (an oracle that also knows the hidden QoE curves).
Writes ``benchmarks/results/acra/headroom.md``.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from l2n_jax.usecases import acra, acra_emulator as emu

OUT = pathlib.Path(__file__).resolve().parent / "results" / "acra" / "headroom.md"


def main():
    metric = jax.jit(jax.vmap(acra.make_metric()))
    lines = ["| clients | oracle (allocation = demand) | oracle that also knows the QoE "
             "curves | gain |", "|---|---|---|---|"]
    for site in acra.SITES:
        ws = acra.load(site)
        p = emu.emulator_params(acra.n_clients(site))
        d = np.asarray(ws.test.obs, np.float64)
        plain = emu.oracle_decision(d, p.capacity, p.prices)
        need = p.threshold + np.log(p.q0 / (1 - p.q0)) / p.steepness
        mask = emu.knapsack_batch(p.prices * d, need * d, p.capacity)
        qoe = np.where(mask, need * d, 0.0).astype(np.float32)
        a, b = (-float(metric(jnp.asarray(x), jnp.asarray(d, jnp.float32)).mean())
                for x in (plain, qoe))
        lines.append(f"| {site} | {a:.4f} | {b:.4f} | {b / a:.3f}× |")
        print(lines[-1], flush=True)
    OUT.write_text("Normalised test profit. Command: `python benchmarks/acra_headroom.py`\n\n"
                   + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
