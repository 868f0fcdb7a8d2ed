"""The probe metrics of issue 18 (usecases/probes.py): each stateful probe's scan
equals a plain Python loop of its docstring's rules, and the series load."""

import jax.numpy as jnp
import numpy as np
import pytest

from l2n_jax.metrics import scan_metric
from l2n_jax.usecases import probes


def _reference(probe, decisions, loads):
    """The docstring's rules, one hour at a time: (costs, v)."""
    costs, vs, state = [], [], 0.0
    for d, y in zip(decisions, loads):
        if probe == "backlog":
            vs.append(state)
            new = max(0.0, state + y - d)
            costs.append(probes.BACKLOG * new + probes.HOLD * max(0.0, d - y - state))
            state = new
        elif probe == "battery":
            vs.append(state)
            surplus = d - y
            charge = min(probes.EFF * max(surplus, 0.0), probes.CAPACITY - state)
            draw = min(max(-surplus, 0.0), state)
            curtailed = max(surplus, 0.0) - charge / probes.EFF
            short = max(-surplus, 0.0) - draw
            costs.append(probes.CURTAIL * curtailed + probes.SHORT * short
                         + probes.CYCLE * (charge + draw))
            state = state + charge - draw
        else:  # escalation; state = consecutive under-provisioned hours
            vs.append(float(min(state, probes.ESC_V_CAP)))
            if d < y:
                costs.append(probes.ESC_BETA * min(2.0 ** state, probes.ESC_CAP))
                state += 1
            else:
                costs.append(d - y)
                state = 0
    return np.array(costs), np.array(vs)


@pytest.mark.parametrize("probe", probes.STATEFUL)
def test_stateful_probe_equals_python_loop(probe):
    rng = np.random.default_rng(0)
    loads = rng.uniform(0.2, 0.8, 200)
    # Runs of under- and over-provisioning, so states build up and drain.
    decisions = loads + 0.1 * np.sign(np.sin(np.arange(200) / 4.0)) + rng.normal(0, 0.02, 200)
    metric = probes.make_metric(probe)
    costs, v, _ = scan_metric(metric, metric.init(), jnp.asarray(decisions[:, None], jnp.float32),
                              jnp.asarray(loads[:, None], jnp.float32))
    ref_costs, ref_v = _reference(probe, decisions, loads)
    np.testing.assert_allclose(np.asarray(costs), ref_costs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(v)[:, 0], ref_v, rtol=1e-4, atol=1e-5)
    assert np.asarray(v).max() > 0  # the state was exercised


def test_backlog_is_served_later():
    metric = probes.make_metric("backlog")
    # Short by 0.1 in hour 0, then 0.1 spare in hour 1: the queue fills and drains.
    costs, v, b = scan_metric(metric, metric.init(), jnp.array([[0.4], [0.6], [0.5]]),
                              jnp.array([[0.5], [0.5], [0.5]]))
    np.testing.assert_allclose(np.asarray(v)[:, 0], [0.0, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(costs), [probes.BACKLOG * 0.1, 0.0, 0.0], atol=1e-6)
    assert float(b) == 0.0


def test_memoryless_probes_are_asymmetric():
    over, under = jnp.array([0.6]), jnp.array([0.4])
    y = jnp.array([0.5])
    for probe in probes.MEMORYLESS:
        metric = probes.make_metric(probe)
        assert float(metric(under, y)) > float(metric(over, y)) > 0.0


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="probes are"):
        probes.make_metric("nope")
    with pytest.raises(ValueError, match="series are"):
        probes.hourly("nope")


@pytest.mark.parametrize("series", probes.SERIES)
def test_series_are_hourly_windows(series):
    frame = probes.hourly(series)
    assert (frame.index.to_series().diff().dropna() == np.timedelta64(1, "h")).all()
    ws = probes.load(series)
    assert ws.train.inputs.shape[2] == probes.LOOKBACK
    assert len(ws.train.targets) > 1000
