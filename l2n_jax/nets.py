"""The two networks of Loss2Net (paper Fig. 2, appendix B), as pure (init, apply) pairs.

This is the only module that imports flax. Everything else sees ``Network(init,
apply)`` with plain parameter pytrees, so states stack under ``jax.vmap`` and no
module object lives in the training state.

* Predictor = one individual regressor (IR) per input series + an assembler MLP. IRs
  are vmapped over the series axis with stacked parameters (one batched matmul
  instead of ``n_series`` small ones; an LSTM IR of a single series runs unbatched,
  with the same parameters). An IR is an MLP over the flattened window or the
  paper's stacked LSTM, written out by hand for speed (``lstm_layer``: input
  projections hoisted out of the time loop, fused gates, a hand-written backward
  pass). Each IR emits a feature vector and its own one-step forecast of its series
  (the target of IR pre-training): a linear head on the features (paper), or, with
  ``Config.forecast_skip`` (a deviation, see BUILD_NOTES.md), the last value plus a
  learned change. The assembler sees all features and forecasts plus the
  exploration noise ``eps`` (paper 3.3) and emits the ``m`` decisions; with
  ``forecast_skip`` it also has a linear path from the forecasts, initialised so
  that the untrained predictor is persistence.
* Loss shaper = a SIREN MLP ``sin(omega0 (W h + b))`` with omega0 = 30 in the first
  layer and 1 after (Sitzmann et al. 2020 initialisation), or a ReLU MLP for the
  ablation; scalar linear output. The sine is ``fastmath.sin`` by default: XLA's CPU
  sine is scalar libm code and was over half of a train step.
"""

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2n_jax import fastmath
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


# The LSTM IR is written out rather than built from nn.RNN(nn.OptimizedLSTMCell),
# for speed on CPU. Forward: each layer's input projection is one
# [B*L, in] @ [in, 4H] matmul outside the time loop, and the loop holds only
# h @ W_hh, the four gates fused into one [H, 4H] kernel. Backward is written by
# hand (jax.custom_vjp): the time loop holds only dz @ W_hh^T, each weight gradient
# is one matmul over all B*L rows instead of one small matmul per time step, and
# three arrays per layer are kept for it (activated gates, cell and hidden states).
# Arrays are batch-major, [B, L, ...]: XLA then needs fewer transposes for the
# weight gradients than time-major, and the train step measured 10-20% faster.
# Windows of up to 32 steps are unrolled (a Python loop over L): a lax.scan's
# while loop costs zero-initialised output buffers, copies and dynamic slices per
# step, and with unroll=1 or 4 the train step was 15-20% slower than unrolled.


def _gate_scale(width):
    # tanh(z) = 2 sigmoid(2 z) - 1: scaling the g-gate block by 2 turns the four
    # gate activations into one sigmoid over the fused [.., 4H] pre-activations.
    return jnp.repeat(jnp.array([1.0, 1.0, 2.0, 1.0], jnp.float32), width)


def _cell(z, c, scale):
    """One LSTM step from fused pre-activations z [B, 4H] (gate order i, f, g, o).

    Returns (activated gates [B, 4H], new cell state, new hidden state).
    """
    a = jax.nn.sigmoid(z * scale) * scale - (scale - 1.0)
    i, f, g, o = jnp.split(a, 4, axis=-1)
    c = f * c + i * g
    return a, c, o * jnp.tanh(c)


def _time_loop(step, carry, xs, unroll, reverse=False):
    """``lax.scan`` of ``step`` over axis 1 (time) of ``xs``; outputs stacked on axis 1.

    A window of at most ``unroll`` steps runs as a plain Python loop (a fully
    unrolled scan); longer ones as ``lax.scan`` with that unroll factor.
    """
    n = jax.tree.leaves(xs)[0].shape[1]
    if unroll < n or n == 0:  # n == 0: lax.scan gives correctly shaped empty outputs
        def swap(tree):
            return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree)

        carry, ys = jax.lax.scan(step, carry, swap(xs), reverse=reverse, unroll=unroll)
        return carry, swap(ys)
    ys = [None] * n
    for t in reversed(range(n)) if reverse else range(n):
        carry, ys[t] = step(carry, jax.tree.map(lambda a, t=t: a[:, t], xs))
    return carry, jax.tree.map(lambda *y: jnp.stack(y, axis=1), *ys)


