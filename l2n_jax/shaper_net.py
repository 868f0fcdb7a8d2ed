"""Loss2Net's loss shaper (paper Fig. 2, appendix B) as a ``nets.Network``.

A SIREN MLP ``sin(omega0 (W h + b))`` with omega0 = 30 in the first layer and 1
after (Sitzmann et al. 2020 initialisation), or a ReLU MLP for the ablation; scalar
linear output. The sine is ``fastmath.sin`` by default: XLA's CPU sine is scalar
libm code and was over half of a train step. With ``Config.split_shaper``, m
independent shapers with stacked parameters, shaper i on [decision i, obs]
("bm-split").
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2n_jax import fastmath
from l2n_jax.config import Config
from l2n_jax.nets import Network


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


def make_shaper(config: Config, input_dim: int, decision_dim: int | None = None) -> Network:
    """Builds the loss shaper: ``apply(params, x [B, input_dim]) -> [B]``.

    With ``config.split_shaper``, ``decision_dim`` = m shapers with stacked
    parameters (leading axis m): x = [decisions [B, m], seen [B, input_dim - m]],
    shaper i sees [decision i, seen] and ``apply`` returns [B, m]. Its ``apply``
    reads m from the parameters, so ``decision_dim`` is needed by ``init`` only.
    """
    module = _Shaper(
        config.shaper_hidden, config.shaper_activation, config.omega0_first, config.omega0,
        config.shaper_sin,
    )
    if config.split_shaper:
        return _split_shaper(module, input_dim, decision_dim)
    example = jnp.zeros((1, input_dim), jnp.float32)

    def init(key):
        return module.init(key, example)["params"]

    def apply(params, x):
        return module.apply({"params": params}, x)

    return Network(init, apply)


def split_inputs(x, m: int):
    """[decisions [B, m], seen [B, k]] -> [m, B, 1 + k]: decision i with the seen."""
    seen = x[:, m:]
    return jax.vmap(lambda d: jnp.concatenate([d[:, None], seen], -1), 1)(x[:, :m])


def _split_shaper(module, input_dim: int, decision_dim: int | None) -> Network:
    """``m`` independent shapers (bm-split), stacked on a leading axis."""

    def init(key):
        if decision_dim is None:
            raise ValueError("make_shaper: a split shaper's init needs decision_dim")
        example = jnp.zeros((1, 1 + input_dim - decision_dim), jnp.float32)
        keys = jax.random.split(key, decision_dim)
        return jax.vmap(lambda k: module.init(k, example)["params"])(keys)

    def apply(params, x):
        m = jax.tree.leaves(params)[0].shape[0]
        out = jax.vmap(lambda p, xi: module.apply({"params": p}, xi))(params, split_inputs(x, m))
        return out.T  # [B, m]

    return Network(init, apply)
