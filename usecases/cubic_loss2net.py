"""Loss2Net on the cubic top-1 problem, the decision quality as a black-box cost.

The fourth method of ``usecases.cubic`` (same linear predictor, init, data, batches
and early-stopping protocol as MSE, DFL and TaskMet). Each outer iteration is one
call of the library's Algorithm 1 step, ``l2n_jax.steps.loss2net_step``, with parts
built here (the shapes fit it: a batch is ``batch`` instances, a decision is the
``n_items`` scores of one instance, its observation the instance's ``n_items``
utilities):

1. the predictor scores the items, ``y_hat = w x + b``; exploration noise
   ``eps ~ N(0, sigma_t^2)`` is added, ``sigma_t`` decaying exponentially from
   ``l2n_noise_start`` to ``l2n_noise_end`` times the training utilities' std over
   ``max_iters`` iterations (a linear predictor cannot use ``eps`` as an input, the
   paper's other use of it);
2. the system picks the hard top-1 item of ``y_hat + eps`` and reports the
   instance's cost, minus its normalised decision quality
   ``-(y_pick - mean y) / (max y - mean y)`` (``black_box``: differentiating it
   raises, so the step provably never does);
3. the shaper regresses the reported costs (MSE, Adam);
4. the predictor steps down the updated shaper's gradient with respect to its
   decisions, pulled back through ``y_hat`` only.

The shaper (``l2n_shaper``): ``'set'`` (default) is permutation invariant: a per-item
MLP of (centred decision, utility), pooled by attention (softmax of a learned score
per item) and by the mean, then an MLP to the cost. The cost of a top-1 pick is a
function of the *set* of (decision, utility) pairs, and attention pooling can
express "the utility of the highest-scored item" (score = a multiple of the
decision) with one shared per-item net, where the flat MLP (``'mlp'``, the 2n values
concatenated) must learn it separately for each of the n item slots. Decisions are
centred per instance (a top-1 pick ignores a common shift, so the shaper should
too) but not rescaled: the shaper's surface is smooth on the scale of the
decisions it saw, and that smoothness is the predictor's only gradient (the true
cost is piecewise constant in the decisions).

Validation and selection are on the validation DQ (Loss2Net's own selection is on
its true metric, which is the DQ here), not on a loss. Note what that means with a
linear predictor: the hard top-1 DQ depends only on the sign of ``w``, so a seed
whose random init has ``w > 0`` is already at the best DQ at iteration 0;
``l2n_pretrain`` MSE iterations before co-training start every seed from the
least-squares (negative) slope instead, the hard case.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2n_jax import engine, steps, variants
from l2n_jax.metrics import cost_model

from . import cubic


class Batch(NamedTuple):
    """One iteration's instances, the fields ``loss2net_step`` reads."""

    inputs: jax.Array  # [B, n] features x
    targets: jax.Array  # [B, n] utilities (the noise's shape; the logged mean error)
    obs: jax.Array  # [B, n] the utilities the system observes (the shaper's input)


def black_box(fn):
    """``fn`` unchanged in value; any attempt to differentiate it raises."""
    wrapped = jax.custom_jvp(fn)

    @wrapped.defjvp
    def _no_derivative(primals, tangents):
        del primals, tangents
        raise TypeError("the cubic system's cost is a black box: never differentiate it")

    return wrapped


@black_box
def system_cost(decision: jax.Array, utility: jax.Array) -> jax.Array:
    """Minus the normalised DQ of the hard top-1 pick of ``decision`` [n]: a scalar."""
    pick = utility[jnp.argmax(decision)]
    mean = jnp.mean(utility)
    best = utility[jnp.argmax(utility)]
    return -(pick - mean) / (best - mean)


