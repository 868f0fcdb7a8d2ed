"""The hidden system of ``acra`` v2: reservations per period, published QoE models.

Issue 19, items 2-3. Before each period of ``H`` five-minute slots (default 12,
one hour) the operator reserves a rate ``a_s`` for each of ``S`` clients, held for
the whole period; ``a_s <= ACCEPT_EPS`` rejects client ``s``. Demands
``d_{s,h}`` (scaled: 1 = the client's training peak) are then revealed slot by
slot; QoE, revenue and costs are accounted per slot. The metric
``cost(decision [S], obs [S * H]) -> ()`` (obs = the period's demands, client
major) is pure jnp; the QoE models and every constant below stay hidden.

Per admitted client and slot, with the delivered fraction ``r = a'_s / d_{s,h}``:

* **VoIP**, ITU-T G.107 E-model: traffic above the reserved rate is dropped,
  packet loss ``Ppl = 100 (1 - r)+`` %, ``Ie_eff = Ie + (95 - Ie) Ppl /
  (Ppl / BurstR + Bpl)`` with G.711 + PLC (``Ie`` = 0, ``Bpl`` = 25.1, ITU-T
  G.113 App. I), random loss ``BurstR`` = 1; ``R = 93.2 - Ie_eff`` (G.107
  defaults, no delay impairment); MOS from R by the G.107 Annex B formula.
  Contract: R >= 80 ("satisfied", G.109), MOS 4.03, reached at r ~ 0.96.
* **video**, IQX hypothesis (Fiedler, Hossfeld & Tran-Gia, IEEE Network 2010):
  ``MOS = 1.5 + 3.5 exp(-beta x)`` in the stalling ratio ``x = (1 - r)+ / r``
  (a player downloading at ``a`` a stream of rate ``d > a`` stalls ``d / a - 1``
  seconds per played second); alpha = 3.5 and gamma = 1.5 are Hossfeld et al.'s
  YouTube stalling fit (QoMEX 2011); beta = 0.35 is chosen (adaptive bitrate
  absorbs much of a shortfall). Contract MOS 3.5, reached at r ~ 0.38.
* **web**, ITU-T G.1030-type logarithmic law in the page load time ``T = T0 /
  r`` (``T0`` = 1 s at the full rate): ``MOS = 4.5 - 1.2 ln(T / T0)``, clipped
  to [1, 5] (1.7 at 10 s, the attention limit; slope chosen). Contract MOS 3.5,
  reached at r ~ 0.43.
* **bulk**, linear in throughput: ``MOS = 1 + 4 min(r, 1)``; elastic, contract
  MOS 1.8 (r = 0.2, a best-effort floor; chosen).

Normalised QoE ``q = clip((MOS(r) - 1) / (MOS(1) - 1), 0, 1)``, contract level
``q0`` the contract MOS on the same scale. Client ``s`` has class
``CLASSES[s % 4]`` (voip, video, web, bulk, voip, ...).

Contract, per period (sums over admitted clients; a period has H slots):

* **minimum guaranteed rate**: an admitted client gets at least ``MIN_RATE``
  (a committed rate floor, as MEF 10.3's CIR); breaks per-client scale invariance;
* **capacity**: if ``A = sum a_s > C`` every allocation is scaled by ``C / A`` and
  ``PENALTY * (A - C) * H`` is charged;
* **revenue** ``p_s d_{s,h}`` per slot (price proportional to demand), **cut** by
  ``(1 - q / q0)+`` per slot;
* **churn**: if the period's mean q is below ``CHURN_FRACTION * q0`` the client
  leaves: ``CHURN_FEE * p_s * H`` (a period of peak revenue);
* **opex** ``OPEX * a'_s * H`` per reserved unit; **fixed cost** ``FIXED * H`` per
  admitted client (per-tenant slice overhead), which also breaks scale invariance.

``cost = -profit / norm`` with the fixed ``norm = H * sum_s p_s`` (every client
at its peak, fully paid).

=================  =======================  ==================================
constant           default                  source
=================  =======================  ==================================
C                  0.5 * S                  as acra v1 (half the peaks' sum)
prices by class    1.5, 1.0, 1.0, 0.5       chosen (real-time premium)
OPEX               0.3                      as acra v1
PENALTY            1.0                      as acra v1
CHURN_FEE          1.0 (x p_s H)            as acra v1
CHURN_FRACTION     0.5                      as acra v1 (0.5 vs 0.9)
FIXED              0.05 per slot            chosen (5% of a peak slot)
MIN_RATE           0.1                      chosen (10% of the peak)
=================  =======================  ==================================
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CLASSES = ("voip", "video", "web", "bulk")
CLASS_PRICES = (1.5, 1.0, 1.0, 0.5)
CONTRACT_MOS = (4.03, 3.5, 3.5, 1.8)
CAPACITY_FRACTION = 0.5
OPEX = 0.3
PENALTY = 1.0
CHURN_FEE = 1.0
CHURN_FRACTION = 0.5
FIXED = 0.05
MIN_RATE = 0.1
ACCEPT_EPS = 0.01
DEMAND_FLOOR = 1e-3
# E-model (G.107 defaults, G.113 App. I for G.711 with packet-loss concealment).
R_DEFAULT, IE, BPL, BURST_R = 93.2, 0.0, 25.1, 1.0
VIDEO_ALPHA, VIDEO_GAMMA, VIDEO_BETA = 3.5, 1.5, 0.35
WEB_A, WEB_B = 4.5, 1.2


class Params(NamedTuple):
    """Everything the emulator knows: [S] per-client arrays and scalars."""

    cls: np.ndarray
    prices: np.ndarray
    q0: np.ndarray
    capacity: float
    horizon: int
    opex: float = OPEX
    penalty: float = PENALTY
    churn_fee: float = CHURN_FEE
    churn_fraction: float = CHURN_FRACTION
    fixed: float = FIXED
    min_rate: float = MIN_RATE
    accept_eps: float = ACCEPT_EPS


def emodel_mos(r_factor):
    """ITU-T G.107 Annex B: MOS from the transmission rating R."""
    r = jnp.clip(r_factor, 0.0, 100.0)
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def mos(cls, ratio):
    """MOS of each class at delivered fraction ``ratio`` (broadcast shapes)."""
    short = jnp.clip(1.0 - ratio, 0.0, 1.0)
    ppl = 100.0 * short
    ie_eff = IE + (95.0 - IE) * ppl / (ppl / BURST_R + BPL)
    voip = emodel_mos(R_DEFAULT - ie_eff)
    stall = short / jnp.maximum(ratio, 1e-6)
    video = VIDEO_GAMMA + VIDEO_ALPHA * jnp.exp(-VIDEO_BETA * stall)
    web = jnp.clip(WEB_A + WEB_B * jnp.log(jnp.maximum(ratio, 1e-6)), 1.0, 5.0)
    bulk = 1.0 + 4.0 * jnp.clip(ratio, 0.0, 1.0)
    return jnp.select([cls == 0, cls == 1, cls == 2], [voip, video, web], bulk)


def qoe(cls, ratio):
    """Normalised QoE in [0, 1]: 0 is MOS 1, 1 is the MOS at the full rate."""
    full = mos(cls, jnp.ones_like(ratio))
    return jnp.clip((mos(cls, ratio) - 1.0) / (full - 1.0), 0.0, 1.0)


def params(n_clients: int, horizon: int = 12, capacity: float | None = None,
           classes=None, **constants) -> Params:
    """Emulator parameters for S clients; ``classes`` overrides ``s % 4``."""
    cls = (np.arange(n_clients) % len(CLASSES) if classes is None
           else np.asarray(classes, np.int32))
    if cls.shape != (n_clients,) or cls.min() < 0 or cls.max() >= len(CLASSES):
        raise ValueError(f"acra_qoe: classes must be {n_clients} ints in 0..3")
    full = np.asarray(mos(jnp.asarray(cls), jnp.ones(n_clients)))
    q0 = (np.asarray(CONTRACT_MOS)[cls] - 1.0) / (full - 1.0)
    cap = CAPACITY_FRACTION * n_clients if capacity is None else float(capacity)
    if not cap > 0 or horizon < 1:
        raise ValueError(f"acra_qoe: need capacity > 0, horizon >= 1: {cap}, {horizon}")
    unknown = set(constants) - set(Params._fields[5:])
    if unknown:
        raise ValueError(f"acra_qoe: unknown constants {sorted(unknown)}")
    return Params(cls.astype(np.int32), np.asarray(CLASS_PRICES, np.float32)[cls],
                  q0.astype(np.float32), cap, int(horizon),
                  **{k: float(v) for k, v in constants.items()})


def client_profit(alloc, demand, p: Params):
    """Per-client profit of a period at EFFECTIVE allocations (no over-booking).

    Args:
      alloc: [..., S] reserved rates (0 = rejected; others already >= min_rate).
      demand: [S, H] the period's demands.
      p: Params.

    Returns:
      dict of [..., S]: revenue, cut, churn, opex, fixed, profit.
    """
    admit = alloc > 0.0
    d = jnp.maximum(demand, 0.0)
    ratio = alloc[..., None] / jnp.maximum(d, DEMAND_FLOOR)
    q = qoe(jnp.asarray(p.cls)[:, None], ratio)
    q0 = jnp.asarray(p.q0)[:, None]
    rev_slot = jnp.asarray(p.prices)[:, None] * d
    revenue = jnp.where(admit, rev_slot.sum(-1), 0.0)
    cut = jnp.where(admit, (rev_slot * jnp.maximum(0.0, 1.0 - q / q0)).sum(-1), 0.0)
    churned = admit & (q.mean(-1) < p.churn_fraction * jnp.asarray(p.q0))
    h = p.horizon
    out = {
        "revenue": revenue, "cut": cut,
        "churn": jnp.where(churned, p.churn_fee * jnp.asarray(p.prices) * h, 0.0),
        "opex": p.opex * alloc * h,
        "fixed": jnp.where(admit, p.fixed * h, 0.0),
    }
    out["profit"] = out["revenue"] - out["cut"] - out["churn"] - out["opex"] - out["fixed"]
    return out


def effective(decision, p: Params):
    """(scaled allocations [S], excess A - C): min rate, then capacity scaling."""
    decision = jnp.asarray(decision, jnp.float32)
    admit = decision > p.accept_eps
    alloc = jnp.where(admit, jnp.maximum(decision, p.min_rate), 0.0)
    total = alloc.sum()
    excess = jnp.maximum(total - p.capacity, 0.0)
    return alloc * jnp.minimum(1.0, p.capacity / jnp.maximum(total, 1e-12)), excess


def profit_breakdown(decision, obs, p: Params) -> dict:
    """One period, term by term (pure jnp): decision [S], obs [S * H] -> scalars."""
    s = len(p.cls)
    alloc, excess = effective(decision, p)
    terms = client_profit(alloc, jnp.reshape(jnp.asarray(obs, jnp.float32),
                                             (s, p.horizon)), p)
    out = {k: v.sum() for k, v in terms.items()}
    out["penalty"] = p.penalty * excess * p.horizon
    out["profit"] = out["profit"] - out["penalty"]
    out["normalised_profit"] = out["profit"] / (p.horizon * float(np.sum(p.prices)))
    out["accepted"] = jnp.sum(alloc > 0)
    out["binding"] = alloc.sum() >= p.capacity - 1e-4
    return out


def make_emulator(n_clients: int, horizon: int = 12, **kwargs):
    """The hidden metric: ``cost(decision [S], obs [S * H]) = -normalised profit``."""
    p = params(n_clients, horizon, **kwargs)

    def acra_qoe_cost(decision, obs):
        return -profit_breakdown(decision, obs, p)["normalised_profit"]

    return acra_qoe_cost


def evaluate(decisions, demands, p: Params) -> dict:
    """Mean normalised profit etc. over periods: [N, S], [N, S, H] -> floats."""
    f = _batched(p)
    out = f(jnp.asarray(decisions, jnp.float32),
            jnp.asarray(np.reshape(demands, (len(demands), -1)), jnp.float32))
    return {k: float(np.mean(v)) for k, v in out.items()}


_CACHE = {}


def _batched(p: Params):
    key = (tuple(p.cls), p[3:])
    if key not in _CACHE:
        _CACHE[key] = jax.jit(jax.vmap(lambda d, o: profit_breakdown(d, o, p)))
    return _CACHE[key]
