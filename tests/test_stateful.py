"""Stateful (time-correlated) metrics in the engine: the scan equals a Python loop,
the state and ``v`` carry across batch boundaries and reset per epoch, sites batched
in one program equal per-site runs, and the stateless path is unchanged."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax.fit import fit_sites
from l2n_jax.metrics import batch_metric, check_metric, scan_metric, v_dim
from l2n_jax.train import Shapes

from conftest import asymmetric_cost, make_series, tiny_config

BETA, GAMMA, CAP = 0.5, 1.0, 3


def outage_metric(beta=BETA, gamma=GAMMA, cap=CAP):
    """Recursive outage cost; v = consecutive outages before the step, capped."""

    def init():
        return {"cost": jnp.zeros(()), "run": jnp.zeros((), jnp.int32)}

    def outage(state, decision, obs):
        x = decision[0] - obs[0]
        carried = jnp.where(state["run"] > 0, state["cost"], 0.0)
        cost = jnp.where(x < 0, beta + carried, gamma * x)
        v = jnp.minimum(state["run"], cap)[None]
        run = jnp.where(x < 0, state["run"] + 1, 0)
        return cost, v, {"cost": cost, "run": run}

    return l2n.StatefulMetric(init, outage)


def reference(decisions, obs, state=(0.0, 0), beta=BETA, gamma=GAMMA, cap=CAP):
    """The same metric as a plain Python loop: (costs, v, (cost, run))."""
    prev, run = state
    costs, vs = [], []
    for d, y in zip(np.asarray(decisions)[:, 0], np.asarray(obs)[:, 0]):
        vs.append(min(run, cap))
        if d < y:
            prev, run = beta + (prev if run > 0 else 0.0), run + 1
        else:
            prev, run = gamma * (d - y), 0
        costs.append(prev)
    return np.array(costs), np.array(vs), (prev, run)


def _sequence(n=23, seed=0):
    """Decisions and loads with outage runs longer than the cap."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(0, 1, (n, 1)).astype(np.float32)
    under = np.array([1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0] + [1] * 7 + [0] * (n - 18))[:n]
    gap = rng.uniform(0.01, 0.2, (n, 1)).astype(np.float32)
    decisions = np.where(under[:, None] == 1, obs - gap, obs + gap).astype(np.float32)
    return decisions, obs


def test_scan_over_a_sequence_equals_the_python_loop():
    decisions, obs = _sequence()
    metric = outage_metric()
    costs, v, state = jax.jit(lambda d, o: scan_metric(metric, metric.init(), d, o))(
        decisions, obs
    )
    want_costs, want_v, (want_cost, want_run) = reference(decisions, obs)
    np.testing.assert_allclose(costs, want_costs, rtol=1e-6)
    np.testing.assert_array_equal(v[:, 0], want_v)
    assert int(state["run"]) == want_run and float(state["cost"]) == pytest.approx(want_cost)
    # The 7-long run costs beta, 2 beta, ..., 7 beta; v stops at the cap.
    np.testing.assert_allclose(want_costs[11:18], BETA * np.arange(1, 8))
    assert want_v.max() == CAP
    # batch_metric (how splits are scored) is the same scan from init().
    np.testing.assert_allclose(jax.jit(batch_metric(metric))(decisions, obs), want_costs,
                               rtol=1e-6)


def test_state_carried_across_segments_equals_one_scan():
    decisions, obs = _sequence()
    metric = outage_metric()
    whole, whole_v, _ = scan_metric(metric, metric.init(), decisions, obs)
    c1, v1, state = scan_metric(metric, metric.init(), decisions[:8], obs[:8])
    c2, v2, _ = scan_metric(metric, state, decisions[8:], obs[8:])
    np.testing.assert_array_equal(np.concatenate([c1, c2]), whole)
    np.testing.assert_array_equal(np.concatenate([v1, v2]), whole_v)
    # Restarting at the boundary instead forgets the running outage.
    restarted, _, _ = scan_metric(metric, metric.init(), decisions[12:], obs[12:])
    assert float(restarted[0]) == BETA and float(whole[12]) > BETA