# ------------------------------------------------------------------ the shaper
def _mlp_init(key, sizes):
    """Dense layers, LeCun-normal weights, zero biases."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (a, b)) / jnp.sqrt(a),
            "b": jnp.zeros((b,)),
        }
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def _mlp(layers, h):
    """tanh hidden layers (a smooth surface: its gradient steers the predictor)."""
    for layer in layers[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ layers[-1]["w"] + layers[-1]["b"]


_BETA0 = 3.0  # the attention's initial steepness in the (standardised) decisions


class Shaper(NamedTuple):
    init: object  # key -> params
    apply: object  # (params, decisions [B, n], utilities [B, n]) -> costs [B]


def make_shaper(kind: str, n_items: int, hidden: int) -> Shaper:
    """The loss shaper ``f(decisions, utilities) -> cost`` (see the module doc)."""
    centre = lambda d: d - jnp.mean(d, axis=-1, keepdims=True)
    if kind == "mlp":
        return Shaper(
            lambda key: _mlp_init(key, (2 * n_items, 4 * hidden, 4 * hidden, 1)),
            lambda p, d, y: _mlp(p, jnp.concatenate([centre(d), y], -1))[..., 0],
        )
    if kind != "set":
        raise ValueError(f"unknown cubic shaper {kind!r}; choose 'set' or 'mlp'")

    def init(key):
        k_phi, k_score, k_rho = jax.random.split(key, 3)
        return {
            "phi": _mlp_init(k_phi, (2, hidden, hidden)),
            "score": _mlp_init(k_score, (hidden, 1)),
            "log_beta": jnp.log(jnp.asarray(_BETA0)),
            "rho": _mlp_init(k_rho, (2 * (hidden + 2), hidden, 1)),
        }

    def apply(p, d, y):
        raw = jnp.stack([centre(d), y], -1)  # [B, n, 2]
        h = jnp.concatenate([raw, jnp.tanh(_mlp(p["phi"], raw))], -1)  # [B, n, H + 2]
        # A top-1 cost needs a score as steep as the gaps between the top decisions:
        # a learned multiple of the decision (a skip) plus a learned correction.
        score = jnp.exp(p["log_beta"]) * raw[..., 0] + _mlp(p["score"], h[..., 2:])[..., 0]
        # softmax subtracts a stop-gradient max: no jnp.max gradient (NaN at -O0).
        attn = jax.nn.softmax(score, axis=-1)  # [B, n]
        pooled = jnp.concatenate(
            [jnp.einsum("bn,bnh->bh", attn, h), jnp.mean(h, axis=1)], -1
        )
        return _mlp(p["rho"], pooled)[..., 0]

    return Shaper(init, apply)


# ------------------------------------------------------------------ the method
def noise_std(cfg: cubic.CubicConfig):
    """``step -> sigma``: exponential decay from start to end over ``max_iters``."""
    ratio = cfg.l2n_noise_end / cfg.l2n_noise_start
    return lambda step: cfg.l2n_noise_start * ratio ** (step / cfg.max_iters)


def decisions(theta: dict, x: jax.Array) -> jax.Array:
    """The predictor's scores standardised per instance, ``(y_hat - mean) / std``.

    A top-1 pick is invariant to a positive affine map of the scores, so this is the
    same decision as ``y_hat``; it makes the exploration noise relative to the
    scores' spread. The mean and std are not differentiated, so the predictor's
    gradient is the shaper's, pulled back through ``y_hat`` (scaled by 1 / std).
    """
    y_hat = cubic.predict(theta, x)
    mean = jnp.mean(y_hat, axis=-1, keepdims=True)
    std = jnp.sqrt(jnp.var(y_hat, axis=-1, keepdims=True) + 1e-12)
    return (y_hat - jax.lax.stop_gradient(mean)) / jax.lax.stop_gradient(std)


def make_parts(cfg: cubic.CubicConfig, shaper: Shaper, y_std) -> steps.Loss2NetParts:
    """Algorithm 1's parts for the cubic problem (``y_std``: the utilities' std, the
    noise's unit when ``l2n_relative_noise`` is off)."""
    if cfg.l2n_relative_noise:
        predict, noise = (lambda theta, x, eps: decisions(theta, x)), noise_std(cfg)
    else:
        predict = lambda theta, x, eps: cubic.predict(theta, x)
        noise = lambda step: y_std * noise_std(cfg)(step)
    seen_loss = lambda p, d, seen: shaper.apply(p, d, seen)
    return steps.Loss2NetParts(
        predict=predict,
        cost=cost_model(system_cost),
        noise=noise,
        lr=lambda step: jnp.asarray(cfg.l2n_lr),
        target=variants.reported_cost,
        memory=variants.no_memory(),
        shaper_loss=lambda p, d, seen, costs, weights: jnp.sum(
            weights * (seen_loss(p, d, seen) - costs) ** 2
        )
        / jnp.sum(weights),
        decision_loss=lambda d, p, seen, eps: jnp.mean(seen_loss(p, d, seen)),
        shaper_tx=optax.adam(cfg.l2n_shaper_lr),
        predictor_tx=variants.predictor_optimizer(
            cfg.l2n_lr, cfg.l2n_warmup, 1 if cfg.l2n_warmup else None
        ),
    )


