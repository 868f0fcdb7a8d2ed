"""The TaskMet/LODL "cubic" top-1 problem, with MSE, DFL and TaskMet as programs.

Each instance has ``n_items`` items with one feature ``x ~ U(-1, 1)`` and utility
``y = 10 (x^3 - 0.65 x)`` (no noise); the decision picks the top ``k`` items by
predicted utility. The predictor is one linear map ``y_hat = w x + b`` (w, b ~
U(-1, 1)), which cannot fit the cubic: a least-squares fit has a negative slope
(it picks the worst item, DQ ~ -0.96) while the decision needs a positive one.
Training decisions use the Sinkhorn soft top-k (``l2n_jax.softsort``), test
decisions the hard top-k; the normalised decision quality is
``DQ = (obj - obj_random) / (obj_opt - obj_random)`` over the test set, with
``obj_random = k * mean(y)`` the expected value of a uniformly random pick.

Protocol of the authors' configuration (LODLs in the TaskMet repository): Adam,
``batch`` instances per outer iteration, at most ``max_iters`` iterations,
validation every ``val_every`` iterations (before that iteration's update), early
stop after ``patience`` validations without improvement, the parameters of the best
validation *loss* kept (Loss2Net, ``usecases.cubic_loss2net``: the best validation
DQ, its true metric). Each method is one pure ``train(key, data)``; seeds are
``jit(vmap(train))``; the early stopping is a ``lax.while_loop`` over validation
rounds, each a ``lax.scan`` of ``val_every`` iterations (no host round trip).
"""

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2n_jax import softsort
from l2n_jax.runs import seed_keys

METHODS = ("mse", "dfl", "taskmet", "loss2net")


@dataclasses.dataclass(frozen=True)
class CubicConfig:
    """The problem and the three methods' settings (defaults: the authors')."""

    n_items: int = 50
    k: int = 1
    n_train: int = 400  # instances, of which the first n_valid are validation
    n_valid: int = 200
    n_test: int = 400
    data_seed: int = 0
    epsilon: float = 0.01  # soft top-k, relative to the normalised cost
    sinkhorn_iters: int = 200
    batch: int = 50  # instances per outer iteration (all methods)
    max_iters: int = 1000
    val_every: int = 10
    patience: int = 10  # validations without improvement
    lr: float = 0.1  # MSE and DFL
    dfl_alpha: float = 1.0  # DFL loss: -soft objective + dfl_alpha * MSE
    metric_hidden: int = 200  # TaskMet metric MLP 1-hidden-1
    inner_lr: float = 0.1
    inner_clip: float = 1.0  # global-norm clip before the inner Adam
    inner_init_steps: int = 500
    inner_steps: int = 100
    inner_batch: int = 10
    implicit_batch: int = 10
    cg_iters: int = 5
    ridge: float = 1e-5
    outer_lr: float = 1e-3
    task_alpha: float = 0.0  # TaskMet task loss: -soft objective + task_alpha * MSE
    grad_tol: float = 1e-3  # inner early exit (the authors' threshold)
    # Loss2Net (usecases/cubic_loss2net.py).
    l2n_shaper: str = "set"  # 'set' (attention-pooled per-item net) or 'mlp'
    l2n_hidden: int = 32
    l2n_lr: float = 0.1  # the predictor's Adam
    l2n_shaper_lr: float = 1e-2
    # Noise std: in units of each instance's score spread (relative), else std(y).
    l2n_relative_noise: bool = True
    l2n_noise_start: float = 0.5
    l2n_noise_end: float = 0.01
    l2n_warmup: int = 20  # first iterations: only the shaper learns (may be 0)
    l2n_pretrain: int = 0  # MSE iterations before co-training (0: from the init)

    @property
    def n_fit(self) -> int:
        return self.n_train - self.n_valid

    @property
    def n_rounds(self) -> int:
        # Validations at iterations 0, val_every, ..., max_iters (the authors' loop
        # runs iterations 0..max_iters inclusive).
        return self.max_iters // self.val_every + 1


