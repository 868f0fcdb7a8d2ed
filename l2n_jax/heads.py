"""Decision heads: how the predictor's raw outputs become decisions (``Config.decision_head``).

The predictor emits ``raw [B, w]``; a ``Head`` says what the system is shown while
exploring, what is decided at evaluation, and through what the predictor's gradient
flows. Loss2Net's step (``l2n_jax.steps``) calls only these functions, so a head is a
value chosen when the program is built.

* ``amount`` (the paper's): raw = the decisions; the system sees raw + eps.
* ``admit_st`` / ``admit_diff`` (issue 19, admission control): raw = [amount u [B, m],
  admission logit z [B, m]]. Decision i is u_i if admitted, 0 (a rejection) if not. At
  evaluation client i is admitted iff z_i > 0. While exploring, admission is drawn
  g_i ~ Bernoulli(pi_i), pi_i = sigmoid(z_i) clipped to [floor, 1 - floor], so the
  shaper keeps seeing both outcomes of every client; the system sees g * (u + eps).
  The two differ only in the logit's gradient:

  - ``admit_st``: straight-through (Bengio et al. 2013): the hard g in the forward
    pass, d sigmoid(z) in the backward pass, so dL/dz_i = dL/dd_i (u_i + eps_i)
    sigma'(z_i): the shaper's slope at the sampled decision, a first-order guess of
    what admitting changes.
  - ``admit_diff``: the shaper's exact difference between admitting and rejecting
    client i with every other decision as sampled, dL/dz_i = [l(d | g_i = 1) -
    l(d | g_i = 0)] sigma'(z_i) (a local-expectation gradient, Titsias &
    Lazaro-Gredilla 2015): unbiased for the learned loss's expectation over g_i, and
    right where admitting jumps the cost (a churn fee, a fixed cost) which a slope
    cannot see. It costs 2m more shaper evaluations per sample.

The amount's gradient is the paper's in every head: the shaper's slope at the
sampled decision, for admitted decisions only.

* ``margin`` (issue 18): raw = [forecast f [B, m], margin r [B, m]], decisions
  f + r. The forecast is trained by MSE alone (pre-training, then
  ``variants.forecast_anchor`` during co-training: the shaper's gradient is stopped
  at f), the margin only through the shaper, as a linear read-out of the
  assembler's features with their gradient stopped (``l2n_jax.nets``; 0 untrained).
  So the predictor's shape keeps MSE's per-sample precision and the learned cost
  sets an input-dependent margin: a learned counterpart of MSE + a tuned margin.
* ``margin_shared``: the same, but the shaper's gradient also reaches the features
  the forecast and the margin both read (the forecast's own output layer stays
  MSE's): a margin of more shapes, a forecast pulled by the learned cost.
* ``margin_net``: the margin has a network of its own, of the predictor's shape,
  trained only through the shaper, beside a forecaster trained by MSE alone: the
  margin can take any shape the predictor can, and the forecast stays precise.
* ``quantile_net``: the forecaster emits K quantiles per decision (levels evenly
  spaced in logit, ``QUANTILE_LOGITS``), trained by the pinball loss alone (so each
  keeps a quantile's exact per-sample gradient); the margin network, trained only
  through the shaper, sets the level: the decision is the (sorted) quantiles
  interpolated linearly in logit at ``QUANTILE_SCALE`` x r (0 untrained: the
  median), extrapolated past the end levels. A learned counterpart of a tuned
  quantile loss whose level may follow the input.
  ``Config.quantile_grad`` > 0 lets that share of the shaper's gradient reach the
  two quantiles each decision is read between too (the pinball loss still anchors
  them): the learned cost may bend the quantile curve where it decides.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from l2n_jax.config import quantile_grads

# An untrained admission head admits with probability sigmoid(2.2) ~ 0.9: the
# pre-trained forecaster's decisions, with one rejection in ten explored.
ADMIT_LOGIT0 = 2.2
# fold_in tag of the admission draws within a step key (independent of the noise).
ADMIT_KEY = 7


def _mse_fit(amount: Callable) -> Callable:
    return lambda raw, targets: jnp.mean((amount(raw) - targets) ** 2)


class Head(NamedTuple):
    """How raw predictor outputs become decisions.

    Attributes:
      name: ``Config.decision_head``.
      width: m -> the number of raw outputs for m decisions.
      decide: raw [B, w] -> decisions [B, m] (evaluation, eps = 0).
      amount: raw -> the amounts [B, m] (what MSE pre-training fits).
      explore: (key, raw, eps, sigma=None) -> the decisions the system is shown
        (sigma: the step's noise std, which an annealed admission floor follows).
      loss: (decision_loss, key, raw, eps, shaper, seen, sigma=None) -> the predictor's loss,
        differentiable in ``raw``; ``decision_loss(decisions, shaper, seen, eps)`` is
        the mean shaped loss of a batch (``variants.shaped_loss``).
      summary: raw -> {name: scalar} logged per step.
      fit: (raw, targets) -> the fixed loss of a head whose forecasts train apart
        from the shaper (the margin and quantile heads): pre-training fits it and
        co-training anchors the forecasts to it (``variants.forecast_anchor``).
        None (the paper's and the admission heads): pre-training fits the MSE of
        ``amount`` and nothing is anchored (``fit_loss``).
    """

    name: str
    width: Callable
    decide: Callable
    amount: Callable
    explore: Callable
    loss: Callable
    summary: Callable
    fit: Callable | None = None


def fit_loss(head: Head) -> Callable:
    """(raw, targets) -> what pre-training fits."""
    return head.fit or _mse_fit(head.amount)


def _amount_loss(decision_loss, key, raw, eps, shaper, seen, sigma=None):
    del key, sigma
    return decision_loss(raw + eps, shaper, seen, eps)


AMOUNT = Head(
    name="amount",
    width=lambda m: m,
    decide=lambda raw: raw,
    amount=lambda raw: raw,
    explore=lambda key, raw, eps, sigma=None: raw + eps,
    loss=_amount_loss,
    summary=lambda raw: {},
)


def _split(raw):
    m = raw.shape[-1] // 2
    return raw[..., :m], raw[..., m:]


def _admitted(key, z, floor, sigma):
    """The exploring admission draw g [B, m] (bool); ``floor(sigma)`` the floor at
    the step's noise std (None outside training)."""
    f = floor(sigma)
    pi = jnp.clip(jax.nn.sigmoid(z), f, 1.0 - f)
    return jax.random.uniform(jax.random.fold_in(key, ADMIT_KEY), z.shape) < pi


def _decide(raw):
    u, z = _split(raw)
    return jnp.where(z > 0, u, 0.0)


def _explore(floor):
    def explore(key, raw, eps, sigma=None):
        u, z = _split(raw)
        return jnp.where(_admitted(key, z, floor, sigma), u + eps, 0.0)

    return explore


def _st_loss(floor):
    def loss(decision_loss, key, raw, eps, shaper, seen, sigma=None):
        u, z = _split(raw)
        g = _admitted(key, z, floor, sigma).astype(raw.dtype)
        p = jax.nn.sigmoid(z)
        g_st = g + p - jax.lax.stop_gradient(p)  # value g, gradient of sigmoid(z)
        return decision_loss(g_st * (u + eps), shaper, seen, eps)

    return loss


def admission_gaps(decision_loss, decisions, full, shaper, seen, eps):
    """Per sample and client, the learned loss of admitting minus rejecting it:
    [B, m], l(d with d_i = full_i) - l(d with d_i = 0), every other d_j as given."""

    def per_sample(d, f, s, e):
        def gap(i):
            one = lambda v: decision_loss(d.at[i].set(v)[None], shaper, s[None], e[None])
            return one(f[i]) - one(0.0)

        return jax.vmap(gap)(jnp.arange(d.shape[-1]))

    return jax.vmap(per_sample)(decisions, full, seen, eps)


def _diff_loss(floor):
    def loss(decision_loss, key, raw, eps, shaper, seen, sigma=None):
        u, z = _split(raw)
        g = _admitted(key, z, floor, sigma)
        decisions = jnp.where(g, u + eps, 0.0)
        gaps = jax.lax.stop_gradient(
            admission_gaps(decision_loss, decisions, u + eps, shaper, seen, eps))
        p = jax.nn.sigmoid(z)
        # Zero in value, gaps x sigma'(z) in gradient (the batch mean, as the loss).
        logit_term = jnp.mean(jnp.sum(gaps * (p - jax.lax.stop_gradient(p)), -1))
        return decision_loss(decisions, shaper, seen, eps) + logit_term

    return loss


def _admit_summary(raw):
    _, z = _split(raw)
    return {"admit_prob": jnp.mean(jax.nn.sigmoid(z))}


def _admit_head(name: str, loss_of: Callable, floor: Callable) -> Head:
    return Head(name=name, width=lambda m: 2 * m, decide=_decide,
                amount=lambda raw: _split(raw)[0], explore=_explore(floor),
                loss=loss_of(floor), summary=_admit_summary)


def _margin_loss(decision_loss, key, raw, eps, shaper, seen, sigma=None):
    del key, sigma
    f, r = _split(raw)
    return decision_loss(jax.lax.stop_gradient(f) + r + eps, shaper, seen, eps)


MARGIN = Head(
    name="margin",
    width=lambda m: 2 * m,
    decide=lambda raw: sum(_split(raw)),
    amount=lambda raw: _split(raw)[0],
    explore=lambda key, raw, eps, sigma=None: sum(_split(raw)) + eps,
    loss=_margin_loss,
    summary=lambda raw: {"margin": jnp.mean(_split(raw)[1])},
    fit=_mse_fit(lambda raw: _split(raw)[0]),
)
MARGIN_SHARED = MARGIN._replace(name="margin_shared")  # nets.py reads the difference
MARGIN_NET = MARGIN._replace(name="margin_net")

# decision_head='quantile_net': levels evenly spaced in logit, so a tail level (a fee
# that wants the 98th percentile) resolves as finely as the middle; 0.5 in the middle.
QUANTILE_LOGITS = tuple(float(z) for z in range(-5, 6))  # tau 0.0067 ... 0.9933
QUANTILE_SCALE = 5.0  # a margin of 1 moves the level by 5 logits (tau 0.5 -> 0.9933)


def split_quantiles(raw):
    """raw [..., m (K + 1)] -> (sorted quantiles [..., m, K], level margins [..., m])."""
    k = len(QUANTILE_LOGITS)
    m = raw.shape[-1] // (k + 1)
    q = raw[..., : m * k].reshape(*raw.shape[:-1], m, k)
    return jnp.sort(q, axis=-1), raw[..., m * k:]


def interpolate_quantiles(q, z):
    """The quantiles q [..., K] (at ``QUANTILE_LOGITS``) read at logit z [...]:
    linear between levels, and past the end ones along their end segments (so the
    level keeps a gradient there)."""
    z0, step = QUANTILE_LOGITS[0], QUANTILE_LOGITS[1] - QUANTILE_LOGITS[0]
    pos = (z - z0) / step
    i = jnp.clip(jnp.floor(pos), 0, len(QUANTILE_LOGITS) - 2).astype(jnp.int32)
    lo = jnp.take_along_axis(q, i[..., None], -1)[..., 0]
    hi = jnp.take_along_axis(q, i[..., None] + 1, -1)[..., 0]
    return lo + (pos - i) * (hi - lo)


def _quantile_decide(raw, grad_share=1.0):
    q, r = split_quantiles(raw)
    # 0 and 1 as the plain stop / no stop (bitwise the old head's steps); between,
    # the same value with the gradient scaled by grad_share.
    if grad_share == 0.0:
        q = jax.lax.stop_gradient(q)
    elif grad_share != 1.0:
        q = grad_share * q + (1.0 - grad_share) * jax.lax.stop_gradient(q)
    return interpolate_quantiles(q, QUANTILE_SCALE * r)


def _quantile_loss_of(grad_share: float) -> Callable:
    """The shaped loss of the quantile head's decisions, with ``grad_share`` of the
    shaper's gradient reaching the quantiles (``Config.quantile_grad``)."""

    def quantile_loss(decision_loss, key, raw, eps, shaper, seen, sigma=None):
        del key, sigma
        return decision_loss(_quantile_decide(raw, grad_share) + eps, shaper, seen, eps)

    return quantile_loss


def _pinball_fit(raw, targets):
    q, _ = split_quantiles(raw)
    tau = jax.nn.sigmoid(jnp.asarray(QUANTILE_LOGITS))
    err = targets[..., None] - q
    return jnp.mean(jnp.maximum(tau * err, (tau - 1.0) * err))


QUANTILE_NET = Head(
    name="quantile_net",
    width=lambda m: m * (len(QUANTILE_LOGITS) + 1),
    decide=_quantile_decide,
    amount=lambda raw: split_quantiles(raw)[0][..., len(QUANTILE_LOGITS) // 2],
    explore=lambda key, raw, eps, sigma=None: _quantile_decide(raw) + eps,
    loss=_quantile_loss_of(0.0),
    summary=lambda raw: {"quantile_level": jnp.mean(
        jax.nn.sigmoid(QUANTILE_SCALE * split_quantiles(raw)[1]))},
    fit=_pinball_fit,
)
_MARGIN_HEADS = {h.name: h for h in (MARGIN, MARGIN_SHARED, MARGIN_NET, QUANTILE_NET)}


def make_head(config) -> Head:
    """The head of ``config.decision_head`` (with its ``admit_floor``)."""
    if config.decision_head == "amount":
        return AMOUNT
    grad = quantile_grads(config)[0]  # a choice is made above the program (l2n.fit)
    if config.decision_head == "quantile_net" and grad:
        return QUANTILE_NET._replace(loss=_quantile_loss_of(grad))
    if config.decision_head in _MARGIN_HEADS:
        return _MARGIN_HEADS[config.decision_head]
    loss_of = {"admit_st": _st_loss, "admit_diff": _diff_loss}[config.decision_head]
    return _admit_head(config.decision_head, loss_of, _floor(config))


def _floor(config) -> Callable:
    """sigma -> the admission draws' floor: ``admit_floor``, or with
    ``admit_floor_anneal`` admit_floor x sigma / noise_start, so forced rejections
    fade with the exploration noise (the logits' ``admit_diff`` gradient needs no
    rejected draw; only the shaper's fit near d = 0 does, early on)."""
    floor, start = config.admit_floor, config.noise_start
    if not config.admit_floor_anneal:
        return lambda sigma: floor
    if start <= 0:  # no exploration noise to follow
        return lambda sigma: floor if sigma is None else 0.0
    return lambda sigma: floor if sigma is None else floor * sigma / start