def test_check_metric_names_a_stateful_metric_with_a_bad_state():
    def bad_step(state, decision, obs):
        return jnp.sum(decision), jnp.zeros(1), {"run": jnp.zeros(2)}

    bad = l2n.StatefulMetric(lambda: {"run": jnp.zeros(())}, bad_step)
    with pytest.raises(ValueError, match="bad_step.*new state shaped like"):
        check_metric(bad, np.zeros((8, 1)), np.zeros((8, 1)))
    scalar_v = l2n.StatefulMetric(
        lambda: jnp.zeros(()), lambda s, d, o: (jnp.sum(d), s, s)
    )
    with pytest.raises(ValueError, match="1-D vector"):
        check_metric(scalar_v, np.zeros((8, 1)), np.zeros((8, 1)))
    assert v_dim(outage_metric(), np.zeros((8, 1)), np.zeros((8, 1))) == 1


@pytest.fixture(scope="module")
def windows():
    return l2n.make_windows(make_series(300), ["load"], lookback=8)


def _stateful_program(windows, segments=2, **changes):
    config = tiny_config(batch_size=8, noise_schedule="none", **changes)
    shapes = Shapes.of(windows.train)._replace(v_dim=1)
    return config, l2n.make_program(config, shapes, metric=outage_metric(),
                                    segments=segments)


def test_train_step_costs_equal_the_python_loop_across_two_steps(windows):
    """Two consecutive steps on consecutive segments: costs and v from the
    predictor's own decisions, with the outage state carried between steps."""
    config, program = _stateful_program(windows, pretrain_epochs=0)
    train = jax.tree.map(jnp.asarray, windows.train)
    state = program.init(jax.random.key(0))
    step = jax.jit(program.step(train))
    ref_state = [(0.0, 0), (0.0, 0)]
    for i in range(2):
        # Segment i of stretches starting at 0 and 40 (segments of 4 windows).
        idx = np.array([[40 * s + 4 * i + t for t in range(4)] for s in range(2)])
        # A batch holds the segments one after another.
        batch = flat = train.take(idx.reshape(-1))
        d = np.asarray(l2n.nets.predict(program.predictor, state.params["predictor"],
                                         flat.inputs, 1)).reshape(2, 4, 1)
        o = np.asarray(flat.obs).reshape(2, 4, 1)
        want = []
        for s in range(2):
            costs, _, ref_state[s] = reference(d[s], o[s], ref_state[s])
            want.append(costs)
        state, metrics = step(jax.random.key(i), state, batch)
        assert float(metrics["cost"]) == pytest.approx(np.mean(want), rel=1e-5)
        np.testing.assert_array_equal(state.metric_state["run"], [r for _, r in ref_state])
        np.testing.assert_allclose(state.metric_state["cost"], [c for c, _ in ref_state],
                                   rtol=1e-5)


def _always_under(ws):
    """Observations far above any decision: every step is an outage."""
    return l2n.Windows(ws.inputs, ws.targets, np.asarray(ws.obs) + 10.0, ws.ir_targets,
                       ws.current)


def test_v_counts_across_batch_boundaries_and_resets_each_epoch(windows):
    config, program = _stateful_program(windows, epochs=3, pretrain_epochs=1)
    train = jax.tree.map(jnp.asarray, _always_under(windows.train))
    key = jax.random.key(0)
    state = program.pretrain(key, program.init(key), train)
    state, history = jax.jit(program.epochs, static_argnums=5)(
        key, state, train, None, 0, 2
    )
    v_mean = np.asarray(history["v_mean"])  # [epochs, steps]
    # 4-step segments: v = 0,1,2,3 then 3,3,3,3 (cap 3): the count goes on over
    # the batch boundary, and starts again at every epoch.
    np.testing.assert_allclose(v_mean[:, 0], [1.5, 1.5])
    np.testing.assert_allclose(v_mean[:, 1:], 3.0)
    steps = program.steps_per_epoch
    np.testing.assert_array_equal(state.metric_state["run"], [4 * steps] * 2)
    # The k-th outage costs k * beta: the mean over an epoch's steps follows.
    costs = np.asarray(history["cost"])
    np.testing.assert_allclose(costs[:, 0], BETA * 2.5, rtol=1e-6)
    np.testing.assert_allclose(costs[:, 1], BETA * 6.5, rtol=1e-6)


