"""What a run starts from besides a fresh init: a given shaper (transfer,
fine-tuning; one per seed) and a loss's fixed hyper-parameters (shared by the
seeds), stacked over sites for a multi-site program and checked against the
program's own parameters.
"""

from typing import Mapping

import jax
import jax.numpy as jnp


def _per_site(name, values, sites):
    """{site: pytree} -> the pytrees stacked over the sites, in their order."""
    if not isinstance(values, Mapping) or set(values) != set(sites):
        raise ValueError(f"{name} must map every site {list(sites)} to its value")
    return jax.tree.map(lambda *x: jnp.stack(x), *(values[s] for s in sites))


def stack(shaper, hyper, site_names):
    """{'shaper': stacked over (sites and) seeds, 'hyper': over sites}, or None."""
    start = {}
    if shaper is not None:
        start["shaper"] = _per_site("shaper", shaper, site_names) if site_names else shaper
    if hyper is not None:
        start["hyper"] = _per_site("hyper", hyper, site_names) if site_names else hyper
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), start) if start else None


def check(program, start_params, keys, sites):
    """A start shaper must match the program's, stacked over (sites and) seeds."""
    if start_params is None or "shaper" not in start_params:
        return start_params
    template = jax.eval_shape(program.init, keys[0]).params["shaper"]
    lead = (len(sites),) if sites is not None else ()
    want = jax.tree.map(lambda t: (*lead, len(keys), *t.shape), template)
    got = jax.tree.map(lambda x: x.shape, start_params["shaper"])
    if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
        raise ValueError(
            "shaper params do not match this run's shaper (config.shaper_hidden, "
            f"inputs) stacked over {len(keys)} seeds: expected {want}, got {got}"
        )
    return start_params
