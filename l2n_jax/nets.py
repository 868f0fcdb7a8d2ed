"""The two networks of Loss2Net (paper Fig. 2, appendix B), as pure (init, apply) pairs.

This is the only module that imports flax. Everything else sees ``Network(init,
apply)`` with plain parameter pytrees, so states stack under ``jax.vmap`` and no
module object lives in the training state.

* Predictor = one individual regressor (IR) per input series + an assembler MLP.
  IRs are vmapped over the series axis with stacked parameters (one batched matmul
  instead of ``n_series`` small ones). Each IR emits a feature vector and its own
  one-step forecast of its series (last value + a learned change, the target of IR
  pre-training); the assembler sees all features and forecasts plus the exploration
  noise ``eps`` (paper 3.3) and emits the ``m`` decisions. With
  ``Config.forecast_skip`` (a deviation from the paper, see BUILD_NOTES.md) IRs
  forecast last value + a learned change and the assembler has a linear path from
  the forecasts, initialised so the untrained predictor is persistence.
* Loss shaper = a SIREN MLP ``sin(omega0 (W h + b))`` with omega0 = 30 in the first
  layer and 1 after (Sitzmann et al. 2020 initialisation), or a ReLU MLP for the
  ablation; scalar linear output.
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2n_jax.config import Config

PyTree = Any


class Network(NamedTuple):
    """A network as two pure functions: ``init(key) -> params``, ``apply(params, *x)``."""

    init: Callable[[jax.Array], PyTree]
    apply: Callable[..., Any]


def _ir_head(x, h, skip):
    if not skip:
        return nn.Dense(1)(h)[:, 0]
    # The IR predicts the change from the last value, so an untrained IR already
    # forecasts as well as persistence (the practitioner's first baseline).
    return x[:, -1, 0] + nn.Dense(1, kernel_init=nn.initializers.zeros)(h)[:, 0]


class _MLPIR(nn.Module):
    hidden: tuple[int, ...]
    skip: bool

    @nn.compact
    def __call__(self, x):  # x: [B, lookback, F]
        h = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return h, _ir_head(x, h, self.skip)


class _LSTMIR(nn.Module):
    hidden: tuple[int, ...]
    skip: bool

    @nn.compact
    def __call__(self, x):  # x: [B, lookback, F]
        h = x
        for width in self.hidden:
            h = nn.RNN(nn.OptimizedLSTMCell(width))(h)
        h = nn.relu(h[:, -1])
        return h, _ir_head(x, h, self.skip)


class _Predictor(nn.Module):
    ir_kind: str
    ir_hidden: tuple[int, ...]
    assembler: tuple[int, ...]
    decision_dim: int
    feed_eps: bool
    skip: bool
    split: bool = False

    @nn.compact
    def __call__(self, inputs, eps):  # inputs: [B, S, L, F]; eps: [B, m]
        ir_cls = _MLPIR if self.ir_kind == "mlp" else _LSTMIR
        irs = nn.vmap(
            ir_cls,
            in_axes=1,
            out_axes=1,
            variable_axes={"params": 0},
            split_rngs={"params": True},
        )(self.ir_hidden, self.skip, name="irs")
        features, forecasts = irs(inputs)  # [B, S, H], [B, S]
        if self.split:  # bm-split: each IR decides for its own series, no mixing
            return forecasts, forecasts
        parts = [features.reshape(features.shape[0], -1), forecasts]
        if self.feed_eps:
            parts.append(eps)
        h = jnp.concatenate(parts, axis=-1)
        for width in self.assembler:
            h = nn.relu(nn.Dense(width)(h))
        if not self.skip:
            return nn.Dense(self.decision_dim)(h), forecasts
        # A linear path from the IR forecasts to the decisions, beside the ReLU
        # stack: decisions that are (shifted) combinations of forecasts stay easy.
        # Initialised so the untrained predictor outputs the IR forecasts themselves
        # (m == n_series) or their mean (otherwise): the persistence forecast.
        n_series = forecasts.shape[-1]
        if n_series == self.decision_dim:
            skip_init = lambda k, s, d=jnp.float32: jnp.eye(s[0], s[1], dtype=d)
        else:
            skip_init = nn.initializers.constant(1.0 / n_series)
        skip = nn.Dense(
            self.decision_dim, use_bias=False, kernel_init=skip_init, name="forecast_skip"
        )
        head = nn.Dense(self.decision_dim, kernel_init=nn.initializers.zeros)
        return head(h) + skip(forecasts), forecasts


class _SirenLayer(nn.Module):
    width: int
    omega0: float
    first: bool

    @nn.compact
    def __call__(self, h):
        fan_in = h.shape[-1]
        if self.first:
            w_bound = 1.0 / fan_in
        else:
            w_bound = (6.0 / fan_in) ** 0.5 / self.omega0
        b_bound = fan_in**-0.5
        kernel = self.param(
            "kernel",
            lambda k, s: jax.random.uniform(k, s, jnp.float32, -w_bound, w_bound),
            (fan_in, self.width),
        )
        bias = self.param(
            "bias",
            lambda k, s: jax.random.uniform(k, s, jnp.float32, -b_bound, b_bound),
            (self.width,),
        )
        return h @ kernel + bias


class _Shaper(nn.Module):
    hidden: tuple[int, ...]
    activation: str
    omega0_first: float
    omega0: float

    @nn.compact
    def __call__(self, x):  # x: [B, m + k]
        h = x
        if self.activation == "siren":
            for i, width in enumerate(self.hidden):
                w0 = self.omega0_first if i == 0 else self.omega0
                h = jnp.sin(w0 * _SirenLayer(width, w0, first=i == 0)(h))
            return _SirenLayer(1, 1.0, first=False)(h)[:, 0]
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(1)(h)[:, 0]


def make_predictor(config: Config, input_shape: tuple[int, int, int], decision_dim: int):
    """Builds the predictor.

    Args:
      config: the run's Config (ir_kind, IR sizes, assembler, feed_eps).
      input_shape: (n_series, lookback, n_features) of one window.
      decision_dim: m, the number of decisions.

    Returns:
      Network with ``apply(params, inputs [B,S,L,F], eps [B,m]) ->
      (decisions [B,m], ir_forecasts [B,S])``.
    """
    ir_hidden = config.ir_mlp if config.ir_kind == "mlp" else config.predictor_lstm
    if config.split_irs and input_shape[0] != decision_dim:
        raise ValueError(
            f"Config.split_irs needs one input series per decision, got {input_shape[0]} "
            f"series and {decision_dim} decisions"
        )
    module = _Predictor(
        config.ir_kind,
        ir_hidden,
        config.assembler,
        decision_dim,
        config.feed_eps,
        config.forecast_skip,
        config.split_irs,
    )
    example_x = jnp.zeros((1, *input_shape), jnp.float32)
    example_eps = jnp.zeros((1, decision_dim), jnp.float32)

    def init(key):
        return module.init(key, example_x, example_eps)["params"]

    def apply(params, inputs, eps):
        return module.apply({"params": params}, inputs, eps)

    return Network(init, apply)


def make_shaper(config: Config, input_dim: int) -> Network:
    """Builds the loss shaper: ``apply(params, x [B, input_dim]) -> [B]``."""
    module = _Shaper(
        config.shaper_hidden, config.shaper_activation, config.omega0_first, config.omega0
    )
    example = jnp.zeros((1, input_dim), jnp.float32)

    def init(key):
        return module.init(key, example)["params"]

    def apply(params, x):
        return module.apply({"params": params}, x)

    return Network(init, apply)