def test_segments_must_divide_the_batch(windows):
    with pytest.raises(ValueError, match="multiple of segments"):
        _stateful_program(windows, segments=3)


def test_stateful_fit_runs_and_scores_in_order(windows, tmp_path):
    config = tiny_config(batch_size=16, replay_size=64)
    result = l2n.fit(config, windows.train, outage_metric(), seeds=(0, 1),
                     valid=windows.valid, segments=4)
    assert result.shapes.v_dim == 1
    chex.assert_tree_all_finite(result.params)
    assert {"v_mean", "valid_cost"} <= set(result.history.columns)
    scores = l2n.evaluate(result, windows.test, outage_metric())
    d = result.predict(windows.test.inputs)
    for s in range(2):
        want, _, _ = reference(d[s], windows.test.obs)
        assert scores["cost"][s] == pytest.approx(want.mean(), rel=1e-5)
    n = len(windows.test)
    learned = result.shaper(d[0], windows.test.obs, np.zeros((n, 1)))
    assert learned.shape == (2, n) and np.isfinite(learned).all()
    with pytest.raises(ValueError, match="takes v"):
        result.shaper(d[0], windows.test.obs)
    result.save(str(tmp_path / "power.msgpack"))
    loaded = l2n.load(str(tmp_path / "power.msgpack"))
    assert loaded.shapes.v_dim == 1
    np.testing.assert_array_equal(
        loaded.shaper(d[0], windows.test.obs, np.zeros((n, 1))), learned
    )


def test_sites_in_one_program_equal_per_site_runs():
    config = tiny_config(batch_size=16)
    sets = {f"s{i}": l2n.make_windows(make_series(240, seed=i), ["load"], lookback=8)
            for i in range(2)}
    batched = fit_sites(config, {s: w.train for s, w in sets.items()}, outage_metric(),
                        seeds=(0, 1), valids={s: w.valid for s, w in sets.items()},
                        segments=2)
    for site, ws in sets.items():
        alone = l2n.fit(config, ws.train, outage_metric(), seeds=(0, 1),
                        valid=ws.valid, segments=2)
        chex.assert_trees_all_close(batched[site].params, alone.params, rtol=1e-4,
                                    atol=1e-5)
        np.testing.assert_array_equal(batched[site].best_epoch, alone.best_epoch)
        np.testing.assert_allclose(batched[site].history["cost"], alone.history["cost"],
                                   rtol=1e-4)
    # The sites really are different runs.
    assert not np.allclose(batched["s0"].history["cost"], batched["s1"].history["cost"])


def test_sites_of_different_lengths_are_refused():
    short = l2n.make_windows(make_series(200), ["load"], lookback=8)
    long = l2n.make_windows(make_series(240), ["load"], lookback=8)
    with pytest.raises(ValueError, match="common length"):
        fit_sites(tiny_config(batch_size=16), {"a": short.train, "b": long.train},
                  outage_metric(), segments=2)


def test_stateless_fits_are_unchanged(windowset):
    """Test costs of a tiny stateless Loss2Net and MSE fit, recorded at the commit
    before stateful metrics (c609c02) under this suite's XLA flags: the engine's
    stateless path computes exactly what it did (bitwise on the recording machine).
    Recorded without replay, the default then (BUILD_NOTES §18 made it 16,384)."""
    config = tiny_config(replay_size=0)
    fit = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0, 1),
                  valid=windowset.valid)
    fixed = l2n.fit_fixed_loss(config, windowset.train, l2n.losses.mse, seeds=(0, 1),
                               valid=windowset.valid)
    assert fit.params.get("shaper") is not None
    np.testing.assert_allclose(
        l2n.evaluate(fit, windowset.test, asymmetric_cost)["cost"],
        [0.3616293668746948, 0.36556532979011536], rtol=1e-6,
    )
    np.testing.assert_allclose(
        l2n.evaluate(fixed, windowset.test, asymmetric_cost)["cost"],
        [0.3175906240940094, 0.28406307101249695], rtol=1e-6,
    )
