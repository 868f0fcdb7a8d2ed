"""``acra`` (v2, issue 19): joint admission + resource allocation with real traffic
clients; ``l2n_train --usecase=acra`` runs it (``acra_v2``, the name it was built
under, is an alias). v1 (``usecases/acra.py``, PJM clients) is ``--usecase=acra_pjm``,
its negative result in BUILD_NOTES §8. For S
clients sharing a capacity C, one decision per period of H five-minute slots: the
rate reserved for each client for the whole period (0 rejects it). Clients are
calendar weeks of real 5-minute traffic (``acra_traffic``); the hidden cost is the
QoE emulator of ``acra_qoe`` (VoIP / video / web / bulk classes, contract, churn,
opex, over-booking penalty), cost = -normalised profit.

Sites (BUILD_NOTES.md §20):

* ``S1 S2 S4 S6 S8 S12``: the default, realistic setting (H = 12 = 1 h ahead,
  C = 0.5 S), where §20 found the per-client-factor baseline (c) within ~3% of the
  oracle (e) for S >= 4 (a control: little head-room).
* ``S1c .. S12c``: the contended setting (H = 72 = 6 h reserved ahead, C = 0.3 S),
  where (e)/(c) = 1.10-1.12 at S = 6, 12 (the test setting §20f suggests).

One metric serves every site: S is read from the decision's static shape and H
from the obs' (S * H); C follows from H (``CAPACITY_FRACTION``), so the two
families must keep distinct horizons.

Windows (per period, split by day of week as ``acra_traffic``: train Tue/Thu/Sat,
valid Fri, test Wed/Sun): inputs [N, S, 24 + H, 1] = each client's last 24 slots
and the same H slots a day earlier (the AR forecaster's inputs); targets [N, S] =
each client's period-mean demand (what an allocation is sized on); obs [N, S * H]
= the period's per-slot demands (client-major, as the emulator reshapes them).
Values are in units of each client's training-split peak, so inputs reaching
into Monday or the previous day may exceed 1 (nothing is clipped).

Methods (closed-form ones repeat over seeds, as v1's oracle does): ``loss2net``,
``bm_split`` and the baselines of ``acra_policies`` on the per-client AR forecasts:
``v2_knapsack`` (a), ``v2_knapsack_margin`` (b), ``v2_knapsack_factors`` (c),
``v2_oracle_demand`` (d), ``v2_oracle_qoe`` (e).
"""

import dataclasses
import functools

import jax
import numpy as np
import pandas as pd

from l2n_jax import methods
from l2n_jax.config import Config, parse_field
from l2n_jax.data import Scaler, Windows, WindowSet
from l2n_jax.methods import Options, Outcome, Task

from . import acra_policies as pol
from . import acra_qoe as qoe
from . import acra_traffic as tr
from .base import UseCase, quick_config

SIZES = (1, 2, 4, 6, 8, 12)
# Family suffix -> horizon H (slots); C = CAPACITY_FRACTION[H] * S.
FAMILIES = {"": 12, "c": 72}
CAPACITY_FRACTION = {12: qoe.CAPACITY_FRACTION, 72: 0.3}
SITES = tuple(f"S{s}{suffix}" for suffix in FAMILIES for s in SIZES)
DEFAULT_SITES = ("S4", "S12c")


def parse_site(site: str) -> tuple[int, int]:
    """``'S6c'`` -> (S = 6, H = 72); ValueError naming the sites otherwise."""
    if site not in SITES:
        raise ValueError(f"acra_v2: unknown site {site!r}; sites are {list(SITES)}")
    suffix = "c" if site.endswith("c") else ""
    return int(site[1:len(site) - len(suffix)]), FAMILIES[suffix]


def emulator_params(n_clients: int, horizon: int) -> qoe.Params:
    """The emulator's parameters for S clients at horizon H (C from H)."""
    if horizon not in CAPACITY_FRACTION:
        raise ValueError(f"acra_v2: horizon must be one of {list(CAPACITY_FRACTION)}, "
                         f"got {horizon}")
    return qoe.params(n_clients, horizon,
                      capacity=CAPACITY_FRACTION[horizon] * n_clients)


def site_params(site: str) -> qoe.Params:
    return emulator_params(*parse_site(site))


def _split(demand: np.ndarray, split: str, horizon: int) -> Windows:
    x, y = tr.windows(demand, split, horizon)  # [N, S, LAGS + H], [N, S, H]
    n = len(y)
    targets = y.mean(-1).astype(np.float32)
    return Windows(
        inputs=x[..., None].astype(np.float32),
        targets=targets,
        obs=y.reshape(n, -1).astype(np.float32),
        ir_targets=targets,  # IR pre-training forecasts each client's period mean
        current=x[:, :, tr.LAGS - 1].astype(np.float32),  # last observed slot
    )


