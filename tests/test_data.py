"""make_windows: shapes, chronological split, train-only scaling, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import l2n_jax as l2n


def _frame(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": np.arange(n, dtype=float) + rng.uniform(0, 0.5, n),
        "b": rng.normal(size=n),
        "c": np.sin(np.arange(n) / 5.0),
    })


def test_windows_have_the_documented_shapes():
    ws = l2n.make_windows(_frame(), ["a", "c"], lookback=5)
    n_windows = 100 - 5
    assert len(ws.train) + len(ws.valid) + len(ws.test) == n_windows
    for w in (ws.train, ws.valid, ws.test):
        n = len(w)
        assert w.inputs.shape == (n, 3, 5, 1)
        assert w.targets.shape == (n, 2)
        assert w.obs.shape == (n, 2)
        assert w.ir_targets.shape == (n, 3)
        assert w.current.shape == (n, 2)
        assert all(np.asarray(x).dtype == np.float32 for x in w)
    assert ws.target_columns == ("a", "c")
    assert ws.input_columns == ("a", "b", "c")


@pytest.mark.parametrize("split", [(0.7, 0.1, 0.2), (0.5, 0.25, 0.25), (0.8, 0.1, 0.1)])
def test_split_is_chronological_with_the_requested_fractions(split):
    frame = _frame(200)
    ws = l2n.make_windows(frame, ["a"], lookback=4, split=split)
    n_windows = 200 - 4
    assert len(ws.train) == int(split[0] * n_windows)
    assert len(ws.valid) == int(split[1] * n_windows)
    assert len(ws.test) == n_windows - len(ws.train) - len(ws.valid)
    # Column 'a' increases with time: every split's targets follow the previous one's.
    targets = [ws.scaler.inverse(w.targets, ["a"])[:, 0] for w in (ws.train, ws.valid, ws.test)]
    joined = np.concatenate(targets)
    np.testing.assert_allclose(joined, frame["a"].to_numpy()[4:], rtol=1e-5)
    assert targets[0].max() < targets[1].min() and targets[1].max() < targets[2].min()


def test_window_contents_are_the_scaled_rows_before_the_target():
    frame = _frame(60)
    lookback = 6
    ws = l2n.make_windows(frame, ["b"], lookback=lookback, input_columns=["a", "b"])
    raw = frame.to_numpy()
    for i in (0, 7, len(ws.train) - 1):
        window = ws.scaler.inverse(ws.train.inputs[i, :, :, 0].T, ["a", "b"])  # [L, 2]
        np.testing.assert_allclose(window, raw[i:i + lookback, :2], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ws.scaler.inverse(ws.train.targets[i], ["b"]),
                                   raw[i + lookback, 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ws.scaler.inverse(ws.train.current[i], ["b"]),
                                   raw[i + lookback - 1, 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ws.scaler.inverse(ws.train.ir_targets[i], ["a", "b"]),
                                   raw[i + lookback, :2], rtol=1e-5, atol=1e-5)


def test_scaler_is_fitted_on_training_rows_only():
    frame = _frame()
    clean = l2n.make_windows(frame, ["a"], lookback=5)
    spiked_frame = frame.copy()
    spiked_frame.iloc[-3, :] = 1e9  # deep in the test period
    spiked = l2n.make_windows(spiked_frame, ["a"], lookback=5)
    np.testing.assert_array_equal(spiked.scaler.high, clean.scaler.high)
    np.testing.assert_array_equal(spiked.scaler.low, clean.scaler.low)
    # Training windows span [0, 1]; the spike shows up, unscaled away, in test only.
    np.testing.assert_allclose(clean.train.inputs.min(axis=(0, 2, 3)), 0.0, atol=1e-6)
    assert spiked.test.targets.max() > 1e6
    np.testing.assert_array_equal(spiked.train.inputs, clean.train.inputs)


def test_scaler_low_and_high_are_the_training_rows_extremes():
    frame = _frame()
    ws = l2n.make_windows(frame, ["a"], lookback=5)
    fit_rows = frame.to_numpy()[: len(ws.train) + 5]
    np.testing.assert_allclose(ws.scaler.low, fit_rows.min(axis=0))
    np.testing.assert_allclose(ws.scaler.high, fit_rows.max(axis=0))


def test_scaler_inverse_undoes_transform():
    ws = l2n.make_windows(_frame(), ["a"], lookback=5)
    x = np.random.default_rng(1).normal(size=(10, 3)) * 50
    np.testing.assert_allclose(ws.scaler.inverse(ws.scaler.transform(x)), x, rtol=1e-10)
    sub = x[:, [2, 0]]
    np.testing.assert_allclose(
        ws.scaler.inverse(ws.scaler.transform(sub, ["c", "a"]), ["c", "a"]), sub, rtol=1e-10)
    # A scaled difference maps back to a difference in original units.
    d = ws.scaler.transform(x[:1]) - ws.scaler.transform(x[1:2])
    np.testing.assert_allclose(ws.scaler.inverse_diff(d), x[:1] - x[1:2], rtol=1e-8)


def test_obs_fn_gets_the_scaled_next_row_and_sets_obs():
    seen = {}

    def obs_fn(nxt):
        seen["shape"] = nxt.shape
        return np.stack([nxt[:, 0], nxt[:, 1], nxt[:, 0] + nxt[:, 2]], axis=1)

    ws = l2n.make_windows(_frame(), ["a"], lookback=5, obs_fn=obs_fn)
    assert seen["shape"] == (95, 3)
    assert ws.train.obs.shape == (len(ws.train), 3)
    assert ws.test.obs.shape == (len(ws.test), 3)
    np.testing.assert_allclose(ws.train.obs[:, 0], ws.train.targets[:, 0], rtol=1e-6)
    np.testing.assert_allclose(ws.train.obs[:, 2],
                               ws.train.ir_targets[:, 0] + ws.train.ir_targets[:, 2],
                               rtol=1e-5)


def test_obs_fn_returning_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="obs_fn"):
        l2n.make_windows(_frame(), ["a"], lookback=5, obs_fn=lambda nxt: nxt[:, 0])


def test_missing_column_is_named_in_the_error():
    with pytest.raises(ValueError, match="'load'"):
        l2n.make_windows(_frame(), ["load"], lookback=5)
    with pytest.raises(ValueError, match="'zz'"):
        l2n.make_windows(_frame(), ["a"], lookback=5, input_columns=["a", "zz"])


def test_constant_training_column_is_named_in_the_error():
    frame = _frame()
    frame["flat"] = 3.0
    with pytest.raises(ValueError, match="flat"):
        l2n.make_windows(frame, ["a"], lookback=5)


def test_too_few_rows_are_rejected():
    with pytest.raises(ValueError, match="too few"):
        l2n.make_windows(_frame(12), ["a"], lookback=8)


@pytest.mark.parametrize("split", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_split_is_rejected(split):
    with pytest.raises(ValueError, match="split"):
        l2n.make_windows(_frame(), ["a"], lookback=5, split=split)


def test_non_positive_lookback_is_rejected():
    with pytest.raises(ValueError, match="lookback"):
        l2n.make_windows(_frame(), ["a"], lookback=0)


def test_windows_take_selects_rows_of_every_field():
    ws = l2n.make_windows(_frame(), ["a"], lookback=5)
    sub = ws.train.take(np.array([3, 1]))
    assert len(sub) == 2
    for full, part in zip(ws.train, sub):
        np.testing.assert_array_equal(part, np.asarray(full)[[3, 1]])


def _hourly(n=200, seed=0):
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=n, freq="h")
    return pd.DataFrame({"load": 10 + rng.normal(size=n), "temp": rng.normal(size=n)},
                        index=index)


def test_nan_values_are_named_with_column_rows_and_fix():
    frame = _hourly()
    frame.iloc[[7, 9], 0] = np.nan
    with pytest.raises(ValueError, match=r"'load' has NaN values at rows .*07:00.*fill="):
        l2n.make_windows(frame, ["load"], lookback=4)


def test_infinite_values_are_named_with_column_and_rows():
    frame = _hourly()
    frame.iloc[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"'temp' has infinite values at rows .*03:00"):
        l2n.make_windows(frame, ["load"], lookback=4)


def test_duplicated_timestamps_are_named_with_the_fix():
    frame = _hourly()
    frame = pd.concat([frame.iloc[:50], frame.iloc[49:]])
    with pytest.raises(ValueError, match=r"duplicated timestamps at .*01:00.*groupby"):
        l2n.make_windows(frame, ["load"], lookback=4)


def test_unsorted_rows_are_rejected_with_the_fix():
    frame = _hourly().iloc[::-1]
    with pytest.raises(ValueError, match=r"not in time order.*sort_index"):
        l2n.make_windows(frame, ["load"], lookback=4)


def test_missing_timestamps_are_named_and_fill_repairs_them_explicitly():
    frame = _hourly().drop(index=pd.Timestamp("2024-01-02 05:00"))
    with pytest.raises(ValueError, match=r"1 missing timestamps .*2024-01-02 05:00.*fill="):
        l2n.make_windows(frame, ["load"], lookback=4)
    full = l2n.make_windows(_hourly(), ["load"], lookback=4)
    for fill in ("ffill", "interpolate"):
        repaired = l2n.make_windows(frame, ["load"], lookback=4, fill=fill)
        # The gap is filled in, so the window count is that of the complete series.
        n = sum(len(w) for w in (repaired.train, repaired.valid, repaired.test))
        assert n == sum(len(w) for w in (full.train, full.valid, full.test))


def test_interpolate_fills_a_nan_linearly_in_time():
    frame = _hourly()
    frame.iloc[10, 0] = np.nan
    expected = (frame.iloc[9, 0] + frame.iloc[11, 0]) / 2
    ws = l2n.make_windows(frame, ["load"], lookback=4, fill="interpolate")
    value = ws.scaler.inverse(ws.train.inputs[7, 0, 3, 0][None], ["load"])[0]  # row 10
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_unknown_fill_and_non_numeric_columns_are_rejected():
    with pytest.raises(ValueError, match="fill must be one of"):
        l2n.make_windows(_hourly(), ["load"], lookback=4, fill="zero")
    frame = _hourly()
    frame["name"] = "x"
    with pytest.raises(ValueError, match=r"\['name'\] are not numeric"):
        l2n.make_windows(frame, ["load"], lookback=4)


def test_peak_scaling_keeps_zero_and_maps_the_training_peak_to_one():
    frame = pd.DataFrame({"load": np.abs(np.sin(np.arange(300) / 7.0)) + 0.5})
    ws = l2n.make_windows(frame, ["load"], 8, scale="peak")
    assert ws.scaler.low[0] == 0.0
    np.testing.assert_allclose(ws.scaler.inverse(np.zeros((1, 1))), 0.0)
    assert np.isclose(np.asarray(ws.train.targets).max(), 1.0, atol=1e-2)
    with pytest.raises(ValueError, match="non-negative"):
        l2n.make_windows(frame - 1.0, ["load"], 8, scale="peak")
    with pytest.raises(ValueError, match="scale must be"):
        l2n.make_windows(frame, ["load"], 8, scale="zscore")


def test_a_metric_can_work_in_original_units_under_jit():
    frame = pd.DataFrame({"load": 1000.0 + 50.0 * np.sin(np.arange(300) / 5.0)})
    ws = l2n.make_windows(frame, ["load"], lookback=6)

    def cost_mw(decision, obs):  # the cost written in MW, decisions arrive scaled
        d = ws.scaler.inverse(decision, ["load"])[0]
        y = ws.scaler.inverse(obs, ["load"])[0]
        return jnp.where(d < y, 100.0, d - y)

    d = np.asarray(ws.test.targets) + 0.1
    got = jax.jit(jax.vmap(cost_mw))(jnp.asarray(d), jnp.asarray(ws.test.obs))
    span = ws.scaler.high[0] - ws.scaler.low[0]
    np.testing.assert_allclose(got, 0.1 * span, rtol=1e-4)
    # NumPy in, NumPy out (float64); jnp in, jnp out.
    assert isinstance(ws.scaler.inverse(np.zeros((2, 1)), ["load"]), np.ndarray)
    assert isinstance(ws.scaler.transform(jnp.zeros((2, 1)), ["load"]), jax.Array)
    with pytest.raises(ValueError, match="unknown columns"):
        ws.scaler.inverse(np.zeros((2, 1)), ["mw"])


def test_evaluate_reports_errors_in_original_units_when_asked():
    frame = pd.DataFrame({"load": 1000.0 + 50.0 * np.sin(np.arange(400) / 5.0)})
    ws = l2n.make_windows(frame, ["load"], lookback=6)
    config = l2n.Config(epochs=2, pretrain_epochs=1, batch_size=32, ir_mlp=(8,),
                        assembler=(8,), shaper_hidden=(8,), log_every=1)
    cost = lambda d, y: jnp.sum(jnp.abs(d - y))
    r = l2n.fit_fixed_loss(config, ws.train, l2n.losses.mse, verbose=False)
    scaled = l2n.evaluate(r, ws.test, cost)
    real = l2n.evaluate(r, ws.test, cost, units=ws)
    span = ws.scaler.high[0] - ws.scaler.low[0]
    np.testing.assert_allclose(real["rmse"], scaled["rmse"] * span, rtol=1e-4)
    np.testing.assert_allclose(real["cost"], scaled["cost"])
