"""Loss2Net's predictor (paper Fig. 2, appendix B) as pure (init, apply) functions.

This module and ``l2n_jax.shaper_net`` are the only ones that import flax.linen.
Everything else sees ``Network(init, apply)`` with plain parameter pytrees, so
states stack under ``jax.vmap`` and no module object lives in the training state.

* Predictor = one individual regressor (IR) per input series + an assembler MLP. IRs
  are vmapped over the series axis with stacked parameters (one batched matmul
  instead of ``n_series`` small ones; an LSTM IR of a single series runs unbatched,
  with the same parameters). An IR is an MLP over the flattened window or the
  paper's stacked LSTM, written out by hand for speed (``lstm.lstm_layer``: input
  projections hoisted out of the time loop, fused gates, a hand-written backward
  pass). Each IR emits a feature vector and its own one-step forecast of its series
  (the target of IR pre-training): a linear head on the features (paper), or, with
  ``Config.forecast_skip`` (a deviation, see BUILD_NOTES.md), the last value plus a
  learned change. The assembler sees all features and forecasts plus the
  exploration noise ``eps`` (paper 3.3) and emits the ``m`` decisions; with
  ``forecast_skip`` it also has a linear path from the forecasts, initialised so
  that the untrained predictor is persistence.
* Ablations of the predictor (paper Table 3): ``Config.predictor_kind='monolithic'``
  replaces the IRs by one block of the IR kind over all series at once (then the
  assembler), "bm-monolithic"; ``Config.split_irs`` drops the assembler (IR s
  decides for series s).
* The loss shaper, the other network, is built in ``l2n_jax.shaper_net``.
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2n_jax import heads, lstm
from l2n_jax.config import Config
from l2n_jax.heads import ADMIT_LOGIT0

PyTree = Any


class Network(NamedTuple):
    """A network as two pure functions: ``init(key) -> params``, ``apply(params, *x)``.

    A predictor also has ``raw(params, inputs, eps) -> (raw outputs, forecasts)``, what
    its decision head (``l2n_jax.heads``) makes decisions of; ``apply`` returns the
    head's evaluation decisions.
    """

    init: Callable[[jax.Array], PyTree]
    apply: Callable[..., Any]
    raw: Callable[..., Any] | None = None


def _ir_head(x, h, skip):
    if not skip:
        return nn.Dense(1)(h)[:, 0]
    # The IR predicts the change from the last value, so an untrained IR already
    # forecasts as well as persistence (the practitioner's first baseline).
    return x[:, -1, 0] + nn.Dense(1, kernel_init=nn.initializers.zeros)(h)[:, 0]


class _MLPIR(nn.Module):
    hidden: tuple[int, ...]
    skip: bool
    head: bool = True  # False: features only (the monolithic block), forecast None

    @nn.compact
    def __call__(self, x):  # x: [B, lookback, F]
        h = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return h, _ir_head(x, h, self.skip) if self.head else None


def _recurrent_init(key, shape, dtype=jnp.float32):
    """An orthogonal [H, H] block per gate, as flax's LSTM cells initialise them."""
    block = nn.initializers.orthogonal()
    keys = jax.random.split(key, 4)
    return jnp.concatenate([block(k, (shape[0], shape[0]), dtype) for k in keys], -1)


class _LSTMIR(nn.Module):
    """Stacked LSTM layers over the window; features = relu(last hidden state).

    Standard LSTM (sigmoid input/forget/output gates, tanh candidate and cell
    output, zero initial state), see ``lstm_layer``. Initialisation is that of
    flax's LSTM cells: lecun-normal input kernel, an orthogonal block per gate in
    the recurrent kernel, zero bias (no forget-gate bias of 1), so training starts
    as with the ``nn.OptimizedLSTMCell`` layers this replaced.
    """

    hidden: tuple[int, ...]
    skip: bool
    unroll: int = 32
    head: bool = True  # False: features only (the monolithic block), forecast None

    @nn.compact
    def __call__(self, x):  # x: [B, lookback, F]
        h = x
        for n, width in enumerate(self.hidden):
            w_ih = self.param(f"w_ih_{n}", nn.initializers.lecun_normal(),
                              (h.shape[-1], 4 * width))
            w_hh = self.param(f"w_hh_{n}", _recurrent_init, (width, 4 * width))
            bias = self.param(f"b_{n}", nn.initializers.zeros, (4 * width,))
            last = n + 1 == len(self.hidden)
            h = lstm.lstm_layer(h, w_ih, w_hh, bias, not last, self.unroll)
        h = nn.relu(h)  # the last layer returned only its last state, [B, H]
        return h, _ir_head(x, h, self.skip) if self.head else None


