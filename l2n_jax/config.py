"""Training configuration: one frozen, validated dataclass.

Every hyper-parameter of Loss2Net (paper section 3, appendix B) and every robustness
measure l2n_jax adds on top of the paper is a field here. ``Config.literal()`` gives the
paper's algorithm with all added measures switched off, so the literal variant always
stays runnable for ablations (see BUILD_NOTES.md, "robustness ablation").
"""

import dataclasses
import types
from typing import Any

_IR_KINDS = ("mlp", "lstm")
_PREDICTOR_KINDS = ("irs", "monolithic")
_SHAPER_ACTIVATIONS = ("siren", "relu")
_LR_SCHEDULES = ("cyclic", "fixed", "exp")
_NOISE_SCHEDULES = ("exp", "fixed", "none")
_SHAPER_INPUTS = ("decision", "error", "admission")
_SHAPER_SINS = ("poly", "xla")
_SEED_BATCHINGS = ("vmap", "map")
_DECISION_HEADS = ("amount", "admit_st", "admit_diff", "margin", "margin_shared",
                   "margin_net", "quantile_net")


# What ``Config.literal()`` sets: every measure l2n_jax adds to the paper, off.
LITERAL = types.MappingProxyType({
    "shaper_lr": 1e-4,
    "forecast_skip": False,
    "pretrain_epochs": 0,
    "shaper_warmup_epochs": 0,
    "replay_size": 0,
    "range_penalty": 0.0,
    "shaper_input": "decision",
    "select_best": False,
    "decision_head": "amount",
})


