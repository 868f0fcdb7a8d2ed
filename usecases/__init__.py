"""Use cases: data, metric, default config and method list, one module each.

``REGISTRY`` maps a name to a ``usecases.base.UseCase``; the CLI and benchmarks
read it. Importing the package registers the use cases' own methods (the knapsack
family of ``acra_pjm``, the v2_* baselines of ``acra``, forecast's metaloss) in
``l2n_jax.methods.REGISTRY``.
"""

from . import acra, acra_v2, forecast, netalloc, power, toy
from .base import UseCase, quick_config

REGISTRY = {uc.name: uc for uc in (acra.USECASE, acra_v2.USECASE, netalloc.USECASE,
                                   power.USECASE, toy.USECASE, forecast.USECASE)}

# Older names of use cases (the CLI accepts them): issue 19 built acra's v2 as
# ``acra_v2`` before it became ``acra``; commands in committed tables use it.
ALIASES = {"acra_v2": "acra"}

__all__ = ["ALIASES", "REGISTRY", "UseCase", "quick_config"]
