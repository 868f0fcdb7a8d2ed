"""Adaptive Loss Alignment's controller (Huang et al., ICML 2019): the policy that
moves the loss parameters Phi, its state features, reward and REINFORCE update.

Pure functions and a ``flax.struct`` state; ``l2n_jax.ala`` calls them once per
policy period, inside the compiled training step, for N child predictors at once:

* ``features``: per child, the recent validation costs relative to the first one
  the controller saw, their relative changes, Phi mapped to [-1, 1] within its
  bounds, and training progress in [0, 1];
* the policy is a tanh MLP with, per loss parameter, a softmax over the moves
  {-beta, 0, +beta} (factorised over parameters; parameters the policy may not
  move are held at 0 and left out of the log-probability);
* ``observe``: reward = sign of the improvement of the new validation cost over
  the discounted (exponentially smoothed) past cost, for the action taken one
  period earlier (``sign_reward``, the paper; ``sibling_reward`` compares a
  child with its N - 1 siblings of the same period); a moving-average baseline;
  a small ring replay of past (state, action, reward) triples;
* ``reinforce_loss``: REINFORCE on the replay (which holds this period's N
  samples too), advantage = reward - baseline, plus a small entropy bonus.

Costs may be negative (a profit): every normalisation divides by ``|c_ref|``.
``ALAConfig`` (ALA's hyper-parameters, re-exported by ``l2n_jax.ala``) lives here.
"""

import dataclasses
import math
from typing import NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp

MOVES = 3  # actions per parameter: -beta, 0, +beta
PARAMS = ("asymmetry", "margin", "mse_weight")  # Phi = (logit tau, margin, log w_mse)
_TINY = 1e-8


@struct.dataclass
class Controller:
    """What the controller carries between policy periods (N children, P params)."""

    history: jax.Array  # [N, H] recent validation costs, newest first
    ref: jax.Array  # [N] the first validation cost seen (feature normaliser)
    disc: jax.Array  # [N] discounted (smoothed) validation cost
    features: jax.Array  # [N, F] state the last action was taken in
    actions: jax.Array  # [N, P] int32 the last action (1 = no move)
    acted: jax.Array  # () bool, an action awaits its reward
    baseline: jax.Array  # () moving average of the rewards
    replay_features: jax.Array  # [R, F]
    replay_actions: jax.Array  # [R, P] int32
    replay_rewards: jax.Array  # [R]
    replay_live: jax.Array  # [R] bool
    pointer: jax.Array  # () int32, next replay slot


class Policy(NamedTuple):
    """``init(key) -> params``; ``apply(params, features [..., F]) -> logits
    [..., P, 3]``."""

    init: callable
    apply: callable


def n_features(history: int, n_params: int) -> int:
    return 2 * history - 1 + n_params + 1


def make_policy(n_in: int, n_params: int, hidden: tuple[int, ...]) -> Policy:
    """A tanh MLP; the output layer starts at zero, so the first policy is uniform
    (the paper's controller also starts without a preference)."""
    sizes = (n_in, *hidden)

    def init(key):
        keys = jax.random.split(key, len(hidden))
        layers = [
            {"w": jax.random.normal(k, (a, b)) * jnp.sqrt(1.0 / a), "b": jnp.zeros((b,))}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])
        ]
        out = {"w": jnp.zeros((sizes[-1], n_params * MOVES)),
               "b": jnp.zeros((n_params * MOVES,))}
        return {"hidden": layers, "out": out}

    def apply(params, x):
        for layer in params["hidden"]:
            x = jnp.tanh(x @ layer["w"] + layer["b"])
        logits = x @ params["out"]["w"] + params["out"]["b"]
        return logits.reshape(*logits.shape[:-1], n_params, MOVES)

    return Policy(init, apply)


def init_controller(children: int, history: int, n_params: int, replay: int) -> Controller:
    f = n_features(history, n_params)
    return Controller(
        history=jnp.zeros((children, history)),
        ref=jnp.ones((children,)),
        disc=jnp.zeros((children,)),
        features=jnp.zeros((children, f)),
        actions=jnp.ones((children, n_params), jnp.int32),
        acted=jnp.array(False),
        baseline=jnp.zeros(()),
        replay_features=jnp.zeros((replay, f)),
        replay_actions=jnp.ones((replay, n_params), jnp.int32),
        replay_rewards=jnp.zeros((replay,)),
        replay_live=jnp.zeros((replay,), bool),
        pointer=jnp.zeros((), jnp.int32),
    )


def features(ctrl: Controller, phi_unit, progress):
    """[N, F]: relative costs (H), relative changes (H - 1), Phi in [-1, 1] (P),
    progress (1); clipped so one outlying period cannot saturate the tanh."""
    scale = jnp.abs(ctrl.ref)[:, None] + _TINY
    rel = (ctrl.history - ctrl.ref[:, None]) / scale
    newer, older = ctrl.history[:, :-1], ctrl.history[:, 1:]
    change = (newer - older) / (jnp.abs(older) + _TINY)
    prog = jnp.broadcast_to(progress, (ctrl.history.shape[0], 1))
    x = jnp.concatenate([rel, change, phi_unit, prog], axis=1)
    return jnp.clip(x, -5.0, 5.0).astype(jnp.float32)