@dataclasses.dataclass(frozen=True)
class Config:
    """Hyper-parameters of a training run (Loss2Net or a fixed-loss baseline).

    Attributes:
      epochs: total passes over the training windows, pre-training included.
      batch_size: windows per step; the last incomplete batch of an epoch is dropped.
      ir_kind: individual regressor per input series: 'mlp' (over the flattened
        window, fast) or 'lstm' (paper).
      predictor_lstm: LSTM layer sizes of an 'lstm' IR (paper: 128, 128, 64).
      ir_mlp: hidden sizes of an 'mlp' IR.
      assembler: hidden sizes of the assembler MLP (paper: 256, 256, 128, 64); ()
        makes it a plain output layer.
      shaper_hidden: hidden sizes of the loss shaper (paper: 256, 256, 128).
      shaper_activation: 'siren' (paper) or 'relu' (ablation).
      omega0_first, omega0: SIREN frequency of the first / later layers.
      shaper_sin: the SIREN's sine: 'poly' (``l2n_jax.fastmath.sin``, within 1e-6
        of float64 sin, 7x faster on CPU) or 'xla' (``jnp.sin``; every table in
        BUILD_NOTES.md measured before §10's sine change used it).
      lr_min, lr_max: range of the predictor's learning rate.
      lr_cycles: number of triangular cycles over co-training (paper: 3).
      lr_schedule: 'cyclic' (paper), 'fixed' (lr_max) or 'exp' (lr_max -> lr_min).
      shaper_lr: the loss shaper's (constant) Adam learning rate. The paper gives
        none; 1e-3 (= the predictor's peak LR) keeps the shaper ahead of the
        predictor, ``Config.literal()`` uses the prototype's 1e-4.
      noise_start, noise_end: exploration-noise std at the first / last step, in
        scaled units.
      noise_schedule: 'exp' (paper), 'fixed' (noise_start) or 'none'.
      feed_eps: feed the exploration noise to the predictor as an input (paper).
      forecast_skip: IRs forecast last value + a learned change and the assembler
        adds a linear path from the IR forecasts, initialised so an untrained
        predictor outputs persistence. Added measure (architecture).
      pretrain_epochs: epochs of MSE pre-training of IRs + assembler before
        co-training, counted in ``epochs`` (paper remark 4). Added measure.
      pretrain_lr: Adam learning rate of pre-training.
      shaper_warmup_epochs: first co-training epochs in which only the shaper
        learns (predictor frozen). Added measure.
      replay_size: capacity of a replay buffer of past (decision, obs, cost)
        samples that the shaper also fits every step; 0 = off (paper). The default
        16,384 was measured against 0, 4,096 and 65,536 on the probe set
        (BUILD_NOTES §18). Added measure.
      range_penalty: weight of a quadratic penalty on decisions outside the range
        of the training targets (+-10% of it); 0 = off. Added measure.
      shaper_input: 'decision' (paper: f_l(y_hat + eps, v)), 'error'
        (f_l(y_hat + eps - y, v), y = the first m obs) or 'admission'
        (f_l(y_hat + eps, 1[y_hat + eps > 0], v): marks each admitted decision, for
        the admission heads, issue 19). Added measures.
      cost_to_go: a discount d in [0, 1): with a StatefulMetric, the shaper fits,
        for each decision, the discounted mean of its own and the later reported
        costs of its training segment (``variants.cost_to_go``), so the predictor
        also weighs what a decision leaves to later hours; 0 = each decision's own
        cost (paper). No effect on a memoryless metric. Added measure.
      alternate_steps: k > 0 trains the shaper and the predictor in turn (Grabocka
        et al. 2019, the paper's Table 3 "Grabocka" row): k shaper-only steps, then
        k predictor-only steps, repeated over co-training (the resting network's
        update is zero and its Adam state unchanged); 0 = Loss2Net's co-update of
        both in every step. Every step still queries the system.
      split_irs: no assembler; IR ``s`` emits decision ``s`` directly (the paper's
        "bm-split" ablation; needs as many decisions as input series).
      predictor_kind: 'irs' (paper: per-series IRs + assembler) or 'monolithic'
        (the paper's Table 3 "bm-monolithic" ablation: one IR-like block, the
        ``ir_kind`` MLP or LSTM, over all series at once, then the assembler MLP;
        no per-series IRs).
      split_shaper: one loss shaper per decision, shaper ``i`` fitted to the
        reported cost from decision ``i`` and the obs alone, and decision ``i``
        stepped down shaper ``i`` only (with ``split_irs``: independent Loss2Net
        instances, the paper's Table 3 "bm-split"). Needs shaper_input='decision'.
      freeze_shaper: Loss2Net only: the loss shaper is not trained; the predictor
        learns on the shaper it starts from (``fit(..., shaper=...)``, a shaper
        learned elsewhere: the paper's transfer, appendix D.3).
      select_best: keep the parameters of the epoch with the lowest true metric on
        the validation split (needs ``valid``). Added measure.
      tune_offset: Loss2Net only: after training, add to every decision a per-seed
        offset tuned on the validation split with the true metric (needs
        ``valid``), as the baselines' margins are (``baselines.tune_margin``); it is
        ``params['offset']`` and ``FitResult.predict`` adds it. Added measure.
      log_every: epochs between progress lines (one host sync per chunk of epochs).
      checkpoint_every: epochs between checkpoints of a run given a checkpoint path;
        0 = with every progress line. Neither changes results.
      seed_batching: how one program trains several seeds: 'vmap' (batched, the
        default; on GPU/TPU and across devices) or 'map' (``lax.map``: one seed
        after another in the same compiled loop, each bitwise as it trains alone;
        faster on a CPU that one seed already keeps busy, BUILD_NOTES §10; falls
        back to 'vmap' when seeds are split over several devices).
      decision_head: how the predictor's outputs become decisions
        (``l2n_jax.heads``). Default 'quantile_net' (issue 18, BUILD_NOTES §18k):
        quantiles trained by the pinball loss alone, read at a level that a
        margin network of the predictor's shape sets through the shaper. Or
        'amount' (the paper's: the outputs are the decisions; ``Config.literal``),
        or, for admission control, an amount and an admission probability per
        decision (0 = rejected), explored as a Bernoulli draw and trained by
        straight-through ('admit_st') or by the shaper's admit-minus-reject
        difference ('admit_diff'). Issue 19. Or 'margin' (issue 18): a forecast
        trained by MSE alone plus a margin trained only through the shaper, read
        from the assembler's features ('margin_shared': the shaper also shapes
        those features; 'margin_net': the margin has a network of its own).
      admit_floor: an admit head's exploration: admission is drawn with probability
        clipped to [admit_floor, 1 - admit_floor], so the shaper keeps seeing both.
      admit_floor_anneal: the floor decays with the exploration noise, admit_floor
        x sigma_t / noise_start (fewer forced rejections as training ends).
      ir_anchor: Loss2Net only: weight of pre-training's IR term (each IR's MSE on
        its own series' next value) kept in the predictor's co-training gradient,
        so the IRs stay precise forecasters while the shaper moves the decisions
        (the assembler, with ``forecast_skip`` a linear path from the forecasts,
        is free to add margins). 0 = the paper's. Added measure (issue 18).
      spread_anchor: Loss2Net only: weight of the batch variance of the predictor's
        errors (decision - target, per decision) added to its co-training loss:
        the spread is penalised as MSE penalises it, the level (a margin, a
        quantile-like offset) is left to the learned cost. 0 = the paper's. Added
        measure (issue 18).
      predictor_average: Loss2Net only: decay of an exponential moving average of
        the predictor's parameters over co-training steps; validation and the
        result use the average (the live predictor keeps training), so the noise
        a learned surface's per-sample gradient puts into the parameters is
        averaged out. 0 = the paper's (no average). Added measure (issue 18).
      quantile_grad: ``decision_head='quantile_net'`` only: the share (0-1) of the
        shaper's gradient that reaches the two quantiles each decision is read
        between (the pinball loss still anchors every quantile); 0: only the
        level learns from the shaper. Added measure (issue 18, BUILD_NOTES §18l). A
        tuple: the values to choose from on validation, per site (``l2n.fit`` and
        ``fit_sites`` with a valid split train each and keep the one of lowest mean
        true validation cost over the seeds, unless it beats the first value by less
        than one standard error: ``fit.choose_value``; without a valid split, and
        below ``fit``, the first value). The default, (0, 1), is chosen so (§18n):
        spiky series take the shaper's whole gradient, smooth ones none of it.
    """

    epochs: int = 60
    batch_size: int = 256
    ir_kind: str = "mlp"
    predictor_lstm: tuple[int, ...] = (128, 128, 64)
    ir_mlp: tuple[int, ...] = (64, 64)
    assembler: tuple[int, ...] = (256, 256, 128, 64)
    shaper_hidden: tuple[int, ...] = (256, 256, 128)
    shaper_activation: str = "siren"
    omega0_first: float = 30.0
    omega0: float = 1.0
    shaper_sin: str = "poly"
    lr_min: float = 1e-5
    lr_max: float = 1e-3
    lr_cycles: int = 3
    lr_schedule: str = "cyclic"
    shaper_lr: float = 1e-3
    noise_start: float = 0.1
    noise_end: float = 0.001
    noise_schedule: str = "exp"
    feed_eps: bool = True
    forecast_skip: bool = True
    pretrain_epochs: int = 10
    pretrain_lr: float = 1e-3
    shaper_warmup_epochs: int = 0
    replay_size: int = 16384
    range_penalty: float = 0.0
    shaper_input: str = "decision"
    cost_to_go: float = 0.0
    alternate_steps: int = 0
    select_best: bool = True
    split_irs: bool = False
    predictor_kind: str = "irs"
    split_shaper: bool = False
    freeze_shaper: bool = False
    tune_offset: bool = False
    log_every: int = 10
    checkpoint_every: int = 0
    seed_batching: str = "vmap"
    decision_head: str = "quantile_net"
    admit_floor: float = 0.05
    admit_floor_anneal: bool = False
    ir_anchor: float = 0.0
    spread_anchor: float = 0.0
    predictor_average: float = 0.0
    quantile_grad: float | tuple[float, ...] = (0.0, 1.0)

    def __post_init__(self):
        validate(self)

    def replace(self, **changes: Any) -> "Config":
        """Returns a validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def literal(cls, **changes: Any) -> "Config":
        """The paper's Algorithm 1 with every added robustness measure off."""
        return cls(**{**LITERAL, **changes})

    def as_literal(self) -> "Config":
        """This config with every added robustness measure off (``LITERAL``): the
        paper's algorithm at this config's budget and architecture."""
        return self.replace(**LITERAL)

    @property
    def cotrain_epochs(self) -> int:
        return self.epochs - self.pretrain_epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"Config: unknown fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _positive_int(config: Config, name: str, allow_zero: bool = False) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Config.{name} must be an int, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Config.{name} must be {bound}, got {value}")