def _mse_pretrain(cfg: cubic.CubicConfig, key, theta, data: cubic.Data):
    """``l2n_pretrain`` Adam iterations on the MSE (the paper's pre-training)."""
    tx = optax.adam(cfg.lr)

    def iteration(carry, t):
        theta, opt = carry
        idx = cubic._sample(jax.random.fold_in(key, t), cfg.n_fit, cfg.batch)
        grad = jax.grad(
            lambda p: jnp.mean((cubic.predict(p, data.x_fit[idx]) - data.y_fit[idx]) ** 2)
        )(theta)
        updates, opt = tx.update(grad, opt, theta)
        return (optax.apply_updates(theta, updates), opt), None

    carry = (theta, tx.init(theta))
    return jax.lax.scan(iteration, carry, jnp.arange(cfg.l2n_pretrain))[0][0]


def _setup(cfg: cubic.CubicConfig, key, data: cubic.Data):
    """The start state and ``iteration(t, state) -> (state, metrics)`` of one seed."""
    # The predictor's init key is MSE's and DFL's: the same start per seed.
    key_theta, key_rest = jax.random.split(key)
    key_shaper, key_pre, key_loop = jax.random.split(key_rest, 3)
    shaper = make_shaper(cfg.l2n_shaper, cfg.n_items, cfg.l2n_hidden)
    parts = make_parts(cfg, shaper, jnp.std(data.y_fit))
    theta = cubic.init_predictor(key_theta)
    if cfg.l2n_pretrain:
        theta = _mse_pretrain(cfg, key_pre, theta, data)
    params = {"predictor": theta, "shaper": shaper.init(key_shaper)}
    opt_state = {
        "predictor": parts.predictor_tx.init(params["predictor"]),
        "shaper": parts.shaper_tx.init(params["shaper"]),
    }
    state = engine.new_state(params, opt_state, parts.memory.init(), parts.cost.init())

    def iteration(t, state):
        key_idx, key_step = jax.random.split(jax.random.fold_in(key_loop, t))
        idx = cubic._sample(key_idx, cfg.n_fit, cfg.batch)
        y = data.y_fit[idx]
        return steps.loss2net_step(parts, key_step, state, Batch(data.x_fit[idx], y, y))

    return state, iteration, shaper


def make_train(cfg: cubic.CubicConfig):
    """``train(key, data) -> cubic.Best``, selected on the validation DQ."""
    if cfg.k != 1:
        raise ValueError(f"cubic Loss2Net's system picks the top 1 item, got k={cfg.k}")

    def train(key: jax.Array, data: cubic.Data):
        state, iteration, _ = _setup(cfg, key, data)

        def round_fn(r, state):
            ts = r * cfg.val_every + jnp.arange(cfg.val_every)
            return jax.lax.scan(lambda s, t: (iteration(t, s)[0], None), state, ts)[0]

        theta = lambda s: s.params["predictor"]
        val_fn = lambda s: -cubic.decision_quality(
            cfg, cubic.predict(theta(s), data.x_valid), data.y_valid
        )
        keep = lambda s: {"theta": theta(s), "shaper": s.params["shaper"]}
        return cubic.early_stopping(cfg, state, round_fn, val_fn, keep)

    return train


def trace(cfg: cubic.CubicConfig, key: jax.Array, data: cubic.Data, n_iters: int):
    """``n_iters`` iterations without early stopping, for diagnosis.

    Returns:
      The step's metrics per iteration (``cost``, ``shaper_loss``, ``noise_std``,
      ...), plus ``w`` and ``b`` after each, every one [n_iters].
    """
    state, iteration, _ = _setup(cfg, key, data)

    def body(state, t):
        state, metrics = iteration(t, state)
        theta = state.params["predictor"]
        return state, {**metrics, "w": theta["w"], "b": theta["b"]}

    return jax.lax.scan(body, state, jnp.arange(n_iters))[1]
