"""TaskMet on the cubic problem (``usecases/cubic.py``): the metric-weighted inner
fit, the implicit outer step of ``l2n_jax.taskmet`` and the authors' loop order,
under ``cubic.early_stopping``.
"""

import jax
import jax.numpy as jnp
import optax

from l2n_jax import taskmet

from . import cubic

def taskmet_parts(cfg: cubic.CubicConfig, data: cubic.Data, metric: taskmet.MetricNet):
    lam = lambda phi, x: metric.apply(phi, x[..., None])[..., 0, 0]
    weighted = lambda theta, w, idx: jnp.mean(
        w * (cubic.predict(theta, data.x_fit[idx]) - data.y_fit[idx]) ** 2
    )
    return taskmet.TaskMetParts(
        prepare=lambda phi: lam(phi, data.x_fit),
        inner_loss=lambda theta, w_all, idx: weighted(theta, w_all[idx], idx),
        pred_loss=lambda theta, phi, idx: weighted(
            theta, lam(phi, data.x_fit[idx]), idx
        ),
        task_loss=lambda theta, idx: cubic.dfl_loss(
            cfg, cubic.predict(theta, data.x_fit[idx]), data.y_fit[idx], cfg.task_alpha
        ),
        sample_inner=lambda k: cubic._sample(k, cfg.n_fit, cfg.inner_batch),
        sample_implicit=lambda k: cubic._sample(k, cfg.n_fit, cfg.implicit_batch),
        inner_tx=optax.chain(
            optax.clip_by_global_norm(cfg.inner_clip), optax.adam(cfg.inner_lr)
        ),
        outer_tx=optax.adam(cfg.outer_lr),
        inner_steps=cfg.inner_steps,
        cg_iters=cfg.cg_iters,
        ridge=cfg.ridge,
        grad_tol=cfg.grad_tol,
    )


def make_train(cfg: cubic.CubicConfig):
    metric = taskmet.metric_net(1, 1, cfg.metric_hidden)

    def train(key: jax.Array, data: cubic.Data):
        key_theta, key_phi, key_loop = jax.random.split(key, 3)
        parts = taskmet_parts(cfg, data, metric)
        state = taskmet.init_state(
            parts, cubic.init_predictor(key_theta), metric.init(key_phi)
        )
        # Iteration t: inner fit (500 steps at t = 0, then inner_steps), validation
        # when t % val_every == 0, outer step. A round starts at a validation, so it
        # runs [outer(t), inner(t + 1)] for t in the round; the first inner fit is
        # before the loop.
        tkey = lambda t, tag: jax.random.fold_in(jax.random.fold_in(key_loop, t), tag)
        state, _ = taskmet.taskmet_inner(parts, tkey(0, 0), state, cfg.inner_init_steps)

        def iteration(state, t):
            idx = cubic._sample(tkey(t, 1), cfg.n_fit, cfg.batch)
            state, _ = taskmet.taskmet_outer(parts, tkey(t, 2), state, idx)
            state, _ = taskmet.taskmet_inner(parts, tkey(t + 1, 0), state)
            return state, None

        def round_fn(r, state):
            ts = r * cfg.val_every + jnp.arange(cfg.val_every)
            return jax.lax.scan(iteration, state, ts)[0]

        val_fn = lambda s: cubic.dfl_loss(
            cfg, cubic.predict(s.theta, data.x_valid), data.y_valid, cfg.task_alpha
        )
        return cubic.early_stopping(
            cfg,
            state,
            round_fn,
            val_fn,
            lambda s: {"theta": s.theta, "phi": s.phi},
        )

    return train, metric
