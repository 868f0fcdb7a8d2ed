"""Run by tests/test_sharding.py in a subprocess: a tiny 4-seed fit, params to .npz.

The device count comes from the caller's XLA_FLAGS, which must be set before jax
starts; that is why this runs in its own process.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import l2n_jax as l2n


def main(out):
    t = np.arange(1200)
    noise = 0.3 * np.random.default_rng(0).normal(size=t.size)
    frame = pd.DataFrame({"load": np.sin(2 * np.pi * t / 24) + noise})
    ws = l2n.make_windows(frame, ["load"], 12)
    config = l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                        assembler=(8,), shaper_hidden=(16, 16), log_every=1)

    def cost(d, y):
        return jnp.sum(4 * jnp.maximum(y - d, 0) + jnp.maximum(d - y, 0))

    result = l2n.fit(config, ws.train, cost, seeds=(0, 1, 2, 3), valid=ws.valid)
    leaves = jax.tree.leaves(result.params)
    print(f"devices={jax.device_count()} run_devices={result.timing['devices']}")
    np.savez(out, *[np.asarray(x) for x in leaves])


if __name__ == "__main__":
    main(sys.argv[1])
