"""System metrics: the costs the system reports after a decision.

A metric is ``metric(decision [m], obs [k]) -> cost ()`` on ONE sample, lower is
better, written in ``jax.numpy``; l2n_jax vmaps it. It is never differentiated: the
loss shaper only regresses on its values.

* ``host_metric`` wraps a NumPy/Python black box through ``jax.pure_callback``.
  It works under ``jit``, ``vmap`` (any nesting: seeds x batch) and ``lax.scan``.
  Each call costs one device-to-host transfer per batch: prefer ``jnp`` metrics on
  GPU/TPU.
* ``StatefulMetric`` is the type of time-correlated metrics (the ``power`` use case):
  ``step(state, decision, obs) -> (cost, v, new_state)``.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MetricFn = Callable[[jax.Array, jax.Array], jax.Array]


class StatefulMetric(NamedTuple):
    """A time-correlated metric, run as a ``lax.scan`` over a contiguous segment.

    Attributes:
      init: ``() -> state`` (a pytree of arrays), the state at a sequence start.
      step: ``(state, decision [m], obs [k]) -> (cost (), v [j], new_state)`` where
        ``v`` (e.g. a count of consecutive outages) is fed to the loss shaper.
    """

    init: Callable[[], Any]
    step: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array, Any]]


class HostMetric:
    """A per-sample metric backed by a batched NumPy function (see ``host_metric``)."""

    def __init__(self, fn, decision_dim: int, obs_dim: int, name: str | None = None):
        self.fn = fn
        self.decision_dim = int(decision_dim)
        self.obs_dim = int(obs_dim)
        self.__name__ = name or getattr(fn, "__name__", "host_metric")

    def _host_call(self, decisions, obs):
        decisions = np.asarray(decisions, np.float32)
        obs = np.asarray(obs, np.float32)
        lead = decisions.shape[:-1]
        costs = self.fn(
            decisions.reshape(-1, self.decision_dim), obs.reshape(-1, self.obs_dim)
        )
        return np.asarray(costs, np.float32).reshape(lead)

    def __call__(self, decision, obs):
        # The metric is a regression target only: no gradient may reach the callback.
        decision = jax.lax.stop_gradient(jnp.asarray(decision, jnp.float32))
        obs = jax.lax.stop_gradient(jnp.asarray(obs, jnp.float32))
        out = jax.ShapeDtypeStruct(decision.shape[:-1], jnp.float32)
        # broadcast_all: under vmap the callback gets full batches [..., m], [..., k]
        # in one call, which is what a batched NumPy function wants.
        return jax.pure_callback(
            self._host_call, out, decision, obs, vmap_method="broadcast_all"
        )


def host_metric(fn, decision_dim: int, obs_dim: int, name: str | None = None) -> HostMetric:
    """Wraps a NumPy/Python black-box cost as a per-sample l2n_jax metric.

    Args:
      fn: batched function ``fn(decisions [B, m], obs [B, k]) -> costs [B]`` on NumPy
        arrays; it may do anything on the host (simulators, pandas, lookups).
      decision_dim: m.
      obs_dim: k.
      name: used in error messages; defaults to ``fn.__name__``.

    Returns:
      A callable ``metric(decision [m], obs [k]) -> cost ()`` usable under jit/vmap.
    """
    if not callable(fn):
        raise ValueError(f"host_metric: fn must be callable, got {fn!r}")
    return HostMetric(fn, decision_dim, obs_dim, name)


def check_metric(metric, decisions, obs) -> None:
    """Calls ``metric`` once on a few samples and raises a clear ValueError if it
    fails, returns the wrong shape, or a non-float dtype.

    Args:
      metric: a per-sample metric or a ``host_metric``.
      decisions: [B, m] example decisions (e.g. training targets).
      obs: [B, k] matching observations.
    """
    name = metric_name(metric)
    decisions = np.asarray(decisions, np.float32)
    obs = np.asarray(obs, np.float32)
    b, m, k = decisions.shape[0], decisions.shape[1], obs.shape[1]
    what = f"decisions [{b}, {m}] and obs [{b}, {k}]"
    if isinstance(metric, HostMetric):
        if (metric.decision_dim, metric.obs_dim) != (m, k):
            raise ValueError(
                f"host metric {name!r} was declared for decision_dim="
                f"{metric.decision_dim}, obs_dim={metric.obs_dim}, but the data have "
                f"m={m}, k={k}"
            )
        try:
            out = np.asarray(metric.fn(decisions, obs))
        except Exception as e:  # a user's black box: report whatever it raised
            raise ValueError(
                f"host metric {name!r} raised {type(e).__name__}: {e} when called on {what}"
            ) from e
        shape, dtype = out.shape, out.dtype
        expected = f"costs [{b}]"
    else:
        try:
            out = jax.eval_shape(jax.vmap(metric), decisions, obs)
        except Exception as e:
            raise ValueError(
                f"metric {name!r} failed on one sample (decision [{m}], obs [{k}]): "
                f"{type(e).__name__}: {e}"
            ) from e
        shape, dtype = out.shape, out.dtype
        expected = "a scalar cost per sample"
    if tuple(shape) != (b,):
        got = shape if isinstance(metric, HostMetric) else shape[1:]
        raise ValueError(f"metric {name!r} must return {expected}, returned shape {tuple(got)}")
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(
            f"metric {name!r} must return float costs, returned dtype {dtype}; "
            "cast the cost to float"
        )


def batch_metric(metric: MetricFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``metric`` over a batch: ``(decisions [B, m], obs [B, k]) -> costs [B]``."""
    if isinstance(metric, StatefulMetric):
        raise NotImplementedError(
            "StatefulMetric training lands with the 'power' use case; pass a "
            "per-sample metric(decision, obs) for now"
        )
    return jax.vmap(metric)


def metric_name(metric: Any) -> str:
    return getattr(metric, "__name__", type(metric).__name__)
