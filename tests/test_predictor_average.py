"""``Config.predictor_average``: a moving average of the predictor's parameters over
co-training steps, judged on validation and delivered, while the live predictor
trains on as without it (issue 18); off by default, the paper's step."""

import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from conftest import asymmetric_cost, tiny_config
from l2n_jax import variants


def test_the_average_starts_at_the_first_step_then_mixes_by_the_decay():
    average = variants.moving_average(0.9)
    old = {"predictor": {"w": jnp.zeros(3)}, variants.AVERAGE: {"w": jnp.full(3, 7.0)}}
    new = {"predictor": {"w": jnp.ones(3)}, "shaper": {"s": jnp.ones(2)}}
    first = average(new, old, jnp.array(0))
    np.testing.assert_array_equal(first[variants.AVERAGE]["w"], np.ones(3))  # not 7
    later = average(new, old, jnp.array(5))
    np.testing.assert_allclose(later[variants.AVERAGE]["w"], 0.9 * 7.0 + 0.1, rtol=1e-6)
    assert later["predictor"] is new["predictor"] and later["shaper"] is new["shaper"]
    assert variants.no_average(new, old, 5) is new


def test_delivered_puts_the_average_in_the_predictors_place():
    params = {"predictor": 1, "shaper": 2, variants.AVERAGE: 3}
    assert variants.delivered(params) == {"predictor": 3, "shaper": 2}
    plain = {"predictor": 1, "shaper": 2}
    assert variants.delivered(plain) is plain


@pytest.fixture(scope="module")
def fits(windowset):
    out = {}
    for name, changes in (("paper", {}), ("average", {"predictor_average": 0.9})):
        config = tiny_config(epochs=8, **changes)
        out[name] = l2n.fit(config, windowset.train, asymmetric_cost, seeds=(0, 1),
                            valid=windowset.valid, verbose=False)
    return out


def test_training_is_unchanged_and_the_result_is_the_average(fits, windowset):
    paper, average = fits["paper"], fits["average"]
    # The average does not feed back: the live predictor's training costs are the
    # same step by step, bit for bit ...
    np.testing.assert_array_equal(average.history["cost"].to_numpy(),
                                  paper.history["cost"].to_numpy())
    # ... while what validation judged and the result predicts is another predictor.
    assert not np.allclose(average.history["valid_cost"], paper.history["valid_cost"])
    assert set(average.params) == set(paper.params)  # the average is not a third net
    got = average.predict(windowset.test.inputs)
    assert np.all(np.isfinite(got))
    assert not np.allclose(got, paper.predict(windowset.test.inputs))


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_a_decay_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="predictor_average"):
        l2n.Config(predictor_average=value)