@functools.cache
def load(site: str) -> WindowSet:
    """The site's windows (see the module docstring), split by day of week."""
    s, horizon = parse_site(site)
    c = tr.load_clients(s)
    names = tuple(f"{f}_{t:%Y%m%d}" for f, t in zip(c.families, c.starts))
    # Already scaled by each client's training peak: an identity scaler.
    scaler = Scaler(names, np.zeros(s), np.ones(s))
    train, valid, test = (_split(c.demand, k, horizon) for k in ("train", "valid", "test"))
    return WindowSet(train, valid, test, scaler, names, names)


@functools.cache
def _emulator(n_clients: int, horizon: int):
    # Built on first use, often while a training program is being traced: the
    # constants (q0 from the MOS curves) must be concrete, not tracers.
    with jax.ensure_compile_time_eval():
        p = emulator_params(n_clients, horizon)
    return lambda decision, obs: -qoe.profit_breakdown(decision, obs, p)[
        "normalised_profit"]


def make_metric():
    """The emulator's cost; S and H are read from the (static) shapes."""

    def acra_v2_cost(decision, obs):
        s = decision.shape[-1]
        return _emulator(s, obs.shape[-1] // s)(decision, obs)

    return acra_v2_cost


def get_config(quick: bool = False) -> Config:
    """acra v1's architecture (fast MLP IRs, the paper's assembler, its use-case-II
    shaper, lr_max 3e-4 tuned on v1's S4) at a budget chosen for v2 on the
    VALIDATION split: 300 epochs at batch 64 (30 of them MSE pre-training), the best
    mean validation profit over S4 and S12c of {100, 300} epochs x batch {64, 256}
    (``benchmarks/acra_v2_budget.py``, BUILD_NOTES §20i). v1's 14 epochs at batch
    256 are ~56 co-training steps on v2's ~800 training periods. The decision head
    is ``admit_diff`` with a 1% admission floor and the admission 1[d > 0] as a
    shaper input: the highest mean validation profit over all 12 sites, at 3 seeds
    of ``amount`` (0.1770), ``admit_diff`` at its 5% floor (0.1939) and this
    (0.2072; BUILD_NOTES §20l-m), at 5 seeds of ``admit_diff`` (0.1963) and this
    (0.1985, within the seeds' spread; §20n)."""
    if quick:
        return quick_config()
    return Config(
        epochs=300, pretrain_epochs=30, batch_size=64, ir_mlp=(64, 64),
        assembler=(256, 256, 128, 64), shaper_hidden=(256, 256, 256, 256, 128),
        lr_max=3e-4, replay_size=4096, log_every=60, decision_head="admit_diff",
        admit_floor=0.01, shaper_input="admission",
    )


# The head fields a study's head spec sets. A spec starts from the engine's defaults
# for them, not from get_config's, so a committed study command keeps its meaning
# when acra's default head moves (it did twice: BUILD_NOTES §20l, §20m).
HEAD_FIELDS = ("decision_head", "admit_floor", "shaper_input")


def head_config(spec: str) -> Config:
    """``head[/split][+field=value...]`` -> get_config() with that head:
    e.g. ``admit_diff+admit_floor=0.01+shaper_input=admission`` is the default,
    ``admit_diff`` the head at its engine defaults (a 5% floor, no admission
    input), ``amount/split`` bm_split's amount head (``split_irs``, no assembler).
    Unnamed head fields take ``Config``'s defaults."""
    name, *pairs = spec.split("+")
    head, _, split = name.partition("/")
    if split not in ("", "split"):
        raise ValueError(f"{spec!r}: expected head[/split][+field=value...]")
    fields = {f.name: f.default for f in dataclasses.fields(Config)}
    config = get_config().replace(**{k: fields[k] for k in HEAD_FIELDS})
    config = config.replace(decision_head=head, split_irs=bool(split))
    return config.replace(**dict(parse_field(config, t) for t in pairs))


def set_changes(admitted: np.ndarray) -> float:
    """The share of periods whose admitted set [N, S] (bool) is not the most
    frequent one: 0 for a static admission."""
    _, counts = np.unique(admitted, axis=0, return_counts=True)
    return 1.0 - counts.max() / len(admitted)


def _columns(rows: pd.DataFrame, decisions, ws: WindowSet) -> dict:
    """Profit (= -cost), the mean number of admitted clients per period, and the
    share of periods that admit another set than the seed's most frequent one."""
    admitted = np.asarray(decisions) > qoe.ACCEPT_EPS  # [seeds, N, S]
    return {"profit": -rows["cost"], "accepted": admitted.sum(-1).mean(axis=1),
            "set_changes": [set_changes(a) for a in admitted]}


def options() -> Options:
    return Options(columns=_columns)


def describe() -> str:
    return ("Every period of H five-minute slots (1 h; 6 h in the contended sites "
            "'...c'), reserve a rate for each of S traffic clients sharing a capacity C "
            "(0 rejects a client). Cost: minus the normalised profit a hidden QoE "
            "emulator reports (class-dependent QoE cuts, churn, opex, fixed cost, "
            "over-booking penalty), so profit = −cost and higher profit is better.")


@functools.cache
def _policies(site: str) -> dict:
    """Per site, {policy: {split: [N, S] decisions}} and the AR forecasts, once."""
    s, horizon = parse_site(site)
    p = emulator_params(s, horizon)
    fc = tr.forecasts(s, horizon)
    common, per = pol.tune_factors(*fc["valid"], p)
    out = {"forecast": {k: f.mean(-1).astype(np.float32) for k, (f, _) in fc.items()},
           "knob": {"a": None, "b": common, "c": float(np.mean(per)), "d": None,
                    "e": None}}
    for split in ("valid", "test"):
        f, y = fc[split]
        out[split] = {
            "a": pol.knapsack_policy(f, p), "b": pol.knapsack_policy(f, p, common),
            "c": pol.knapsack_policy(f, p, per), "d": pol.knapsack_policy(y, p),
            "e": pol.grid_oracle(y, p),
        }
    return out


def policy_method(key: str):
    """Baseline/oracle ``key`` of ``acra_policies`` as a method (same for every
    seed: the AR forecaster and the tuning are deterministic)."""

    def outcome(site: str, n: int) -> Outcome:
        pols = _policies(site)

        def repeat(a):  # [N, S] -> [seeds, N, S]
            return np.broadcast_to(a[None], (n, *a.shape))

        knob = pols["knob"][key]
        return Outcome(lambda split: repeat(pols[split][key]),
                       lambda split: repeat(pols["forecast"][split]),
                       None if knob is None else np.full(n, knob))

    def method(task: Task):
        return {site: outcome(site, len(task.seeds)) for site in task.sites}

    return method


for _name, _key, _doc in (
    ("v2_knapsack", "a", "(a) AR forecasts + 0/1 knapsack of eq. (4)"),
    ("v2_knapsack_margin", "b", "(b) (a) with one allocation factor tuned on valid"),
    ("v2_knapsack_factors", "c", "(c) (a) with per-client factors tuned on valid"),
    ("v2_oracle_demand", "d", "(d) the knapsack on the true demands"),
    ("v2_oracle_qoe", "e", "(e) true demands + hidden QoE: exact grid knapsack"),
):
    methods.register(_name, policy_method(_key), usecases=("acra",), doc=_doc)


def summary_table(df: pd.DataFrame) -> str:
    """Table 2 for v2: profit, accepted clients and admission changes per site and
    method, x (a) the knapsack, x (c) the per-client factors, and the share of the
    (c) -> (e) gap a method closes ((p - c) / (e - c); 1 = the oracle)."""
    agg = {"p": ("profit", "mean"), "ps": ("profit", "std"), "a": ("accepted", "mean"),
           "n": ("seed", "count")}
    if "set_changes" in df:
        agg["ch"] = ("set_changes", "mean")
    stats = df.groupby(["site", "method"], sort=False).agg(**agg).reset_index()
    lines = ["| site | method | normalised profit (mean ± std) | × (a) | × (c) | "
             "share of (c)→(e) gap | accepted | set changes | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for site, block in stats.groupby("site", sort=False):
        ref = {m: float(block.loc[block["method"] == m, "p"].iloc[0])
               if (block["method"] == m).any() else float("nan")
               for m in ("v2_knapsack", "v2_knapsack_factors", "v2_oracle_qoe")}
        a, c, e = ref["v2_knapsack"], ref["v2_knapsack_factors"], ref["v2_oracle_qoe"]
        for _, r in block.iterrows():
            ps = 0.0 if np.isnan(r.ps) else r.ps
            changes = f"{r.ch:.2f}" if "ch" in r else "-"
            lines.append(
                f"| {site} | {r.method} | {r.p:.4f} ± {ps:.4f} | {r.p / a:.3f} | "
                f"{r.p / c:.3f} | {(r.p - c) / (e - c):.2f} | {r.a:.2f} | {changes} | "
                f"{r.n} |")
    return "\n".join(lines) + "\n"


METHODS = ("loss2net", "bm_split", "v2_knapsack", "v2_knapsack_margin",
           "v2_knapsack_factors", "v2_oracle_demand", "v2_oracle_qoe")

USECASE = UseCase(
    name="acra",
    sites=SITES,
    load=load,
    make_metric=make_metric,
    get_config=get_config,
    methods=METHODS,
    options=options,
    default_sites=DEFAULT_SITES,
    describe=describe,
    summary=summary_table,
)