def _layers(config: Config, name: str, allow_empty: bool = False) -> None:
    value = getattr(config, name)
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(f"Config.{name} must be a tuple of positive ints, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"Config.{name} must not be empty")


def _choice(config: Config, name: str, options: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in options:
        raise ValueError(f"Config.{name} must be one of {options}, got {value!r}")


def _positive_float(config: Config, name: str, allow_zero: bool = False) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Config.{name} must be a number, got {value!r}")
    if not value == value or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Config.{name} must be {bound}, got {value}")


def quantile_grads(config: Config) -> tuple[float, ...]:
    """``Config.quantile_grad`` as the tuple of values to choose from (one for a
    number)."""
    g = config.quantile_grad
    return tuple(g) if isinstance(g, tuple) else (g,)


def _quantile_grad(config: Config) -> None:
    values = quantile_grads(config)
    if not values:
        raise ValueError("Config.quantile_grad must be a number or a non-empty tuple")
    for g in values:
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= g <= 1.0:
            raise ValueError(f"Config.quantile_grad must be in [0, 1] (or a tuple of "
                             f"such), got {config.quantile_grad!r}")


def validate(config: Config) -> None:
    """Raises ValueError naming the first invalid field of ``config``."""
    for name in ("epochs", "batch_size", "lr_cycles", "log_every"):
        _positive_int(config, name)
    for name in ("pretrain_epochs", "shaper_warmup_epochs", "replay_size", "checkpoint_every",
                 "alternate_steps"):
        _positive_int(config, name, allow_zero=True)
    for name in ("predictor_lstm", "ir_mlp", "shaper_hidden"):
        _layers(config, name)
    _layers(config, "assembler", allow_empty=True)
    _choice(config, "ir_kind", _IR_KINDS)
    _choice(config, "predictor_kind", _PREDICTOR_KINDS)
    _choice(config, "shaper_activation", _SHAPER_ACTIVATIONS)
    _choice(config, "lr_schedule", _LR_SCHEDULES)
    _choice(config, "noise_schedule", _NOISE_SCHEDULES)
    _choice(config, "shaper_input", _SHAPER_INPUTS)
    _choice(config, "shaper_sin", _SHAPER_SINS)
    _choice(config, "seed_batching", _SEED_BATCHINGS)
    _choice(config, "decision_head", _DECISION_HEADS)
    for name in ("omega0_first", "omega0", "lr_min", "lr_max", "shaper_lr", "pretrain_lr"):
        _positive_float(config, name)
    for name in ("noise_start", "noise_end", "range_penalty", "cost_to_go", "ir_anchor",
                 "spread_anchor"):
        _positive_float(config, name, allow_zero=True)
    _positive_float(config, "admit_floor", allow_zero=True)
    if config.admit_floor >= 0.5:
        raise ValueError(f"Config.admit_floor must be < 0.5, got {config.admit_floor}")
    if config.decision_head.startswith(("margin", "quantile")) and config.split_irs:
        raise ValueError(f"Config.decision_head={config.decision_head!r} reads its margin from the "
                         "assembler's features; split_irs has no assembler (set "
                         "decision_head='amount', the paper's head)")
    if config.decision_head.startswith("admit") and config.tune_offset:
        raise ValueError("Config.tune_offset adds an offset to every decision, which "
                         "would admit the rejected ones of decision_head="
                         f"{config.decision_head!r}")
    _positive_float(config, "predictor_average", allow_zero=True)
    _quantile_grad(config)
    # Other heads accept the default choice (it applies to the quantile head only).
    if (config.decision_head != "quantile_net" and any(quantile_grads(config))
            and config.quantile_grad != Config.quantile_grad):
        raise ValueError("Config.quantile_grad sets how much of the shaper's gradient "
                         "reaches decision_head='quantile_net''s quantiles; got decision_head="
                         f"{config.decision_head!r}")
    if config.predictor_average >= 1.0:
        raise ValueError(f"Config.predictor_average must be < 1, got {config.predictor_average}")
    if config.cost_to_go >= 1.0:
        raise ValueError(f"Config.cost_to_go must be < 1, got {config.cost_to_go}")
    if config.lr_min > config.lr_max:
        raise ValueError(
            f"Config.lr_min ({config.lr_min}) must not exceed lr_max ({config.lr_max})"
        )
    if config.noise_schedule == "exp" and (config.noise_start <= 0 or config.noise_end <= 0):
        raise ValueError(
            "Config.noise_start and noise_end must be > 0 with noise_schedule='exp', "
            f"got {config.noise_start}, {config.noise_end}"
        )
    if config.pretrain_epochs + config.shaper_warmup_epochs >= config.epochs:
        raise ValueError(
            f"Config.epochs ({config.epochs}) must exceed pretrain_epochs + "
            f"shaper_warmup_epochs ({config.pretrain_epochs} + "
            f"{config.shaper_warmup_epochs}): no epoch would be left for co-training"
        )
    if config.alternate_steps and config.freeze_shaper:
        raise ValueError("Config.alternate_steps alternates shaper and predictor "
                         "training; a frozen shaper (freeze_shaper) has no turns")
    if config.predictor_kind == "monolithic" and config.split_irs:
        raise ValueError("Config.predictor_kind='monolithic' has no per-series IRs to "
                         "split (split_irs)")
    if config.split_shaper and config.shaper_input != "decision":
        raise ValueError("Config.split_shaper: shaper i sees decision i alone, so "
                         f"shaper_input must be 'decision', got {config.shaper_input!r}")
    for name in ("feed_eps", "forecast_skip", "select_best", "split_irs", "freeze_shaper",
                 "split_shaper", "tune_offset", "admit_floor_anneal"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"Config.{name} must be a bool, got {getattr(config, name)!r}")


def parse_field(config: Config, text: str) -> tuple[str, object]:
    """``NAME=VALUE`` (a ``--set``) -> (name, value typed as the field's current
    value); ValueError names what is wrong."""
    name, sep, raw = text.partition("=")
    fields = config.to_dict()
    if not sep or name not in fields:
        raise ValueError(
            f"--set={text}: expected NAME=VALUE with NAME a Config field; fields: "
            + ", ".join(fields)
        )
    current = fields[name]
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            value = raw.lower() in ("true", "1")
        elif isinstance(current, (int, float)):
            value = type(current)(raw)
        elif isinstance(current, tuple):  # of ints (layers) or floats (quantile_grad)
            kind = float if any(isinstance(v, float) for v in current) else int
            value = tuple(kind(v) for v in raw.split(",") if v.strip())
        else:
            value = raw
    except ValueError:
        raise ValueError(
            f"--set={text}: {raw!r} is not a valid {type(current).__name__} for {name}"
        ) from None
    return name, value