# Every count (int field but the data seed) must be >= 1, every rate > 0.
_COUNTS = tuple(
    f.name
    for f in dataclasses.fields(CubicConfig)
    if f.type is int and f.name not in ("data_seed", "l2n_warmup", "l2n_pretrain")
)
_RATES = ("epsilon", "lr", "inner_lr", "outer_lr", "inner_clip", "l2n_lr",
          "l2n_shaper_lr", "l2n_noise_start", "l2n_noise_end")


def validate(cfg: CubicConfig) -> CubicConfig:
    """Raises ValueError naming the first inconsistent field."""

    def fail(name, why):
        raise ValueError(f"CubicConfig.{name} {why}, got {getattr(cfg, name)}")

    for name in _COUNTS:
        if getattr(cfg, name) < 1:
            fail(name, "must be >= 1")
    for name in _RATES:
        if not getattr(cfg, name) > 0:
            fail(name, "must be > 0")
    for name in ("l2n_warmup", "l2n_pretrain"):
        if getattr(cfg, name) < 0:
            fail(name, "must be >= 0")
    if cfg.l2n_shaper not in ("set", "mlp"):
        fail("l2n_shaper", "must be 'set' or 'mlp'")
    if cfg.k >= cfg.n_items:
        fail("k", f"must be < n_items ({cfg.n_items})")
    if cfg.n_fit < 1:
        fail("n_valid", f"must be < n_train ({cfg.n_train})")
    for name in ("batch", "inner_batch", "implicit_batch"):
        if getattr(cfg, name) > cfg.n_fit:
            fail(name, f"exceeds the {cfg.n_fit} training instances")
    return cfg


class Data(NamedTuple):
    """Features and utilities, [instances, n_items] each (one feature per item)."""

    x_fit: jax.Array
    y_fit: jax.Array
    x_valid: jax.Array
    y_valid: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def utility(x: jax.Array) -> jax.Array:
    """The true utility ``10 (x^3 - 0.65 x)``."""
    return 10.0 * (x**3 - 0.65 * x)


def make_data(cfg: CubicConfig) -> Data:
    """The fixed data set of ``cfg.data_seed`` (train/validation and test draws)."""
    key_train, key_test = jax.random.split(jax.random.key(cfg.data_seed))
    x = jax.random.uniform(
        key_train, (cfg.n_train, cfg.n_items), minval=-1.0, maxval=1.0
    )
    x_test = jax.random.uniform(
        key_test, (cfg.n_test, cfg.n_items), minval=-1.0, maxval=1.0
    )
    xv, xf = x[: cfg.n_valid], x[cfg.n_valid :]
    return Data(xf, utility(xf), xv, utility(xv), x_test, utility(x_test))


# ------------------------------------------------------------------ model and losses
def init_predictor(key: jax.Array) -> dict:
    """Linear predictor, weight and bias U(-1, 1) (a PyTorch Linear of fan-in 1)."""
    key_w, key_b = jax.random.split(key)
    u = jax.random.uniform
    return {
        "w": u(key_w, (), minval=-1.0, maxval=1.0),
        "b": u(key_b, (), minval=-1.0, maxval=1.0),
    }


def predict(theta: dict, x: jax.Array) -> jax.Array:
    return theta["w"] * x + theta["b"]


def soft_objective(cfg: CubicConfig, pred: jax.Array, y: jax.Array) -> jax.Array:
    """Utility of the soft top-k of ``pred``: [B, n] -> [B]."""
    z = softsort.soft_top_k(pred, cfg.k, cfg.epsilon, cfg.sinkhorn_iters)
    return jnp.sum(z * y, axis=-1)


def dfl_loss(
    cfg: CubicConfig, pred: jax.Array, y: jax.Array, alpha: float
) -> jax.Array:
    """Mean over instances of ``-soft objective + alpha * MSE``."""
    mse = jnp.mean((pred - y) ** 2, axis=-1)
    return jnp.mean(-soft_objective(cfg, pred, y) + alpha * mse)


