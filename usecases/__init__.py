"""Use cases: data, metric, default config and method list, one module each.

``REGISTRY`` maps a name to a ``usecases.base.UseCase``; the CLI and benchmarks
read it. Importing the package registers the use cases' own methods (acra's
knapsack family, forecast's metaloss) in ``l2n_jax.methods.REGISTRY``.
"""

from . import acra, forecast, netalloc, power, toy
from .base import UseCase, quick_config

REGISTRY = {uc.name: uc for uc in (acra.USECASE, netalloc.USECASE, power.USECASE,
                                   toy.USECASE, forecast.USECASE)}

__all__ = ["REGISTRY", "UseCase", "quick_config"]