class _Predictor(nn.Module):
    ir_kind: str
    ir_hidden: tuple[int, ...]
    assembler: tuple[int, ...]
    decision_dim: int
    feed_eps: bool
    skip: bool
    split: bool = False
    admit: bool = False  # an admission logit per decision after the amounts
    margin: str = ""  # a margin per decision after the forecasts: 'stopped' | 'shared'

    @nn.compact
    def __call__(self, inputs, eps):  # inputs: [B, S, L, F]; eps: [B, m]
        ir_cls = _MLPIR if self.ir_kind == "mlp" else _LSTMIR
        if inputs.shape[1] == 1 and self.ir_kind == "lstm":
            # One series: the same parameters (leading axis of size 1, as under
            # nn.vmap), but the IR runs unbatched. XLA fuses the LSTM's steps less
            # well around a size-1 batch axis: the predictor's forward+backward
            # measured 10% slower under nn.vmap.
            irs = nn.map_variables(
                ir_cls, "params",
                trans_in_fn=lambda v: jax.tree.map(lambda a: a[0], v),
                trans_out_fn=lambda v: jax.tree.map(lambda a: a[None], v),
                init=True, mutable=True,
            )(self.ir_hidden, self.skip, name="irs")
            features, forecasts = jax.tree.map(lambda a: a[:, None], irs(inputs[:, 0]))
        else:
            irs = nn.vmap(
                ir_cls,
                in_axes=1,
                out_axes=1,
                variable_axes={"params": 0},
                split_rngs={"params": True},
            )(self.ir_hidden, self.skip, name="irs")
            features, forecasts = irs(inputs)  # [B, S, H], [B, S]
        if self.split:  # bm-split: each IR decides for its own series, no mixing
            if self.admit:  # ... and admits it from its own features
                kernel = self.param("admit_kernel", nn.initializers.zeros,
                                    features.shape[1:])
                bias = self.param("admit_bias", nn.initializers.constant(ADMIT_LOGIT0),
                                  features.shape[1:2])
                logits = jnp.einsum("bsh,sh->bs", features, kernel) + bias
                return jnp.concatenate([forecasts, logits], -1), forecasts
            return forecasts, forecasts
        parts = [features.reshape(features.shape[0], -1), forecasts]
        if self.feed_eps:
            parts.append(eps)
        h = jnp.concatenate(parts, axis=-1)
        out = _assemble(h, forecasts, self.assembler, self.decision_dim, self.skip,
                        self.admit, self.margin)
        return out, forecasts


def _assemble(h, forecasts, hidden, decision_dim, skip, admit=False, margin=""):
    """The assembler MLP on ``h`` and its output layer: [B, *] -> decisions [B, m]
    (with ``admit``, [B, 2m]: the amounts, then an admission logit per decision;
    with ``margin``, [B, 2m]: the forecasts, then a margin per decision, read from
    the features with their gradient stopped or shared; ``heads.MARGIN``).

    Called inside a predictor's compact ``__call__``: its layers are the caller's.
    """
    for width in hidden:
        h = nn.relu(nn.Dense(width)(h))
    amounts = _amounts(h, forecasts, decision_dim, skip)
    if margin:
        # 'stopped': the shaper moves the margin's own read-out only and the
        # forecast stays MSE's; 'shared': it also shapes the features both read.
        feats = h if margin == "shared" else jax.lax.stop_gradient(h)
        r = nn.Dense(decision_dim, kernel_init=nn.initializers.zeros, name="margin")(feats)
        return jnp.concatenate([amounts, r], -1)
    if not admit:
        return amounts
    logits = nn.Dense(decision_dim, kernel_init=nn.initializers.zeros,
                      bias_init=nn.initializers.constant(ADMIT_LOGIT0), name="admit")(h)
    return jnp.concatenate([amounts, logits], -1)


def _amounts(h, forecasts, decision_dim, skip):
    if not skip:
        return nn.Dense(decision_dim)(h)
    # A linear path from the IR forecasts to the decisions, beside the ReLU
    # stack: decisions that are (shifted) combinations of forecasts stay easy.
    # Initialised so the untrained predictor outputs the IR forecasts themselves
    # (m == n_series) or their mean (otherwise): the persistence forecast.
    n_series = forecasts.shape[-1]
    if n_series == decision_dim:
        skip_init = lambda k, s, d=jnp.float32: jnp.eye(s[0], s[1], dtype=d)
    else:
        skip_init = nn.initializers.constant(1.0 / n_series)
    path = nn.Dense(decision_dim, use_bias=False, kernel_init=skip_init, name="forecast_skip")
    head = nn.Dense(decision_dim, kernel_init=nn.initializers.zeros)
    return head(h) + path(forecasts)


