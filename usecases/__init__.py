"""Use cases: data, metric, default config and method list, one module each.

``REGISTRY`` maps a name to a ``UseCase``; the CLI and benchmarks read it.
"""

from typing import Callable, NamedTuple

from l2n_jax.compare import Options
from l2n_jax.config import Config
from l2n_jax.data import WindowSet


class UseCase(NamedTuple):
    """What the CLI needs to run a use case end to end.

    Attributes:
      name: registry key.
      sites: site names, in table order.
      load: ``load(site) -> WindowSet`` from the shipped data.
      make_metric: ``make_metric(**params) -> metric(decision, obs)``.
      get_config: ``get_config(quick=False) -> Config``; quick is the smoke budget.
      methods: methods run by default.
      options: ``options(**params) -> compare.Options``.
      run_method: the use case's own ``run_method`` (same signature as
        ``compare.run_method``) when its methods are not the generic ones.
      default_sites: sites run when ``--sites`` is not given (default: all).
      summary: ``summary(results) -> Markdown`` replacing ``compare.summary_table``.
    """

    name: str
    sites: tuple[str, ...]
    load: Callable[[str], WindowSet]
    make_metric: Callable
    get_config: Callable[..., Config]
    methods: tuple[str, ...]
    options: Callable[..., Options]
    run_method: Callable | None = None
    default_sites: tuple[str, ...] | None = None
    summary: Callable | None = None


def quick_config() -> Config:
    """The smoke-test budget shared by every use case (``l2n_train --quick``)."""
    return Config(
        epochs=3, pretrain_epochs=1, batch_size=64, ir_mlp=(16,), assembler=(16,),
        shaper_hidden=(32, 32), log_every=1,
    )


def _registry():
    from usecases import acra, netalloc, power, toy

    return {
        uc.name: uc
        for uc in (acra.USECASE, netalloc.USECASE, power.USECASE, toy.USECASE)
    }


REGISTRY = _registry()
NAMES = tuple(REGISTRY)
