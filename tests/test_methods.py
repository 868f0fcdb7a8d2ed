"""The methods registry: registration, combinators, the fit cache, and a user's own
method run by l2n_train from a plugin module."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import l2n_jax as l2n
from l2n_jax import combinators, losses, methods

from conftest import asymmetric_cost, make_series, tiny_config

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ws():
    return l2n.make_windows(make_series(400), ["load"], lookback=8)


@pytest.fixture
def scratch_registry():
    """Registrations made by a test are forgotten after it."""
    saved = dict(methods.REGISTRY)
    yield
    methods.REGISTRY.clear()
    methods.REGISTRY.update(saved)


def _task(ws, **kw):
    return methods.Task(tiny_config(), {"s": ws}, asymmetric_cost, (0, 1), **kw)


def test_every_generic_method_is_registered():
    assert {"loss2net", "mse", "msle", "mae", "alpha_omc", "mse_margin", "pinball_tuned",
            "persistence", "persistence_margin", "ar", "ar_margin",
            "bm_split"} <= set(methods.names())


def test_register_as_a_call_and_as_a_decorator(scratch_registry, ws):
    methods.register("persistence_again", methods.forecaster(lambda w: l2n.baselines.persistence))

    @methods.register("doubled", doc="twice persistence")
    def doubled(task):
        inner = methods.get("persistence").fn(task)
        return {s: o._replace(decide=lambda split, o=o: 2 * o.decide(split))
                for s, o in inner.items()}

    assert methods.REGISTRY["doubled"].doc == "twice persistence"
    a = methods.run("persistence_again", _task(ws)).rows
    b = methods.run("persistence", _task(ws)).rows
    np.testing.assert_array_equal(a["cost"], b["cost"])
    d = methods.run("doubled", _task(ws)).rows
    assert (d["rmse"] > b["rmse"]).all()


def test_registering_a_name_twice_or_a_non_callable_is_refused(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        methods.register("mse", methods.trained(losses.mae))
    methods.register("mse", methods.trained(losses.mae), replace=True)
    with pytest.raises(ValueError, match="must be callable"):
        methods.register("broken", 3)


def test_tuned_keeps_the_value_of_lowest_validation_cost(ws):
    # Margins added to persistence: the tuned value must be the validation argmin.
    def shifted(margin):
        base = methods.forecaster(lambda w: l2n.baselines.persistence)
        return lambda task: {s: o._replace(decide=lambda split, o=o: o.decide(split) + margin)
                             for s, o in base(task).items()}

    grid = (0.0, 0.1, 0.3)
    (outcome,) = methods.tuned(grid, shifted, "margin")(_task(ws)).values()
    valid = {m: l2n.score(shifted(m)(_task(ws))["s"].decide("valid"), ws.valid,
                          asymmetric_cost, (0, 1), "")["cost"].mean() for m in grid}
    assert outcome.knob[0] == min(valid, key=valid.get)
    assert len(set(valid.values())) == 3


def test_with_margin_adds_its_knob_to_every_decision(ws):
    (o,) = methods.with_margin(methods.forecaster(lambda w: l2n.baselines.persistence))(
        _task(ws)).values()
    base = np.asarray(ws.test.current)[None]
    np.testing.assert_allclose(o.decide("test") - base, np.broadcast_to(
        o.knob[:, None, None], o.decide("test").shape), atol=1e-6)
    np.testing.assert_array_equal(o.forecast("test"), np.broadcast_to(base, (2, *base.shape[1:])))


def test_the_fit_cache_trains_a_shared_loss_once(ws, monkeypatch):
    calls = []
    real = combinators.fit_fixed_loss
    monkeypatch.setattr(combinators, "fit_fixed_loss",
                        lambda *a, **k: calls.append(a[2].__name__) or real(*a, **k))
    task = _task(ws, cache=methods.FitCache())
    plain = methods.run("mse", task)
    margin = methods.run("mse_margin", task)
    assert calls == ["mse"] and len(task.cache) == 1
    np.testing.assert_array_equal(plain.rows["forecast_rmse"], margin.rows["forecast_rmse"])
    assert plain.fits["s"] is margin.fits["s"]
    methods.run("mse", _task(ws))  # no cache: trained again
    assert calls == ["mse", "mse"]


def test_alpha_omc_without_alpha_is_a_clear_error(ws):
    with pytest.raises(ValueError, match="alpha_omc needs Options.alpha"):
        methods.run("alpha_omc", _task(ws))


def _l2n_train(args, cwd):
    script = shutil.which("l2n_train") or os.path.join(os.path.dirname(sys.executable),
                                                       "l2n_train")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([script, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_plugin_method_runs_from_l2n_train_with_rows_in_results_csv(tmp_path):
    shutil.copy(ROOT / "examples" / "my_methods.py", tmp_path / "my_methods.py")
    proc = _l2n_train(["--usecase=netalloc", "--quick", "--sites=eu", "--seeds=2",
                       "--plugins=my_methods", "--method=huber_margin,window_max,mse",
                       "--workdir=out"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(set(df["method"])) == ["huber_margin", "mse", "window_max"]
    assert len(df) == 6 and np.isfinite(df["test_cost"]).all()
    assert df.loc[df.method == "huber_margin", "knob"].notna().all()
    assert "huber_margin" in (tmp_path / "out" / "results.md").read_text()


def test_an_unknown_method_or_a_broken_plugin_is_a_usage_error(tmp_path):
    proc = _l2n_train(["--usecase=netalloc", "--quick", "--method=huber_margin"], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "unknown --method ['huber_margin']" in proc.stderr
    (tmp_path / "bad_plugin.py").write_text("raise RuntimeError('oops')\n")
    proc = _l2n_train(["--usecase=netalloc", "--plugins=bad_plugin"], tmp_path)
    assert proc.returncode == 1 and "cannot import 'bad_plugin'" in proc.stderr


def test_help_exits_0_and_names_the_defaults_per_use_case(tmp_path):
    proc = _l2n_train(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = re.sub(r"\s+", " ", proc.stdout + proc.stderr)
    for piece in ("netalloc: 60", "power: 18", "acra: S4", "--plugins", "knapsack"):
        assert piece in text, piece


def test_pinball_tuned_trains_its_grid_in_one_program_then_zooms(ws, monkeypatch):
    calls = []
    real = combinators.fit_fixed_loss_sites
    monkeypatch.setattr(combinators, "fit_fixed_loss_sites",
                        lambda *a, **k: calls.append(sorted(k["hyper"].values()))
                        or real(*a, **k))
    task = _task(ws, options=methods.Options(taus=(0.5, 0.8, 0.95)))
    row = methods.run("pinball_tuned", task).rows
    coarse, zoomed = calls  # two programs: the grid, then the grid around its best
    assert coarse == [0.5, 0.8, 0.95] and len(zoomed) == 3
    tau = row["knob"].iloc[0]
    assert tau in coarse + zoomed and (row["knob"] == tau).all()


def test_zoom_logit_refines_inside_and_extends_past_the_edge():
    grid = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
    inside = combinators.zoom_logit(0.9, grid)
    assert len(inside) == 7 and 0.8 < min(inside) and max(inside) < 0.95
    top = combinators.zoom_logit(0.99, grid)
    assert max(top) > 0.99 and min(top) > 0.98  # past the grid's top


def test_pinball_tuned_shares_a_checkpoint_dir_across_metrics(ws, tmp_path):
    """The zoomed grid depends on the metric; a study that shares one checkpoint
    directory across metrics (the netalloc study's betas) must train the second
    metric's grid, not fail on (or restore) the first one's checkpoint."""
    opts = methods.Options(taus=(0.5, 0.8, 0.95))
    under = methods.Task(tiny_config(), {"s": ws}, lambda p, y: jnp.sum(
        9 * jnp.maximum(y - p, 0) + jnp.maximum(p - y, 0)), (0, 1), options=opts,
        checkpoint_dir=str(tmp_path))
    over = under._replace(metric=lambda p, y: jnp.sum(
        jnp.maximum(y - p, 0) + 9 * jnp.maximum(p - y, 0)))
    high = methods.run("pinball_tuned", under).rows["knob"].iloc[0]
    low = methods.run("pinball_tuned", over).rows["knob"].iloc[0]
    assert low < high
    assert len(list(tmp_path.glob("pinball_at_tau1_*.ckpt"))) == 2
