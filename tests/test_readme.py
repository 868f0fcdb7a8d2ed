"""The README's code stays true: its examples are the shipped files, and run."""

import pathlib
import re

import chex
import jax
import numpy as np

import l2n_jax as l2n

from conftest import asymmetric_cost, tiny_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_shows_the_example_plugin_verbatim():
    example = (ROOT / "examples" / "my_methods.py").read_text()
    body = example.split('"""', 2)[2].strip()  # the code after the docstring
    assert body in README


def test_the_engine_snippet_trains_eight_seeds_in_one_program(windowset):
    (snippet,) = [b for b in _python_blocks() if "over_runs" in b]
    scope = {"l2n": l2n, "config": tiny_config(), "data": windowset,
             "outage_cost": asymmetric_cost}
    exec(snippet, scope)
    states, program = scope["states"], scope["program"]
    assert all(x.shape[0] == 8 for x in jax.tree.leaves(states.params))
    one, _ = jax.jit(program.run)(scope["keys"][3], windowset.train, windowset.valid)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[3], states.params), one.params,
                                rtol=1e-4, atol=1e-5)
    assert np.isfinite(np.asarray(scope["history"]["cost"])).all()
