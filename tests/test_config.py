"""Config: validation names the offending field; literal(); dict round trip."""

import dataclasses

import pytest

import l2n_jax as l2n


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(epochs=-1), "epochs"),
        (dict(lr_min=1e-2, lr_max=1e-3), "lr_min"),
        (dict(shaper_activation="tanh"), "shaper_activation"),
        (dict(ir_kind="transformer"), "ir_kind"),
        (dict(epochs=5, pretrain_epochs=5), "pretrain_epochs"),
        (dict(epochs=5, pretrain_epochs=7), "pretrain_epochs"),
        (dict(noise_schedule="exp", noise_end=0.0), "noise_end"),
        (dict(shaper_hidden=()), "shaper_hidden"),
        (dict(ir_mlp=(8, 0)), "ir_mlp"),
        (dict(lr_schedule="cosine"), "lr_schedule"),
        (dict(shaper_input="residual"), "shaper_input"),
        (dict(shaper_sin="libm"), "shaper_sin"),
        (dict(replay_size=-1), "replay_size"),
        (dict(batch_size=True), "batch_size"),
        (dict(lr_max=float("nan")), "lr_max"),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        l2n.Config(**changes)


def test_replace_validates_the_new_values():
    config = l2n.Config()
    with pytest.raises(ValueError, match="batch_size"):
        config.replace(batch_size=0)
    assert config.replace(batch_size=7).batch_size == 7
    assert config.batch_size == 256  # the original is untouched (frozen)


def test_config_is_frozen():
    config = l2n.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_noise_end_zero_is_allowed_when_noise_is_not_exponential():
    assert l2n.Config(noise_schedule="fixed", noise_end=0.0).noise_end == 0.0
    assert l2n.Config(noise_schedule="none", noise_start=0.0, noise_end=0.0).noise_start == 0.0


def test_literal_turns_off_every_added_robustness_measure():
    base = l2n.Config(
        pretrain_epochs=5, replay_size=128, select_best=True, range_penalty=1.0,
        shaper_warmup_epochs=2, shaper_input="error",
    )
    literal = l2n.Config.literal(**{
        k: v for k, v in base.to_dict().items()
        if k not in ("pretrain_epochs", "replay_size", "select_best", "range_penalty",
                     "shaper_warmup_epochs", "shaper_input")
    })
    assert literal.pretrain_epochs == 0
    assert literal.replay_size == 0
    assert literal.select_best is False
    assert literal.range_penalty == 0.0
    assert literal.shaper_warmup_epochs == 0
    assert literal.shaper_input == "decision"
    # Everything else is kept, and all epochs are co-training epochs.
    assert literal.epochs == base.epochs
    assert literal.cotrain_epochs == literal.epochs


def test_literal_accepts_overrides_and_still_validates():
    assert l2n.Config.literal(epochs=4, batch_size=16).batch_size == 16
    with pytest.raises(ValueError, match="batch_size"):
        l2n.Config.literal(batch_size=0)


def test_from_dict_of_to_dict_round_trips():
    config = l2n.Config(
        epochs=7, pretrain_epochs=2, ir_mlp=(8, 4), assembler=(), shaper_hidden=(16,),
        ir_kind="lstm", predictor_lstm=(5,), noise_schedule="fixed", replay_size=64,
        feed_eps=False,
    )
    assert l2n.Config.from_dict(config.to_dict()) == config


def test_from_dict_accepts_json_lists_for_layer_sizes():
    d = l2n.Config(ir_mlp=(8, 4)).to_dict()
    d["ir_mlp"] = [8, 4]
    d["assembler"] = []
    config = l2n.Config.from_dict(d)
    assert config.ir_mlp == (8, 4)
    assert config.assembler == ()


def test_from_dict_rejects_unknown_fields():
    d = l2n.Config().to_dict()
    d["learning_rate"] = 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        l2n.Config.from_dict(d)
