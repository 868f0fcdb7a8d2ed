"""Learning-rate and noise schedules: exact values, under jax.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import schedules


def _values(schedule, counts):
    """The schedule at each count, each evaluated under jit with a traced count."""
    fn = jax.jit(schedule)
    return np.array([float(fn(jnp.asarray(c, jnp.int32))) for c in counts])


def test_triangular_hits_base_mid_and_peak_under_jit():
    base, peak, step = 0.1, 0.5, 10
    counts = [0, 5, 10, 15, 20, 30, 40]
    mid = (base + peak) / 2
    expected = [base, mid, peak, mid, base, peak, base]
    np.testing.assert_allclose(_values(schedules.triangular(base, peak, step), counts),
                               expected, rtol=1e-6)


def test_triangular_is_linear_between_base_and_peak():
    values = _values(schedules.triangular(0.0, 1.0, 8), range(17))
    np.testing.assert_allclose(np.diff(values[:9]), 1 / 8, rtol=1e-5)
    np.testing.assert_allclose(np.diff(values[8:]), -1 / 8, rtol=1e-5)


def test_triangular_rejects_non_positive_step_size():
    with pytest.raises(ValueError, match="step_size"):
        schedules.triangular(0.1, 1.0, 0)


def test_exponential_endpoints_and_geometric_midpoint():
    start, end, total = 0.1, 0.001, 100
    values = _values(schedules.exponential(start, end, total), [0, 50, 100, 200])
    np.testing.assert_allclose(values[0], start, rtol=1e-6)
    np.testing.assert_allclose(values[1], np.sqrt(start * end), rtol=1e-5)
    np.testing.assert_allclose(values[2], end, rtol=1e-5)
    np.testing.assert_allclose(values[3], end, rtol=1e-5)  # clamped after the end


def test_exponential_is_monotone_decreasing():
    values = _values(schedules.exponential(1.0, 0.01, 20), range(21))
    assert np.all(np.diff(values) < 0)


def _count_peaks(values, low, high):
    """Local maxima (the last value included) in the upper half of [low, high]."""
    rising_into = np.concatenate([[False], values[1:] > values[:-1]])
    not_rising_after = np.concatenate([values[1:] <= values[:-1], [True]])
    upper = values >= (low + high) / 2
    return int(np.sum(rising_into & not_rising_after & upper))


@pytest.mark.parametrize(
    "total_steps, cycles",
    [(120, 3), (100, 3), (1000, 3), (61, 2), (50, 1), (20, 3),
     # Short runs (tiny configs: a few steps per epoch) must not get extra cycles.
     (8, 3), (10, 3)],
)
def test_cyclic_learning_rate_has_exactly_lr_cycles_peaks(total_steps, cycles):
    config = l2n.Config(lr_min=1e-4, lr_max=1e-2, lr_cycles=cycles, lr_schedule="cyclic")
    fn = jax.jit(jax.vmap(schedules.learning_rate(config, total_steps)))
    values = np.asarray(fn(jnp.arange(total_steps)))
    assert _count_peaks(values, config.lr_min, config.lr_max) == cycles
    assert values[0] == pytest.approx(config.lr_min, rel=1e-5)
    assert values.min() >= config.lr_min * (1 - 1e-5)
    assert values.max() <= config.lr_max * (1 + 1e-5)


def test_fixed_and_exp_learning_rates():
    fixed = l2n.Config(lr_schedule="fixed", lr_min=1e-4, lr_max=1e-2)
    np.testing.assert_allclose(_values(schedules.learning_rate(fixed, 50), [0, 25, 49]),
                               1e-2, rtol=1e-6)
    exp = fixed.replace(lr_schedule="exp")
    values = _values(schedules.learning_rate(exp, 50), [0, 25, 50])
    np.testing.assert_allclose(values, [1e-2, 1e-3, 1e-4], rtol=1e-4)


def test_exp_noise_goes_from_noise_start_to_noise_end():
    config = l2n.Config(noise_schedule="exp", noise_start=0.2, noise_end=0.002)
    values = _values(schedules.noise_std(config, 40), [0, 20, 40])
    np.testing.assert_allclose(values, [0.2, 0.02, 0.002], rtol=1e-4)


def test_fixed_noise_is_constant_and_none_is_zero():
    fixed = l2n.Config(noise_schedule="fixed", noise_start=0.3, noise_end=0.0)
    np.testing.assert_allclose(_values(schedules.noise_std(fixed, 40), [0, 17, 40, 99]),
                               0.3, rtol=1e-6)
    none = l2n.Config(noise_schedule="none")
    np.testing.assert_array_equal(_values(schedules.noise_std(none, 40), [0, 17, 40]), 0.0)
