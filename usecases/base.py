"""What a use case is: its data, metric, default config and method list.

Kept apart from ``usecases/__init__.py`` (which collects the use cases into
``REGISTRY``) so that the use-case modules import it, not the package.
"""

import pathlib
from typing import Callable, NamedTuple

from l2n_jax.config import Config
from l2n_jax.data import WindowSet
from l2n_jax.methods import Options


class UseCase(NamedTuple):
    """What the CLI needs to run a use case end to end.

    Attributes:
      name: registry key.
      sites: site names, in table order.
      load: ``load(site) -> WindowSet`` from the shipped data.
      make_metric: ``make_metric(**params) -> metric(decision, obs)``.
      get_config: ``get_config(quick=False) -> Config``; quick is the smoke budget.
      methods: methods run by default (names in ``l2n_jax.methods.REGISTRY``).
      options: ``options(**params) -> methods.Options``.
      default_sites: sites run when ``--sites`` is not given (default: all).
      summary: ``summary(results) -> Markdown`` replacing ``tables.summary_table``.
      describe: ``describe(**params) -> Markdown``: what is decided, the cost and
        its units (the head of results.md).
      batch_sites: every method trains all requested sites in one program
        (``l2n.fit_sites``) instead of one site after another.
    """

    name: str
    sites: tuple[str, ...]
    load: Callable[[str], WindowSet]
    make_metric: Callable
    get_config: Callable[..., Config]
    methods: tuple[str, ...]
    options: Callable[..., Options]
    default_sites: tuple[str, ...] | None = None
    summary: Callable | None = None
    batch_sites: bool = False
    describe: Callable[..., str] | None = None


def data_dir() -> pathlib.Path:
    """The shipped data: ``l2n_jax/usecases/data`` when installed (the repository's
    ``data/`` is packaged there), the repository's ``data/`` in a checkout."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "data", here.parent / "data"):
        if (candidate / "README.md").is_file():
            return candidate
    raise FileNotFoundError(
        f"l2n_jax: the shipped data are not next to {here} (looked in data/ and "
        "../data/); reinstall the package (pip install .) or run from the repository"
    )


def quick_config() -> Config:
    """The smoke-test budget shared by every use case (``l2n_train --quick``)."""
    return Config(
        epochs=3, pretrain_epochs=1, batch_size=64, ir_mlp=(16,), assembler=(16,),
        shaper_hidden=(32, 32), log_every=1,
        decision_head="amount",  # each use case's quick run keeps its full run's head
    )
