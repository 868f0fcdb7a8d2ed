"""Methods as a registry: every way of deciding that l2n_jax compares, by name.

A method is a function ``method(task) -> {site: Outcome}``: it trains (or fits, or
solves) on every site of ``task.sites`` at once and says how it decides on the
validation and the test split. ``run(name, task)`` scores the test decisions with
the true metric into tidy rows (one per site x seed). Every method gets the same
predictor architecture, data split, batch size and number of epochs
(``task.config``); knobs (margin, pinball tau) are tuned on the validation split
with the true metric, as Loss2Net's epoch selection is.

The building blocks (``l2n_jax.combinators``: ``cotrained``, ``trained``,
``tuned_loss``, ``forecaster``, ``with_margin``, ``tuned``) and the registry
(``l2n_jax.registry``: ``Task``, ``Outcome``, ``Options``, ``FitCache``,
``register``, ``run``) are re-exported here; this module registers the built-in
methods.

Register your own in a few lines (see README, "Your own method")::

    @l2n.methods.register("huber_margin")
    def huber_margin(task):
        return l2n.methods.with_margin(l2n.methods.trained(huber))(task)

and run it with ``l2n_train --plugins=my_methods --method=huber_margin``.
"""

from l2n_jax import baselines, losses
from l2n_jax.combinators import (  # noqa: F401  (the public building blocks)
    cotrained,
    fixed_fits,
    forecaster,
    from_fit,
    train_sites,
    trained,
    tuned,
    tuned_loss,
    with_margin,
    zoom_logit,
)
from l2n_jax.data import WindowSet
from l2n_jax.registry import (  # noqa: F401  (the registry's public names)
    PINBALL_TAUS,
    REGISTRY,
    FitCache,
    Method,
    Options,
    Outcome,
    Run,
    Task,
    get,
    names,
    register,
    rows,
    run,
)


def alpha_omc(task: Task):
    """The alpha-OMC surrogate at the use case's alpha = beta / gamma."""
    if task.options.alpha is None:
        raise ValueError("alpha_omc needs Options.alpha = beta / gamma")
    return trained(losses.alpha_omc(task.options.alpha, task.options.omc_e))(task)


def alternating(task: Task):
    """Alternating training (Grabocka et al. 2019; the paper's Table 3 "Grabocka"
    row): one epoch of shaper-only steps, then one of predictor-only steps, and so
    on (k = the shortest site's steps per epoch; ``Config.alternate_steps``)."""
    k = min(len(ws.train.targets) for ws in task.sites.values()) // task.config.batch_size
    return cotrained("alternating", alternate_steps=max(k, 1))(task)


def loss2net_tuned(task: Task):
    """Loss2Net at quantile_grad 0 and 1, chosen per site on validation
    (``fit.choose_value``)."""
    if task.config.decision_head != "quantile_net":
        raise ValueError("loss2net_tuned chooses Config.quantile_grad, which only "
                         "decision_head='quantile_net' has; got decision_head="
                         f"{task.config.decision_head!r}")
    return cotrained("loss2net_tuned", quantile_grad=(0.0, 1.0))(task)


def _persistence(ws: WindowSet):
    return baselines.persistence


def _linear_ar(ws: WindowSet):
    return baselines.linear_ar(ws.train)


register("loss2net", cotrained(), doc="Loss2Net: predictor and loss shaper co-trained")
register("mse", trained(losses.mse), doc="the predictor trained with MSE")
register("msle", trained(losses.msle), doc="the predictor trained with MSLE")
register("mae", trained(losses.mae), doc="the predictor trained with MAE")
register("alpha_omc", alpha_omc,
         doc="the alpha-OMC expert surrogate (DeepCog), alpha = beta / gamma")
register("mse_margin", with_margin(trained(losses.mse)),
         doc="MSE + an additive margin tuned on validation")
register("pinball_tuned",
         tuned_loss(losses.pinball_at, lambda task: task.options.taus, zoom_logit, "tau"),
         doc="pinball loss, tau tuned on validation (a grid, then a finer one around "
             "the best)")
register("persistence", forecaster(_persistence), doc="repeat the last value")
register("persistence_margin", with_margin(forecaster(_persistence)),
         doc="persistence + a margin tuned on validation")
register("ar", forecaster(_linear_ar), doc="linear AR (ridge least squares)")
register("ar_margin", with_margin(forecaster(_linear_ar)),
         doc="linear AR + a margin tuned on validation")
register("alternating", alternating,
         doc="shaper and predictor trained in turn, one epoch each (Grabocka et al.)")
register("loss2net_tuned", loss2net_tuned,
         doc="Loss2Net twice, quantile_grad 0 and 1 (how much of the shaper's gradient "
             "reaches the quantiles), per site 1 where its validation cost is lower by "
             "more than one standard error over the seeds (Config()'s default since "
             "BUILD_NOTES §18n; this name runs it whatever the config says)")
register("bm_split", cotrained("bm_split", split_irs=True, decision_head="amount"),
         doc="Loss2Net without the assembler: each IR decides for its own series")


# Trainers that register their own entries (imported last: they build on the above).
from l2n_jax import ala, ablation_variants, taskmet_trainer  # noqa: E402,F401