def decision_quality(cfg: CubicConfig, pred: jax.Array, y: jax.Array) -> jax.Array:
    """Normalised DQ of the hard top-k decisions of ``pred`` [B, n] (a scalar)."""
    obj = jnp.mean(jnp.sum(softsort.hard_top_k(pred, cfg.k) * y, axis=-1))
    opt = jnp.mean(jnp.sum(jax.lax.top_k(y, cfg.k)[0], axis=-1))
    rand = cfg.k * jnp.mean(y)
    return (obj - rand) / (opt - rand)


def _sample(key: jax.Array, n: int, size: int) -> jax.Array:
    """``size`` distinct instance indices out of ``n``."""
    return jax.random.permutation(key, n)[:size]


# ------------------------------------------------------------------ early stopping
class Best(NamedTuple):
    loss: jax.Array  # () best validation loss so far
    kept: Any  # what the caller keeps at that validation
    round: jax.Array  # () int32, its round
    bad: jax.Array  # () int32, validations since it
    rounds: jax.Array  # () int32, rounds run
    diverged: jax.Array  # () bool, some validation loss was NaN/inf


def early_stopping(cfg: CubicConfig, state: Any, round_fn, val_fn, keep_fn) -> Best:
    """Validate, then stop or run ``round_fn(r, state)``; a lax.while_loop.

    ``round_fn`` runs the ``val_every`` iterations of round r (its keys derive from
    the global iteration counter, so chunking would not change them).
    """

    def cond(carry):
        r, _, best = carry
        return (r < cfg.n_rounds) & (best.bad < cfg.patience)

    def body(carry):
        r, state, best = carry
        loss = val_fn(state)
        better = loss < best.loss  # NaN never improves
        pick = lambda new, old: jax.tree.map(
            lambda a, b: jnp.where(better, a, b), new, old
        )
        best = Best(
            jnp.where(better, loss, best.loss),
            pick(keep_fn(state), best.kept),
            jnp.where(better, r, best.round),
            jnp.where(better, 0, best.bad + 1),
            r + 1,
            best.diverged | ~jnp.isfinite(loss),
        )
        # The updates after the stopping validation are never kept.
        state = round_fn(r, state)
        return r + 1, state, best

    zero = jnp.array(0, jnp.int32)
    best = Best(
        jnp.array(jnp.inf, jnp.float32),
        keep_fn(state),
        zero,
        zero,
        zero,
        jnp.array(False),
    )
    return jax.lax.while_loop(cond, body, (zero, state, best))[2]


# ------------------------------------------------------------------ the methods
def _fixed_loss_train(cfg: CubicConfig, loss_of):
    """MSE or DFL: Adam on the predictor under ``loss_of(pred, y)``."""
    tx = optax.adam(cfg.lr)

    def train(key: jax.Array, data: Data):
        key_init, key_loop = jax.random.split(key)
        theta = init_predictor(key_init)

        def iteration(state, key_t):
            theta, opt = state
            idx = _sample(key_t, cfg.n_fit, cfg.batch)
            grad = jax.grad(
                lambda p: loss_of(predict(p, data.x_fit[idx]), data.y_fit[idx])
            )(theta)
            updates, opt = tx.update(grad, opt, theta)
            return (optax.apply_updates(theta, updates), opt), None

        def round_fn(r, state):
            keys = jax.vmap(
                lambda j: jax.random.fold_in(key_loop, r * cfg.val_every + j)
            )(jnp.arange(cfg.val_every))
            return jax.lax.scan(iteration, state, keys)[0]

        val_fn = lambda s: loss_of(predict(s[0], data.x_valid), data.y_valid)
        best = early_stopping(
            cfg,
            (theta, tx.init(theta)),
            round_fn,
            val_fn,
            lambda s: {"theta": s[0]},
        )
        return best

    return train


