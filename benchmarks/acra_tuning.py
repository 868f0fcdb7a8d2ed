"""How the acra default config was chosen: four variants on S4, validation split.

    python benchmarks/acra_tuning.py > benchmarks/results/acra/tuning.txt

Trains Loss2Net on S4 (seeds 0 and 1, 20 epochs of which 4 MSE pre-training,
batch 256) with the default learning rate and noise, a fixed noise of 0.05, a
lower peak learning rate (3e-4), and both, and prints per variant the test profit,
accepted clients, the epoch kept and the validation profit after every epoch. The
choice (lr_max = 3e-4) was made on the validation profits only.
"""

import sys
import time

from absl import logging

import l2n_jax as l2n
from l2n_jax.usecases import acra

BASE = l2n.Config(
    epochs=20, pretrain_epochs=4, batch_size=256, ir_mlp=(64, 64),
    assembler=(256, 256, 128, 64), shaper_hidden=(256, 256, 256, 256, 128),
    replay_size=4096, log_every=4,
)
VARIANTS = {
    "default": {},
    "noise_fixed_0.05": dict(noise_schedule="fixed", noise_start=0.05),
    "lr_3e-4": dict(lr_max=3e-4),
    "noise_fixed_0.05+lr_3e-4": dict(noise_schedule="fixed", noise_start=0.05, lr_max=3e-4),
}


def main():
    logging.set_verbosity(logging.WARNING)
    site = "S4"
    ws = acra.load(site)
    metric = acra.make_metric()
    for name in sys.argv[1:] or VARIANTS:
        t = time.time()
        r = l2n.fit(BASE.replace(**VARIANTS[name]), ws.train, metric, seeds=(0, 1),
                    valid=ws.valid)
        df = l2n.score(r.predict(ws.test.inputs), ws.test, metric, (0, 1), name)
        df = df.assign(**acra.options().columns(df, r.predict(ws.test.inputs), ws))
        valid = -r.history.groupby("epoch")["valid_cost"].mean()
        print(f"{name}: test profit {df['profit'].round(4).tolist()} accepted "
              f"{df['accepted'].round(2).tolist()} best_epoch {r.best_epoch.tolist()} "
              f"valid profit by epoch {valid.round(3).tolist()} ({time.time() - t:.0f}s)",
              flush=True)


if __name__ == "__main__":
    main()