def _lstm_fwd(x, w_ih, w_hh, b, sequences, unroll):
    scale = _gate_scale(w_hh.shape[0])
    xw = x @ w_ih + b  # [B, L, 4H]: every time step's input projection at once
    a0, c0, h0 = _cell(xw[:, 0], 0.0, scale)  # zero initial state: no h @ W_hh yet

    def step(carry, xw_t):
        c, h = carry
        a, c, h = _cell(xw_t + h @ w_hh, c, scale)
        return (c, h), (a, c, h)

    (_, h_last), (a, c, h) = _time_loop(step, (c0, h0), xw[:, 1:], unroll)
    a, c, h = (jnp.concatenate([first[:, None], rest], axis=1) for first, rest in
               ((a0, a), (c0, c), (h0, h)))
    return (h if sequences else h_last), (x, a, c, h, w_ih, w_hh)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def lstm_layer(x, w_ih, w_hh, b, sequences=True, unroll=32):
    """One LSTM layer over a batch-major sequence, zero initial state.

    Args:
      x: [B, L, in] inputs.
      w_ih: [in, 4H] input kernel; w_hh: [H, 4H] recurrent kernel; b: [4H] bias.
        Gate blocks in order i, f, g, o.
      sequences: return every hidden state [B, L, H], or only the last [B, H].
      unroll: time steps per ``lax.scan`` iteration; a window of at most this
        many steps is unrolled completely.
    """
    return _lstm_fwd(x, w_ih, w_hh, b, sequences, unroll)[0]


def _lstm_bwd(sequences, unroll, res, ct):
    x, a, c, h, w_ih, w_hh = res
    is_g = _gate_scale(w_hh.shape[0]) > 1.0
    c_prev = jnp.concatenate([jnp.zeros_like(c[:, :1]), c[:, :-1]], axis=1)

    def dz_at(dh, dc, a_t, c_t, c_prev_t):
        i, f, g, o = jnp.split(a_t, 4, axis=-1)
        tc = jnp.tanh(c_t)
        dc = dc + dh * o * (1.0 - tc * tc)
        da = jnp.concatenate([dc * g, dc * c_prev_t, dc * i, dh * tc], -1)
        dz = da * jnp.where(is_g, 1.0 - a_t * a_t, a_t * (1.0 - a_t))  # tanh', sigmoid'
        # The division by 1 (exact: tc is finite) makes the carried cell gradient
        # an "expensive" op to XLA, which then computes it once per step. Without
        # it XLA fuses the whole elementwise dc chain into every consumer, O(L^2)
        # work: a fifth of the forward+backward time at L = 12. The divisor is
        # full-size so that XLA cannot turn the division into a multiplication.
        return dz, dc * f / (1.0 + 0.0 * tc)

    def step(carry, xs):
        dh, dc = carry
        ct_t, *state_t = xs
        dz, dc = dz_at(ct_t + dh, dc, *state_t)
        return (dz @ w_hh.T, dc), dz

    zeros = jnp.zeros_like(c[:, 0])
    if sequences:
        ct_seq, dh = ct, zeros
    else:  # only h_L was used: its cotangent enters the recurrence at the end
        ct_seq, dh = jnp.zeros_like(c), ct
    xs = (ct_seq[:, 1:], a[:, 1:], c[:, 1:], c_prev[:, 1:])
    (dh, dc), dz = _time_loop(step, (dh, zeros), xs, unroll, reverse=True)
    dz0, _ = dz_at(ct_seq[:, 0] + dh, dc, a[:, 0], c[:, 0], c_prev[:, 0])
    dz = jnp.concatenate([dz0[:, None], dz], axis=1)  # [B, L, 4H]: d loss / d z
    d_w_ih = jnp.einsum("bti,btg->ig", x, dz)
    d_w_hh = jnp.einsum("bth,btg->hg", h[:, :-1], dz[:, 1:])  # h_{t-1} meets dz_t
    return dz @ w_ih.T, d_w_ih, d_w_hh, dz.sum((0, 1))


lstm_layer.defvjp(_lstm_fwd, _lstm_bwd)


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

    @nn.compact
    def __call__(self, x):  # x: [B, lookback, F]
        h = x
        for n, width in enumerate(self.hidden):
            w_ih = self.param(f"w_ih_{n}", nn.initializers.lecun_normal(),
                              (h.shape[-1], 4 * width))
            w_hh = self.param(f"w_hh_{n}", _recurrent_init, (width, 4 * width))
            bias = self.param(f"b_{n}", nn.initializers.zeros, (4 * width,))
            last = n + 1 == len(self.hidden)
            h = lstm_layer(h, w_ih, w_hh, bias, not last, self.unroll)
        h = nn.relu(h)  # the last layer returned only its last state, [B, H]
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
    sin: str = "poly"

    @nn.compact
    def __call__(self, x):  # x: [B, m + k]
        h = x
        if self.activation == "siren":
            sin = fastmath.sin if self.sin == "poly" else jnp.sin
            for i, width in enumerate(self.hidden):
                w0 = self.omega0_first if i == 0 else self.omega0
                h = sin(w0 * _SirenLayer(width, w0, first=i == 0)(h))
            return _SirenLayer(1, 1.0, first=False)(h)[:, 0]
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(1)(h)[:, 0]


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
        config.shaper_hidden, config.shaper_activation, config.omega0_first, config.omega0,
        config.shaper_sin,
    )
    example = jnp.zeros((1, input_dim), jnp.float32)

    def init(key):
        return module.init(key, example)["params"]

    def apply(params, x):
        return module.apply({"params": params}, x)

    return Network(init, apply)
