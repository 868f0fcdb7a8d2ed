"""A fast float32 sine for the SIREN loss shaper.

XLA's CPU backend evaluates ``sin``/``cos`` one element at a time through libm
(about 6 ns an element on our 2-core machine, 7x a fused multiply-add pass), and
the shaper's sines were over half of a netalloc train step (BUILD_NOTES §10). This
version is plain arithmetic, so XLA fuses and vectorises it:

* Range reduction ``r = x - 2 pi k``, ``k = round(x / 2 pi)``, with 2 pi split in
  two constants (Cody-Waite): ``k * 6.28125`` is exact for ``|k| < 2**16``, so the
  reduction loses nothing for ``|x|`` up to about 4e5.
* ``sin(r)`` and ``cos(r)`` on ``[-pi, pi]`` as Taylor polynomials of degree 17 and
  16 (truncation error below 2e-7); Horner's rule.

The absolute error against float64 ``sin`` is below 1e-6 for ``|x| <= 1000``, the
size of an input's own float32 rounding there. NaN and inf give NaN, as ``jnp.sin``.
``sin`` has a custom JVP whose derivative is ``cos`` (the polynomial's own
derivative would be less accurate).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

_TWO_PI_HI = 6.28125  # 201 / 32: eight significant bits, so k * _TWO_PI_HI is exact
_TWO_PI_LO = np.float32(2.0 * math.pi - _TWO_PI_HI)
_SIN = [(-1) ** n / math.factorial(2 * n + 1) for n in range(9)]  # r, r^3, .., r^17
_COS = [(-1) ** n / math.factorial(2 * n) for n in range(9)]  # 1, r^2, .., r^16


def _reduce(x):
    k = jnp.round(x * (1.0 / (2.0 * math.pi)))
    return x - k * _TWO_PI_HI - k * _TWO_PI_LO


def _horner(coefficients, r2):
    p = jnp.full_like(r2, coefficients[-1])
    for c in coefficients[-2::-1]:
        p = p * r2 + c
    return p


@jax.custom_jvp
def sin(x):
    """Elementwise float32 sine (module docstring)."""
    r = _reduce(x)
    return r * _horner(_SIN, r * r)


def cos(x):
    """Elementwise float32 cosine, the derivative of ``sin``."""
    r = _reduce(x)
    return _horner(_COS, r * r)


@sin.defjvp
def _sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return sin(x), cos(x) * t
