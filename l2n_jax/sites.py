"""Several sites in one program: their windows checked, padded and stacked.

Sites batched in one program need the same window shapes (lookback, series,
features, targets); their window counts may differ. Then every split is padded
to the longest site's and carries each site's live count (``data.Split.n``), from
which the program draws each site's own batches and schedules.
"""

from typing import Mapping

import jax.numpy as jnp

from l2n_jax.data import Split, Windows


def as_windows(w: Windows, name: str) -> Windows:
    """``w`` as float32 jnp arrays, checked: a ValueError names the bad field."""
    if not isinstance(w, Windows):
        raise ValueError(f"{name} must be an l2n.Windows, got {type(w).__name__}")
    arrays = Windows(*(jnp.asarray(x, jnp.float32) for x in w))
    n = arrays.inputs.shape[0]
    if arrays.inputs.ndim != 4:
        raise ValueError(
            f"{name}.inputs must be [N, n_series, lookback, n_features], got "
            f"{arrays.inputs.shape}"
        )
    for field in ("targets", "obs", "ir_targets", "current"):
        x = getattr(arrays, field)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"{name}.{field} must be [{n}, d], got {x.shape}")
    return arrays


def pad_to(w: Windows, n: int) -> Windows:
    """``w`` with zero rows appended up to ``n`` rows (never read by a live step)."""
    extra = n - w.inputs.shape[0]
    if extra == 0:
        return w
    return Windows(*(jnp.concatenate([x, jnp.zeros((extra, *x.shape[1:]), x.dtype)])
                     for x in w))


def stack_sites(trains, valids, pad=None):
    """Site names and the stacked [sites, N, ...] train (and valid) ``Split``s, with
    each site's live count when padded.

    ``pad``: None pads only when the sites' window counts differ; True always uses
    the padded program; False refuses different counts."""
    if not isinstance(trains, Mapping) or not trains:
        raise ValueError("trains must be a non-empty mapping {site: Windows}")
    sites = tuple(trains)
    if valids is not None and tuple(valids) != sites:
        raise ValueError(f"valids must name the same sites as trains {list(sites)}, "
                         f"got {list(valids)}")

    def check(splits, name):
        arrays = {s: as_windows(w, f"{name}[{s!r}]") for s, w in splits.items()}
        ref = arrays[sites[0]]
        for s, w in arrays.items():
            if [x.shape[1:] for x in w] != [x.shape[1:] for x in ref]:
                raise ValueError(
                    f"{name}[{s!r}] has window shapes {[x.shape[1:] for x in w]}, site "
                    f"{sites[0]!r} {[x.shape[1:] for x in ref]}: sites batched in one "
                    "program need the same lookback, series, features and targets"
                )
        return arrays

    splits = [check(trains, "train")] + ([] if valids is None else [check(valids, "valid")])
    counts = [[int(a[s].inputs.shape[0]) for s in sites] for a in splits]
    uneven = any(len(set(c)) > 1 for c in counts)
    if uneven and pad is False:
        raise ValueError(
            f"sites have different window counts {dict(zip(sites, counts[0]))} and "
            "pad=False: truncate them to a common length, or allow padding"
        )
    padded = bool(pad) or uneven
    stacked = []
    for arrays, c in zip(splits, counts):
        windows = Windows(*(jnp.stack(x) for x in zip(*(pad_to(arrays[s], max(c))
                                                        for s in sites))))
        stacked.append(Split(windows, jnp.asarray(c, jnp.int32) if padded else None))
    return sites, stacked[0], (stacked[1] if valids is not None else None)