def sign_reward(disc, costs):
    """The paper's reward: sign of the improvement over the discounted past cost."""
    return jnp.sign(disc - costs)


def sibling_reward(disc, costs):
    """Beyond the paper, from N children: the sign of a child's relative
    improvement minus its siblings' median in the same period. The children share
    the period's data and training progress, so the common trend (every child
    improves while it learns, whatever its moves) cancels and what is left is
    the effect of its own moves."""
    gain = (disc - costs) / (jnp.abs(disc) + _TINY)
    return jnp.sign(gain - jnp.median(gain))


REWARDS = {"sign": sign_reward, "siblings": sibling_reward}


def observe(ctrl: Controller, costs, discount: float, momentum: float,
            reward=sign_reward):
    """Takes this period's validation costs [N]: rewards the last action, stores it
    in the replay, updates baseline, smoothed cost and history.

    Returns (controller, rewards [N], advantage baseline used ()).
    """
    acted = ctrl.acted
    # The first costs ever seen start the history, the normaliser and the smoothing.
    disc = jnp.where(acted, ctrl.disc, costs)
    rewards = jnp.where(acted, reward(disc, costs), 0.0)
    n, r = costs.shape[0], ctrl.replay_rewards.shape[0]
    slots = (ctrl.pointer + jnp.arange(n)) % r

    def write(buffer, values):
        return jnp.where(acted, buffer.at[slots].set(values), buffer)

    history = jnp.where(acted, jnp.roll(ctrl.history, 1, axis=1), costs[:, None])
    new = ctrl.replace(
        history=history.at[:, 0].set(costs),
        ref=jnp.where(acted, ctrl.ref, costs),
        disc=discount * disc + (1.0 - discount) * costs,
        baseline=jnp.where(acted, momentum * ctrl.baseline
                           + (1.0 - momentum) * jnp.mean(rewards), ctrl.baseline),
        replay_features=write(ctrl.replay_features, ctrl.features),
        replay_actions=write(ctrl.replay_actions, ctrl.actions),
        replay_rewards=write(ctrl.replay_rewards, rewards),
        replay_live=write(ctrl.replay_live, jnp.ones((n,), bool)),
        pointer=jnp.where(acted, (ctrl.pointer + n) % r, ctrl.pointer),
    )
    return new, rewards, ctrl.baseline


def reinforce_loss(params, policy: Policy, ctrl: Controller, baseline, movable,
                   entropy_weight: float):
    """REINFORCE on the replay: -mean((r - b) log pi(a|s)) - entropy bonus.

    ``movable`` [P] bool: parameters the policy moves (the others are not scored).
    Returns (loss, mean entropy per movable parameter).
    """
    logp = jax.nn.log_softmax(policy.apply(params, ctrl.replay_features))  # [R, P, 3]
    taken = jnp.take_along_axis(logp, ctrl.replay_actions[..., None], axis=-1)[..., 0]
    logp_a = jnp.sum(jnp.where(movable, taken, 0.0), axis=-1)  # [R]
    live = ctrl.replay_live.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(live), 1.0)
    advantage = jax.lax.stop_gradient(ctrl.replay_rewards - baseline)
    pg = -jnp.sum(live * advantage * logp_a) / count
    ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)  # [R, P]
    ent = jnp.sum(live[:, None] * jnp.where(movable, ent, 0.0)) / (
        count * jnp.maximum(jnp.sum(movable), 1))
    return pg - entropy_weight * ent, ent


