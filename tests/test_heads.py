"""Decision heads (``Config.decision_head``): the admit heads' decisions, exploration
and gradient estimators on tiny cases, and a fit that learns to reject."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2n_jax as l2n
from l2n_jax import heads, nets


def _loss_of(f):
    """A decision_loss (the batch mean of f(d) [B]) ignoring shaper/seen/eps."""
    return lambda decisions, shaper, seen, eps: jnp.mean(f(decisions))


# A separable learned loss with a jump at admission: client i costs JUMP_i when
# admitted at all, plus a quadratic in its amount.
JUMP = jnp.array([0.5, -0.3, 0.2])


def _separable(d):
    return jnp.sum(jnp.where(d != 0, JUMP + (d - 0.4) ** 2, 0.0), -1)


def _raw(u, z):
    return jnp.concatenate([u, z], -1)


def test_admit_head_decides_and_explores():
    head = heads.make_head(l2n.Config(decision_head="admit_diff", admit_floor=0.1))
    u = jnp.array([[0.3, 0.7]])
    z = jnp.array([[1.0, -1.0]])
    np.testing.assert_allclose(head.decide(_raw(u, z)), [[0.3, 0.0]], rtol=1e-6)
    # With saturated logits, the floor still explores the other outcome ~10%.
    raw = jnp.tile(_raw(u, jnp.array([[30.0, -30.0]])), (20000, 1))
    eps = jnp.full((20000, 2), 0.01)
    d = head.explore(jax.random.key(0), raw, eps)
    admitted = np.asarray(d != 0).mean(0)
    np.testing.assert_allclose(admitted, [0.9, 0.1], atol=0.01)
    np.testing.assert_allclose(np.asarray(d)[np.asarray(d[:, 0]) != 0, 0], 0.31, atol=1e-6)
    # The paper's head (Config.literal's) is the identity plus noise; Config()'s is
    # the quantile head (BUILD_NOTES §18k).
    assert heads.make_head(l2n.Config.literal()) is heads.AMOUNT
    assert heads.make_head(l2n.Config()) is heads.QUANTILE_NET


def test_annealed_floor_follows_the_noise():
    cfg = l2n.Config(decision_head="admit_diff", admit_floor=0.1, admit_floor_anneal=True,
                     noise_start=0.1)
    head = heads.make_head(cfg)
    raw = jnp.tile(_raw(jnp.array([[0.3, 0.7]]), jnp.array([[30.0, -30.0]])), (20000, 1))
    eps = jnp.zeros((20000, 2))

    def admitted(sigma):
        return np.asarray(head.explore(jax.random.key(0), raw, eps, sigma) != 0).mean(0)

    np.testing.assert_allclose(admitted(0.1), [0.9, 0.1], atol=0.01)  # at noise_start
    np.testing.assert_allclose(admitted(0.02), [0.98, 0.02], atol=0.005)  # a fifth
    np.testing.assert_allclose(admitted(None), [0.9, 0.1], atol=0.01)  # no schedule
    with pytest.raises(ValueError, match="admit_floor_anneal"):
        l2n.Config(admit_floor_anneal=1)


def test_admit_diff_gradient_is_the_exact_expected_loss_gradient():
    # For a separable loss, E_g[l] = sum_i pi_i f_i(u_i) + (1 - pi_i) f_i(0), so
    # dE/dz_i = (f_i(u_i) - f_i(0)) sigma'(z_i) / B whatever g was drawn.
    head = heads.make_head(l2n.Config(decision_head="admit_diff", admit_floor=0.0))
    u = jnp.array([[0.2, 0.5, 0.9], [0.6, 0.1, 0.4]])
    z = jnp.array([[0.3, -0.7, 1.2], [-0.2, 0.5, 0.0]])
    eps = jnp.zeros_like(u)
    grad = jax.grad(lambda r: head.loss(_loss_of(_separable), jax.random.key(3), r, eps,
                                        None, jnp.zeros((2, 1))))(_raw(u, z))
    s = jax.nn.sigmoid(z)
    expected = (JUMP + (u - 0.4) ** 2) * s * (1 - s) / u.shape[0]
    np.testing.assert_allclose(grad[:, 3:], expected, rtol=1e-5)
    # The amounts' gradient: the loss's slope where the client was admitted, else 0.
    g = np.asarray(head.explore(jax.random.key(3), _raw(u, z), eps) != 0)
    np.testing.assert_allclose(grad[:, :3], np.where(g, 2 * (u - 0.4) / 2, 0.0), rtol=1e-5)


def test_admission_gaps_see_the_other_decisions():
    # A loss that couples clients: the gap of admitting i depends on the rest.
    loss = _loss_of(lambda d: (jnp.sum(d, -1) - 1.0) ** 2)
    d = jnp.array([[0.5, 0.0, 0.3]])
    full = jnp.array([[0.5, 0.6, 0.3]])
    gaps = heads.admission_gaps(loss, d, full, None, jnp.zeros((1, 1)), jnp.zeros_like(d))
    total = lambda x: (sum(x) - 1.0) ** 2
    expected = [total([0.5, 0, 0.3]) - total([0, 0, 0.3]),
                total([0.5, 0.6, 0.3]) - total([0.5, 0, 0.3]),
                total([0.5, 0, 0.3]) - total([0.5, 0, 0])]
    np.testing.assert_allclose(gaps[0], expected, rtol=1e-5, atol=1e-6)


def test_straight_through_gradient_is_the_slope_times_the_amount():
    head = heads.make_head(l2n.Config(decision_head="admit_st", admit_floor=0.0))
    u = jnp.array([[0.2, 0.5, 0.9]])
    z = jnp.array([[0.3, -0.7, 1.2]])
    eps = jnp.full_like(u, 0.05)
    smooth = lambda d: jnp.sum((d - 0.4) ** 2, -1)
    grad = jax.grad(lambda r: head.loss(_loss_of(smooth), jax.random.key(1), r, eps, None,
                                        jnp.zeros((1, 1))))(_raw(u, z))
    g = np.asarray(head.explore(jax.random.key(1), _raw(u, z), eps) != 0, np.float32)
    s = jax.nn.sigmoid(z)
    slope = 2 * (g * (u + eps) - 0.4)
    np.testing.assert_allclose(grad[:, 3:], slope * (u + eps) * s * (1 - s), rtol=1e-5)
    np.testing.assert_allclose(grad[:, :3], slope * g, rtol=1e-5)


@pytest.mark.parametrize("split", [False, True])
def test_untrained_admit_predictor_decides_as_the_amount_head(split):
    shape, m = (3, 5, 1), 3
    x = jax.random.normal(jax.random.key(0), (4, *shape))
    out = {}
    for head in ("amount", "admit_st"):
        cfg = l2n.Config(ir_mlp=(8,), assembler=(16,), split_irs=split, decision_head=head)
        p = nets.make_predictor(cfg, shape, m)
        params = p.init(jax.random.key(1))
        out[head] = nets.predict(p, params, x, m)
        raw = p.raw(params, x, jnp.zeros((4, m)))[0]
        assert raw.shape == (4, heads.make_head(cfg).width(m))
    np.testing.assert_allclose(out["admit_st"], out["amount"], rtol=1e-6)


def test_admit_head_config_is_validated():
    with pytest.raises(ValueError, match="decision_head"):
        l2n.Config(decision_head="admit")
    with pytest.raises(ValueError, match="admit_floor"):
        l2n.Config(admit_floor=0.5)
    with pytest.raises(ValueError, match="tune_offset"):
        l2n.Config(decision_head="admit_diff", tune_offset=True)


def test_admission_shaper_input_marks_admitted_decisions():
    from l2n_jax import variants

    cfg = l2n.Config(shaper_input="admission")
    d, seen = jnp.array([[0.0, 0.4], [0.3, 0.0]]), jnp.ones((2, 3))
    x = variants.features(cfg)(d, seen)
    assert x.shape[-1] == variants.feature_dim(cfg, 2, 3) == 7
    np.testing.assert_array_equal(x[:, 2:4], [[0.0, 1.0], [1.0, 0.0]])
    # A fit with it: the learned-cost query takes the same decisions and obs.
    train = _admission_data(128, jax.random.key(0))
    result = l2n.fit(cfg.replace(epochs=2, pretrain_epochs=1, batch_size=64, ir_mlp=(8,),
                                 assembler=(8,), shaper_hidden=(16,), replay_size=0,
                                 decision_head="admit_diff", log_every=2),
                     train, _admission_cost, seeds=(0,), verbose=False)
    costs = result.shaper(d, jnp.ones((2, 2)))
    assert costs.shape == (1, 2) and np.all(np.isfinite(costs))
    with pytest.raises(ValueError, match="shaper_input"):
        l2n.Config(shaper_input="admission", split_shaper=True)


def _admission_data(n, key):
    """Two clients; admitting client 1 always loses money, client 0 earns."""
    demand = jax.random.uniform(key, (n, 2, 4, 1), minval=0.3, maxval=0.7)
    y = demand[:, :, -1, 0]
    return l2n.Windows(inputs=demand, targets=y, obs=y, ir_targets=y, current=y)


def _admission_cost(d, y):
    admitted = d > 0.01
    profit = jnp.where(admitted, jnp.array([1.0, 0.2]) - jnp.array([0.2, 0.6])
                       - jnp.abs(d - y), 0.0)
    return -jnp.sum(profit)


def test_admit_diff_fit_learns_to_reject_a_losing_client():
    cfg = l2n.Config(epochs=25, pretrain_epochs=3, batch_size=64, ir_mlp=(16,),
                     assembler=(32,), shaper_hidden=(64, 64), replay_size=1024,
                     decision_head="admit_diff", log_every=25)
    train = _admission_data(512, jax.random.key(0))
    valid = _admission_data(256, jax.random.key(1))
    result = l2n.fit(cfg, train, _admission_cost, seeds=(0,), valid=valid, verbose=False)
    d = np.asarray(result.predict(valid.inputs))[0]
    admitted = (d > 0.01).mean(0)
    assert admitted[0] > 0.9 and admitted[1] < 0.1