class _Monolithic(nn.Module):
    """bm-monolithic (paper Table 3): no per-series IRs. One block of the IR kind
    (MLP over the flattened window, or stacked LSTM) sees every series at once, as
    the features of one sequence; the assembler MLP (with eps) maps its features to
    the decisions. Its "IR forecasts" are the series' last values (persistence, no
    parameters): the IR term of MSE pre-training is then a constant, and with
    ``forecast_skip`` the untrained predictor outputs persistence, as Loss2Net's.
    """

    ir_kind: str
    hidden: tuple[int, ...]
    assembler: tuple[int, ...]
    decision_dim: int
    feed_eps: bool
    skip: bool
    admit: bool = False
    margin: str = ""

    @nn.compact
    def __call__(self, inputs, eps):  # inputs: [B, S, L, F]; eps: [B, m]
        b, n_series, lookback, n_features = inputs.shape
        x = jnp.swapaxes(inputs, 1, 2).reshape(b, lookback, n_series * n_features)
        block = _MLPIR if self.ir_kind == "mlp" else _LSTMIR
        h, _ = block(self.hidden, False, head=False, name="block")(x)
        last = inputs[:, :, -1, 0]  # [B, S]
        parts = [h, eps] if self.feed_eps else [h]
        h = jnp.concatenate(parts, axis=-1)
        out = _assemble(h, last, self.assembler, self.decision_dim, self.skip, self.admit,
                        self.margin)
        return out, last


def predict(predictor: Network, params, inputs, decision_dim: int):
    """The predictor's decisions with eps = 0: inputs [B, S, L, F] -> [B, m]."""
    eps = jnp.zeros((inputs.shape[0], decision_dim), jnp.float32)
    return predictor.apply(params, inputs, eps)[0]


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
    head = heads.make_head(config)
    if config.split_irs and input_shape[0] != decision_dim:
        raise ValueError(
            f"Config.split_irs needs one input series per decision, got {input_shape[0]} "
            f"series and {decision_dim} decisions"
        )
    if head.name in ("margin_net", "quantile_net"):  # a forecaster, a margin network
        n_forecasts = head.width(decision_dim) - decision_dim
        module = _ForecastAndMargin(_module(config, n_forecasts, "", ""),
                                    _module(config, decision_dim, "", "shared"))
    else:
        margin = {"margin": "stopped", "margin_shared": "shared"}.get(head.name, "")
        module = _module(config, decision_dim, head.name.startswith("admit"), margin)
    return _network(module, input_shape, decision_dim, head)


def _module(config: Config, decision_dim: int, admit: bool, margin: str) -> nn.Module:
    ir_hidden = config.ir_mlp if config.ir_kind == "mlp" else config.predictor_lstm
    if config.predictor_kind == "monolithic":
        return _Monolithic(config.ir_kind, ir_hidden, config.assembler, decision_dim,
                           config.feed_eps, config.forecast_skip, admit, margin)
    return _Predictor(config.ir_kind, ir_hidden, config.assembler, decision_dim,
                      config.feed_eps, config.forecast_skip, config.split_irs, admit,
                      margin)


class _ForecastAndMargin(nn.Module):
    """``decision_head='margin_net'``: the forecasts of one predictor (trained by MSE
    alone, ``heads.MARGIN_NET``) beside the margins of a second of the same shape
    (its zero-initialised margin read-out and the features under it, trained only
    through the shaper; its own amounts are unused). ``'quantile_net'``: the
    forecaster emits K quantiles per decision (``heads.QUANTILE_NET``)."""

    forecaster: nn.Module
    margin_net: nn.Module

    def __call__(self, inputs, eps):
        f, forecasts = self.forecaster(inputs, eps)
        raw, _ = self.margin_net(inputs, eps)
        return jnp.concatenate([f, raw[..., raw.shape[-1] // 2:]], -1), forecasts


def _network(module, input_shape, decision_dim, head=heads.AMOUNT) -> Network:
    example_x = jnp.zeros((1, *input_shape), jnp.float32)
    example_eps = jnp.zeros((1, decision_dim), jnp.float32)

    def init(key):
        return module.init(key, example_x, example_eps)["params"]

    def raw(params, inputs, eps):
        return module.apply({"params": params}, inputs, eps)

    def apply(params, inputs, eps):
        out, forecasts = raw(params, inputs, eps)
        return head.decide(out), forecasts

    return Network(init, apply, raw)
