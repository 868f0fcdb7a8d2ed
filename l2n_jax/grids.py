"""Grids on the run axis: Config values that change no compiled shape or branch.

The numeric fields of ``FIELDS`` enter Loss2Net's step only through its schedules
and optimisers (``schedules.learning_rate``, ``schedules.noise_std``,
``variants.shaper_optimizer``), which work on traced values. A grid of them
therefore trains as ONE program: each grid point is one more run on the sites axis
(a (site, point) pair, as ``combinators._grid_fits`` does for a pinball tau), and
its values are a per-run input, ``TrainState.hyper = {field: value}``, from which
the step builds its schedules (``train.loss2net_trainer(..., hyper=True)``). Every
other field (a schedule's kind, a layer size, the epochs) decides the program
itself: configs that differ there are separate programs (``group``).

``fit.fit_grid`` / ``fit.fit_grid_sites`` are the user API.
"""

from typing import Mapping, Sequence

from l2n_jax.config import Config

# The Config fields a grid may vary: plain numbers read by the schedules and the
# shaper's optimiser, never by a shape or a branch.
FIELDS = ("noise_start", "noise_end", "lr_max", "lr_min", "shaper_lr")


class _Values:
    """``config`` with some ``FIELDS`` replaced by (traced) per-run values; read
    like a Config by the schedule and optimiser builders."""

    def __init__(self, config: Config, values: Mapping):
        self._config, self._values = config, dict(values)

    def __getattr__(self, name):
        values = self.__dict__["_values"]
        return values[name] if name in values else getattr(self.__dict__["_config"], name)


def view(config: Config, values: Mapping):
    """``config`` as the step of one grid point sees it (``config`` itself when
    ``values`` is empty, so a plain run builds exactly what it always did)."""
    if not values:
        return config
    check_fields(values)
    return _Values(config, values)


def check_fields(names) -> None:
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"a grid can only vary the Config fields {list(FIELDS)} (values of one "
            f"compiled program); {unknown} change the program itself: fit each value "
            "separately")


def used(config: Config, name: str) -> bool:
    """Does ``name`` change what ``config``'s program computes?"""
    if name in ("noise_start", "noise_end"):
        return config.noise_schedule == "exp" or (
            config.noise_schedule == "fixed" and name == "noise_start")
    if name == "lr_min":
        return config.lr_schedule != "fixed"
    if name == "shaper_lr":
        return not config.freeze_shaper
    return True


def points(config: Config, grid: Mapping[str, Sequence[float]]) -> list[dict]:
    """``{field: [v0, v1, ...]}`` (equal lengths, zipped) -> one ``{field: v_i}``
    per grid point; each point must give a valid Config."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must map Config fields to lists of values, got {grid!r}")
    check_fields(grid)
    unused = [f for f in grid if not used(config, f)]
    if unused:
        raise ValueError(
            f"grid fields {unused} have no effect with this config (noise_schedule="
            f"{config.noise_schedule!r}, lr_schedule={config.lr_schedule!r}, "
            f"freeze_shaper={config.freeze_shaper})")
    lengths = {f: len(v) for f, v in grid.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"grid: every field needs as many values (>= 1), got {lengths}")
    n = next(iter(lengths.values()))
    out = [{f: float(grid[f][i]) for f in grid} for i in range(n)]
    for p in out:
        config.replace(**p)  # raises ValueError naming a bad value
    return out


def group(configs: Sequence[Config]) -> list[tuple[Config, list[int], dict]]:
    """Configs that differ only in ``FIELDS`` share one program.

    Returns [(base config, indices into ``configs``, grid)] in order of first
    appearance; ``grid`` holds the fields that vary in the group and change its
    program (``used``), {} for a group of one config or of equal ones.
    """
    groups: dict = {}
    for i, c in enumerate(configs):
        key = tuple((k, v) for k, v in c.to_dict().items() if k not in FIELDS)
        groups.setdefault(key, []).append(i)
    out = []
    for idx in groups.values():
        base = configs[idx[0]]
        varying = [f for f in FIELDS if used(base, f)
                   and len({getattr(configs[i], f) for i in idx}) > 1]
        grid = {f: [getattr(configs[i], f) for i in idx] for f in varying}
        out.append((base, idx, grid))
    return out

