"""Learning-rate and exploration-noise schedules: pure ``count -> value`` functions.

optax has no repeating triangular schedule (Smith 2017, the paper's CLR), so it is
written here in ``jnp`` on the step counter; every schedule works under ``jax.jit``
with a traced count, so the compiled train step reads the current value each step.
The run length (``total_steps``) may be traced too: sites of different lengths
batched in one program (``fit_sites``) each have their own.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from l2n_jax.config import Config

Schedule = Callable[[jax.Array], jax.Array]


def triangular(base_value: float, peak_value: float, step_size: float) -> Schedule:
    """Triangular cyclic schedule: base -> peak over ``step_size`` steps, then back.

    Args:
      base_value: value at counts 0, 2*step_size, 4*step_size, ...
      peak_value: value at counts step_size, 3*step_size, ...
      step_size: half a cycle, in steps (> 0; may be fractional, so a short run
        still gets exactly the requested number of cycles).

    Returns:
      A function of the (int) count.
    """
    if isinstance(step_size, (int, float)) and step_size <= 0:
        raise ValueError(f"triangular: step_size must be > 0, got {step_size}")

    def schedule(count):
        position = jnp.asarray(count, jnp.float32) / step_size
        cycle = jnp.floor(1.0 + position / 2.0)
        x = jnp.abs(position - 2.0 * cycle + 1.0)
        return base_value + (peak_value - base_value) * jnp.maximum(0.0, 1.0 - x)

    return schedule


def exponential(start: float, end: float, total_steps: int) -> Schedule:
    """Geometric interpolation from ``start`` (count 0) to ``end`` (count total_steps)."""
    span = _at_least_one(total_steps)

    def schedule(count):
        frac = jnp.clip(jnp.asarray(count, jnp.float32) / span, 0.0, 1.0)
        return start * (end / start) ** frac

    return schedule


def _at_least_one(total_steps):
    # Python ints keep the exact constant (committed results are bitwise stable).
    if isinstance(total_steps, int):
        return max(total_steps, 1)
    return jnp.maximum(total_steps, 1).astype(jnp.float32)


def constant(value: float) -> Schedule:
    return lambda count: jnp.full((), value, jnp.float32)


def learning_rate(config: Config, total_steps: int) -> Schedule:
    """The predictor's learning rate over ``total_steps`` co-training steps."""
    if config.lr_schedule == "cyclic":
        step_size = _at_least_one(total_steps) / (2 * config.lr_cycles)
        return triangular(config.lr_min, config.lr_max, step_size)
    if config.lr_schedule == "exp":
        return exponential(config.lr_max, config.lr_min, total_steps)
    return constant(config.lr_max)


def noise_std(config: Config, total_steps: int) -> Schedule:
    """The exploration noise std over ``total_steps`` co-training steps."""
    if config.noise_schedule == "exp":
        return exponential(config.noise_start, config.noise_end, total_steps)
    if config.noise_schedule == "fixed":
        return constant(config.noise_start)
    return constant(0.0)
