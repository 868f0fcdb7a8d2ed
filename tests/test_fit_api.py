"""fit / FitResult / save / load / evaluate / fit_fixed_loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax.nets import predict
from l2n_jax.train import Shapes, make_program

from conftest import asymmetric_cost, asymmetric_cost_np, tiny_config


def test_predict_has_shape_seeds_by_windows_by_decisions(fitted, windowset):
    pred = fitted.predict(windowset.test.inputs)
    chex.assert_shape(pred, (2, len(windowset.test), 1))
    chex.assert_tree_all_finite(pred)
    # Different seeds train different networks.
    assert np.abs(pred[0] - pred[1]).max() > 1e-4


def test_fit_records_seeds_method_and_best_epochs(fitted, config):
    assert fitted.seeds == (0, 1)
    assert fitted.method == "loss2net"
    assert fitted.config == config
    assert fitted.best_epoch.shape == (2,)
    assert ((fitted.best_epoch >= 0) & (fitted.best_epoch < config.cotrain_epochs)).all()


def test_shaper_gives_one_value_per_seed_and_window(fitted, windowset):
    test = windowset.test
    values = fitted.shaper(test.targets, test.obs)
    chex.assert_shape(values, (2, len(test)))
    chex.assert_tree_all_finite(values)


def test_save_load_round_trip_gives_identical_predictions(fitted, windowset, tmp_path):
    path = tmp_path / "model.msgpack"
    fitted.save(str(path))
    loaded = l2n.load(str(path))
    assert loaded.config == fitted.config
    assert loaded.seeds == fitted.seeds
    assert loaded.method == fitted.method
    assert loaded.shapes == fitted.shapes
    np.testing.assert_array_equal(loaded.best_epoch, fitted.best_epoch)
    chex.assert_trees_all_equal(loaded.params, jax.tree.map(np.asarray, fitted.params))
    inputs = windowset.test.inputs
    np.testing.assert_array_equal(loaded.predict(inputs), fitted.predict(inputs))
    test = windowset.test
    np.testing.assert_array_equal(loaded.shaper(test.targets, test.obs),
                                  fitted.shaper(test.targets, test.obs))


def test_load_rejects_files_of_another_format(tmp_path):
    import flax.serialization

    path = tmp_path / "other.msgpack"
    path.write_bytes(flax.serialization.msgpack_serialize({"version": 99}))
    with pytest.raises(ValueError, match="format"):
        l2n.load(str(path))


def test_evaluate_returns_one_row_per_seed_with_true_costs(fitted, windowset):
    test = windowset.test
    df = l2n.evaluate(fitted, test, asymmetric_cost)
    assert list(df.columns) == ["seed", "method", "cost", "rmse", "mae", "under_rate"]
    assert df["seed"].tolist() == [0, 1]
    assert (df["method"] == "loss2net").all()
    pred = fitted.predict(test.inputs)
    for s in range(2):
        err = pred[s] - test.targets
        assert df["cost"][s] == pytest.approx(asymmetric_cost_np(pred[s], test.obs).mean(),
                                              rel=1e-5)
        assert df["rmse"][s] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-5)
        assert df["mae"][s] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
        assert df["under_rate"][s] == pytest.approx(np.mean(err < 0))


def test_evaluate_scores_given_decisions_instead_of_predictions(fitted, windowset):
    test = windowset.test
    exact = np.broadcast_to(test.targets, (2, *test.targets.shape))
    df = l2n.evaluate(fitted, test, asymmetric_cost, decisions=exact)
    np.testing.assert_allclose(df["cost"], 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="decisions"):
        l2n.evaluate(fitted, test, asymmetric_cost, decisions=exact[:, :5])


def test_history_has_one_row_per_step_for_every_seed(fitted, config, train_windows):
    history = fitted.history
    steps = len(train_windows) // config.batch_size
    n_steps = config.cotrain_epochs * steps
    assert len(history) == 2 * n_steps
    assert {"seed", "epoch", "step", "cost", "shaper_loss", "predictor_loss", "lr",
            "noise_std", "valid_cost"} <= set(history.columns)
    for seed in (0, 1):
        rows = history[history["seed"] == seed]
        assert rows["step"].tolist() == list(range(n_steps))
        assert rows["epoch"].tolist() == [i // steps for i in range(n_steps)]
    assert np.isfinite(history[["cost", "shaper_loss", "predictor_loss"]].to_numpy()).all()
    # The exponential noise schedule decays over the run.
    first = history[history["step"] == 0]["noise_std"].iloc[0]
    last = history[history["step"] == n_steps - 1]["noise_std"].iloc[0]
    assert first == pytest.approx(config.noise_start, rel=1e-5)
    assert last < first


def test_fit_rejects_bad_arguments(config, windowset):
    with pytest.raises(ValueError, match="seeds"):
        l2n.fit(config, windowset.train, asymmetric_cost, seeds=())
    with pytest.raises(ValueError, match="distinct"):
        l2n.fit(config, windowset.train, asymmetric_cost, seeds=(1, 1))
    with pytest.raises(ValueError, match="metric"):
        l2n.fit(config, windowset.train, None)
    with pytest.raises(ValueError, match="Windows"):
        l2n.fit(config, tuple(windowset.train), asymmetric_cost)


def test_fixed_loss_result_has_no_shaper(config, windowset):
    result = l2n.fit_fixed_loss(config, windowset.train, l2n.losses.mae, seeds=(0,))
    assert result.method == "mae"
    assert "shaper" not in result.params
    with pytest.raises(ValueError, match="shaper"):
        result.shaper(windowset.test.targets, windowset.test.obs)
    # A baseline trains for all epochs: pre-training epochs are ordinary epochs.
    steps = len(windowset.train) // config.batch_size
    assert len(result.history) == config.epochs * steps


def test_fit_fixed_loss_with_mse_reduces_training_mse(windowset):
    config = tiny_config(epochs=15, lr_schedule="fixed", lr_max=3e-3)
    train = windowset.train
    result = l2n.fit_fixed_loss(config, train, l2n.losses.mse, seeds=(0, 1))
    shapes = Shapes.of(train)
    program = make_program(config, shapes, loss=l2n.losses.mse)
    for i, seed in enumerate((0, 1)):
        untrained = program.init(jax.random.key(seed)).params["predictor"]
        before = predict(program.predictor, untrained, jnp.asarray(train.inputs), 1)
        mse_before = float(np.mean((np.asarray(before) - train.targets) ** 2))
        after = result.predict(train.inputs)[i]
        mse_after = float(np.mean((after - train.targets) ** 2))
        assert mse_after < 0.8 * mse_before, (mse_before, mse_after)
    losses = result.history.groupby("epoch")["loss"].mean().to_numpy()
    assert losses[-1] < losses[0]
