"""The paper's LSTM layer, written out by hand for speed on CPU (``lstm_layer``):
input projections hoisted out of the time loop, the four gates fused, and a
hand-written backward pass (``jax.custom_vjp``). Used by ``nets``' LSTM IR.
"""

import functools

import jax
import jax.numpy as jnp

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