def make_train(method: str, cfg: CubicConfig):
    """``train(key, data) -> Best`` of one seed, and the metric network (TaskMet)."""
    validate(cfg)
    if method == "mse":
        return _fixed_loss_train(cfg, lambda p, y: jnp.mean((p - y) ** 2)), None
    if method == "dfl":
        return _fixed_loss_train(
            cfg, lambda p, y: dfl_loss(cfg, p, y, cfg.dfl_alpha)
        ), None
    if method == "taskmet":
        from . import cubic_taskmet  # it builds on this module

        return cubic_taskmet.make_train(cfg)
    if method == "loss2net":
        from . import cubic_loss2net  # it builds on this module

        return cubic_loss2net.make_train(cfg), None
    raise ValueError(f"unknown cubic method {method!r}; choose one of {METHODS}")


# ------------------------------------------------------------------ running
class Result(NamedTuple):
    """One method over seeds (leading axis S on every array)."""

    method: str
    seeds: tuple
    test_dq: np.ndarray  # [S]
    valid_dq: np.ndarray  # [S]
    valid_loss: np.ndarray  # [S] best validation loss
    best_iter: np.ndarray  # [S] iteration of the kept parameters
    stop_iter: np.ndarray  # [S] iteration of the last validation (where it stopped)
    kept: dict  # {'theta': ..., 'phi': ... (TaskMet)} stacked over seeds
    diverged: np.ndarray  # [S] bool: a validation loss was NaN/inf (the kept
    # parameters are then those of the last finite, best validation)
    compile_s: float
    run_s: float
    metric: Any = None  # taskmet.MetricNet (TaskMet)


def run(
    method: str,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    cfg: CubicConfig | None = None,
    data: Data | None = None,
) -> Result:
    """Trains ``method`` for every seed in one jitted, vmapped program.

    Args:
      method: 'mse', 'dfl', 'taskmet' or 'loss2net'.
      seeds: distinct run seeds (the data set is fixed by ``cfg.data_seed``).
      cfg: settings (default: the authors').
      data: the data set (default: ``make_data(cfg)``).

    Returns:
      A ``Result``; compile and run seconds are measured apart.
    """
    cfg = validate(cfg or CubicConfig())
    train, metric = make_train(method, cfg)
    data = make_data(cfg) if data is None else data
    keys = seed_keys(seeds)
    program = jax.jit(jax.vmap(train, in_axes=(0, None)))
    t0 = time.perf_counter()
    compiled = program.lower(keys, data).compile()
    t1 = time.perf_counter()
    best = jax.block_until_ready(compiled(keys, data))
    t2 = time.perf_counter()
    dq = jax.jit(
        jax.vmap(
            lambda th, x, y: decision_quality(cfg, predict(th, x), y),
            in_axes=(0, None, None),
        )
    )
    theta = best.kept["theta"]
    return Result(
        method=method,
        seeds=tuple(seeds),
        test_dq=np.asarray(dq(theta, data.x_test, data.y_test)),
        valid_dq=np.asarray(dq(theta, data.x_valid, data.y_valid)),
        valid_loss=np.asarray(best.loss),
        best_iter=np.asarray(best.round) * cfg.val_every,
        stop_iter=(np.asarray(best.rounds) - 1) * cfg.val_every,
        kept=jax.tree.map(np.asarray, best.kept),
        diverged=np.asarray(best.diverged),
        compile_s=t1 - t0,
        run_s=t2 - t1,
        metric=metric,
    )


def metric_curve(result: Result, xs: jax.Array) -> np.ndarray:
    """The kept metric ``Lambda(x)`` of every seed at the points ``xs``: [S, len(xs)]."""
    if result.metric is None:
        raise ValueError(f"method {result.method!r} learns no metric")
    apply = lambda phi: result.metric.apply(phi, jnp.asarray(xs)[:, None])[:, 0, 0]
    return np.asarray(jax.vmap(apply)(result.kept["phi"]))
