"""Fixed per-sample losses for the baselines: ``loss(prediction [m], target [m]) -> ()``.

All are in scaled units (the units of ``Windows.targets``). ``alpha_omc`` is the
expert surrogate of DeepCog (Bega et al. 2019) for the cost
``beta 1[x < 0] + gamma x 1[x >= 0]``, with ``x = y_hat - y`` and ``alpha = beta/gamma``:
``alpha - e x`` for x < 0, ``alpha - x / e`` for 0 <= x <= e alpha, ``x - e alpha`` above.
"""

import functools

import jax.numpy as jnp


def mse(pred, target):
    """Mean squared error."""
    return jnp.mean((pred - target) ** 2)


def mae(pred, target):
    """Mean absolute error."""
    return jnp.mean(jnp.abs(pred - target))


def msle(pred, target):
    """Mean squared log error; inputs are clipped above -1 + 1e-6 (scaled units)."""
    lp = jnp.log1p(jnp.maximum(pred, -1.0 + 1e-6))
    lt = jnp.log1p(jnp.maximum(target, -1.0 + 1e-6))
    return jnp.mean((lp - lt) ** 2)


def pinball_at(pred, target, tau):
    """The pinball loss at a (possibly traced) ``tau``: the family behind
    ``pinball``, for a grid of taus trained in one program."""
    diff = target - pred
    return jnp.mean(jnp.maximum(tau * diff, (tau - 1.0) * diff))


# Cached: equal arguments give the same function object, so a training keyed by its
# loss (a methods.FitCache key) is shared between callers, e.g. two SLA fees.
@functools.lru_cache(maxsize=None)
def pinball(tau: float):
    """Quantile (pinball) loss at quantile ``tau``; tau > 0.5 favours over-provisioning."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"pinball: tau must be in (0, 1), got {tau}")

    def loss(pred, target):
        diff = target - pred
        return jnp.mean(jnp.maximum(tau * diff, (tau - 1.0) * diff))

    loss.__name__ = f"pinball_{tau:g}"
    return loss


@functools.lru_cache(maxsize=None)
def alpha_omc(alpha: float, e: float = 0.1):
    """The alpha-OMC surrogate (DeepCog); minimum 0 at the over-provision e*alpha."""
    if alpha <= 0 or e <= 0:
        raise ValueError(f"alpha_omc: alpha and e must be > 0, got {alpha}, {e}")

    def loss(pred, target):
        x = pred - target
        below = alpha - e * x
        ramp = alpha - x / e
        above = x - e * alpha
        return jnp.mean(jnp.where(x < 0, below, jnp.where(x <= e * alpha, ramp, above)))

    loss.__name__ = f"alpha_omc_{alpha:g}"
    return loss
