"""System metrics: the costs the system reports after a decision.

A metric is ``metric(decision [m], obs [k]) -> cost ()`` on ONE sample, lower is
better, written in ``jax.numpy``; l2n_jax vmaps it. It is never differentiated: the
loss shaper only regresses on its values.

* ``host_metric`` wraps a NumPy/Python black box through ``jax.pure_callback``.
  It works under ``jit``, ``vmap`` (any nesting: seeds x batch) and ``lax.scan``.
  Each call costs one device-to-host transfer per batch: prefer ``jnp`` metrics on
  GPU/TPU.
* ``StatefulMetric`` is the type of time-correlated metrics (the ``power`` use case):
  ``step(state, decision, obs) -> (cost, v, new_state)``. ``batch_metric`` runs it as
  a ``lax.scan`` over the rows of a batch taken as consecutive time steps from
  ``init()``.
* ``CostModel`` is how a training step sees either kind: ``report(state,
  decisions, obs) -> (costs, v, state)`` over a batch. A plain metric is lifted to an empty
  state and a ``v`` of width 0, so one step serves both (``cost_model``).
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class StatefulMetric(NamedTuple):
    """A time-correlated metric, run as a ``lax.scan`` over a contiguous segment.

    Attributes:
      init: ``() -> state`` (a pytree of arrays), the state at a sequence start.
      step: ``(state, decision [m], obs [k]) -> (cost (), v [j], new_state)`` for
        ONE time step, in ``jax.numpy``. ``v`` (e.g. the count of consecutive
        outages before this step) is what the system reveals about its state; the
        loss shaper gets it as an extra input, ``f_l(decision, obs, v)``. It should
        depend on past decisions only (the state), not on ``decision``: the
        predictor's gradient treats it as given. ``new_state`` has the structure,
        shapes and dtypes of ``state``.
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
    if isinstance(metric, StatefulMetric):
        v_dim(metric, decisions, obs)
        return
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


def v_dim(metric: StatefulMetric, decisions, obs) -> int:
    """Checks a StatefulMetric on a few consecutive samples; returns ``j = len(v)``.

    Raises a ValueError naming the metric if ``init``/``step`` fail, or if the cost
    is not a float scalar, ``v`` not a 1-D numeric vector, or ``new_state`` differs
    in structure, shape or dtype from ``state`` (a ``lax.scan`` carry must not).
    """
    name = metric_name(metric)
    if not (callable(metric.init) and callable(metric.step)):
        raise ValueError(f"stateful metric {name!r}: init and step must be callable")
    d = jax.ShapeDtypeStruct(np.shape(decisions)[1:], jnp.float32)
    o = jax.ShapeDtypeStruct(np.shape(obs)[1:], jnp.float32)
    try:
        state = jax.eval_shape(metric.init)
        cost, v, new_state = jax.eval_shape(metric.step, state, d, o)
    except Exception as e:
        raise ValueError(
            f"stateful metric {name!r} failed on one step (decision {list(d.shape)}, "
            f"obs {list(o.shape)}): {type(e).__name__}: {e}"
        ) from e
    if cost.shape != () or not np.issubdtype(cost.dtype, np.floating):
        raise ValueError(
            f"stateful metric {name!r}: step must return a float scalar cost, returned "
            f"{cost.dtype}{list(cost.shape)}"
        )
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(
            f"stateful metric {name!r}: step must return v as a 1-D vector [j], "
            f"returned {v.dtype}{list(v.shape)}"
        )
    same = jax.tree.structure(state) == jax.tree.structure(new_state) and all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state))
    )
    if not same:
        raise ValueError(
            f"stateful metric {name!r}: step must return a new state shaped like "
            f"init() ({state}), returned {new_state}"
        )
    return int(v.shape[0])


def scan_metric(metric: StatefulMetric, state, decisions, obs):
    """Runs a stateful metric over consecutive time steps.

    Args:
      metric: the StatefulMetric.
      state: its state before the first step.
      decisions: [T, m] decisions, in time order.
      obs: [T, k] observations.

    Returns:
      (costs [T], v [T, j] float32, state after the last step).
    """

    def body(s, x):
        cost, v, s = metric.step(s, *x)
        return s, (cost, jnp.asarray(v, jnp.float32))

    state, (costs, v) = jax.lax.scan(body, state, (decisions, obs))
    return costs, v, state


def batch_metric(metric) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``metric`` over a batch: ``(decisions [B, m], obs [B, k]) -> costs [B]``.

    A per-sample metric is vmapped. A ``StatefulMetric`` treats the rows as
    consecutive time steps of one sequence starting at ``metric.init()`` (a
    ``lax.scan``): this is how a whole validation or test split is scored, in order.
    """
    if isinstance(metric, StatefulMetric):
        return lambda decisions, obs: scan_metric(metric, metric.init(), decisions, obs)[0]
    return jax.vmap(metric)


def metric_name(metric: Any) -> str:
    if isinstance(metric, StatefulMetric):
        return getattr(metric.step, "__name__", "StatefulMetric")
    return getattr(metric, "__name__", type(metric).__name__)


class CostModel(NamedTuple):
    """The system as a training step sees it, for plain and stateful metrics alike.

    Attributes:
      init: ``() -> state`` at a sequence start (``()`` for a plain metric).
      report: ``(state, decisions [B, m], obs [B, k]) -> (costs [B], v [B, j],
        state)``: what the system reports after the decisions.
      v_dim: ``j``, what the system reveals besides ``obs`` (0 for a plain metric).
    """

    init: Callable[[], Any]
    report: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array, Any]]
    v_dim: int

    def summary(self, v) -> dict:
        """Logged statistics of ``v`` (none when the metric reveals nothing)."""
        return {"v_mean": jnp.mean(v)} if self.v_dim else {}


def cost_model(metric, v_dim: int = 0, lanes: int = 1) -> CostModel:
    """Lifts ``metric`` to the ``CostModel`` protocol.

    Args:
      metric: a per-sample metric (vmapped; empty state, ``v`` of width 0) or a
        ``StatefulMetric``.
      v_dim: a StatefulMetric's ``len(v)`` (``v_dim(metric, ...)`` checks it).
      lanes: a StatefulMetric only: a batch is ``lanes`` contiguous time segments
        of equal length, one after another; each lane carries its own state.
    """
    if not isinstance(metric, StatefulMetric):
        per_sample = jax.vmap(metric)

        def report_plain(state, decisions, obs):
            return per_sample(decisions, obs), jnp.zeros((decisions.shape[0], 0)), state

        return CostModel(lambda: (), report_plain, 0)

    def init():
        return jax.tree.map(
            lambda x: jnp.broadcast_to(jnp.asarray(x), (lanes, *jnp.shape(x))), metric.init()
        )

    def report(state, decisions, obs):
        def lane(x):
            return x.reshape(lanes, -1, x.shape[-1])

        costs, v, state = jax.vmap(lambda s, d, o: scan_metric(metric, s, d, o))(
            state, lane(decisions), lane(obs)
        )
        return costs.reshape(-1), v.reshape(-1, v_dim), state

    return CostModel(init, report, v_dim)