def act(key, params, policy: Policy, x, movable):
    """Samples moves [N, P] in {0, 1, 2} (1 = stay); unmovable parameters stay."""
    actions = jax.random.categorical(key, policy.apply(params, x), axis=-1)
    return jnp.where(movable, actions, 1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ALAConfig:
    """ALA's own hyper-parameters (the predictor's are the ``Config``'s).

    Attributes:
      children: N predictors sharing one policy (N rewards per policy step).
      periods_per_epoch: policy steps per epoch; K = steps per epoch // this (the
        last ``steps % periods`` batches of an epoch are dropped).
      moves: the Phi parameters the policy moves (of ``PARAMS``); the rest stay
        at ``phi_init``.
      phi_init, phi_low, phi_high: Phi at the start and its bounds, per
        parameter of ``PARAMS`` (logit tau, margin in units of s, log w_mse).
      step_sizes: beta per parameter (a move is -beta, 0 or +beta).
      history: validation costs in the policy's state.
      discount: smoothing of the past validation cost the reward compares with.
      baseline_momentum: of the rewards' moving average.
      replay: policy periods kept in the replay (replay * children samples).
      policy_hidden: the policy MLP's hidden sizes (paper: 32, 32).
      policy_lr: Adam learning rate of the policy.
      entropy: weight of the policy's entropy bonus.
      reward: 'sign' (paper: sign of the improvement of the discounted
        validation cost) or 'siblings' (that improvement's sign relative to the
        median child of the same period; needs children >= 2).
    """

    children: int = 4
    periods_per_epoch: int = 4
    moves: tuple[str, ...] = PARAMS
    phi_init: tuple[float, float, float] = (0.0, 0.0, math.log(0.1))
    phi_low: tuple[float, float, float] = (-5.0, -4.0, math.log(1e-3))
    phi_high: tuple[float, float, float] = (5.0, 4.0, math.log(10.0))
    step_sizes: tuple[float, float, float] = (0.25, 0.1, 0.25)
    history: int = 4
    discount: float = 0.5
    baseline_momentum: float = 0.9
    replay: int = 4
    policy_hidden: tuple[int, ...] = (32, 32)
    policy_lr: float = 3e-3
    entropy: float = 0.01
    reward: str = "siblings"

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> "ALAConfig":
        return dataclasses.replace(self, **changes)


def validate(ala: ALAConfig) -> None:
    """Raises ValueError naming the first invalid field of ``ala``."""
    for name in ("children", "periods_per_epoch", "history", "replay"):
        value = getattr(ala, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"ALAConfig.{name} must be an int >= 1, got {value!r}")
    if ala.reward not in REWARDS:
        raise ValueError(f"ALAConfig.reward must be one of {tuple(REWARDS)}, "
                         f"got {ala.reward!r}")
    if ala.reward == "siblings" and ala.children < 2:
        raise ValueError("ALAConfig.reward='siblings' needs children >= 2, got "
                         f"{ala.children}")
    if ala.history < 2:
        raise ValueError(f"ALAConfig.history must be >= 2, got {ala.history}")
    if not ala.moves or not set(ala.moves) <= set(PARAMS) or len(set(ala.moves)) != len(ala.moves):
        raise ValueError(f"ALAConfig.moves must name distinct parameters of {PARAMS}, "
                         f"got {ala.moves!r}")
    for name in ("phi_init", "phi_low", "phi_high", "step_sizes"):
        value = getattr(ala, name)
        if not isinstance(value, tuple) or len(value) != len(PARAMS) or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in value):
            raise ValueError(f"ALAConfig.{name} must be {len(PARAMS)} finite numbers "
                             f"{PARAMS}, got {value!r}")
    if any(s <= 0 for s in ala.step_sizes):
        raise ValueError(f"ALAConfig.step_sizes must be > 0, got {ala.step_sizes}")
    if not all(lo <= x <= hi and lo < hi for lo, x, hi in
               zip(ala.phi_low, ala.phi_init, ala.phi_high)):
        raise ValueError("ALAConfig.phi_init must lie within phi_low < phi_high, got "
                         f"{ala.phi_low}, {ala.phi_init}, {ala.phi_high}")
    for name in ("discount", "baseline_momentum"):
        if not 0.0 <= getattr(ala, name) < 1.0:
            raise ValueError(f"ALAConfig.{name} must be in [0, 1), got {getattr(ala, name)}")
    for name in ("policy_lr", "entropy"):
        value = getattr(ala, name)
        if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)) or (
                name == "policy_lr" and value == 0):
            raise ValueError(f"ALAConfig.{name} must be a finite number "
                             f"{'> 0' if name == 'policy_lr' else '>= 0'}, got {value!r}")
    if not ala.policy_hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in ala.policy_hidden):
        raise ValueError(f"ALAConfig.policy_hidden must be a tuple of positive ints, "
                         f"got {ala.policy_hidden!r}")


# The loss family the policy moves (Phi = PARAMS).
def aligned_loss(pred, target, phi, scale):
    """The loss family L_Phi for one sample: pred, target, scale [m]; phi [3]."""
    tau = jax.nn.sigmoid(phi[0])
    r = (pred - target) / scale - phi[1]
    return jnp.mean(2.0 * tau * jax.nn.relu(-r) + 2.0 * (1.0 - tau) * jax.nn.relu(r)
                    + jnp.exp(phi[2]) * r ** 2)


def target_scale(train):
    """[m] std of the live training targets' one-step change, floored at 1e-3 of
    their range (a flat series must not divide by zero)."""
    w = train.windows
    change, targets = w.targets - w.current, w.targets
    live = (jnp.ones(len(w), bool) if not train.padded
            else jnp.arange(len(w)) < train.n)[:, None]
    n = jnp.sum(live)
    mean = jnp.sum(jnp.where(live, change, 0.0), 0) / n
    std = jnp.sqrt(jnp.sum(jnp.where(live, (change - mean) ** 2, 0.0), 0) / n)
    span = (jnp.where(live, targets, -jnp.inf).max(0)
            - jnp.where(live, targets, jnp.inf).min(0))
    return jnp.maximum(std, 1e-3 * span + 1e-12)
