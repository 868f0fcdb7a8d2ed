"""The README's code stays true: its examples are the shipped files, and run."""

import pathlib
import re

import chex
import jax
import numpy as np
import pandas as pd

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


def test_the_metric_snippet_runs_on_a_users_csv(tmp_path, monkeypatch):
    """The "Your own metric" snippet, verbatim but for the budget, on a CSV."""
    (snippet,) = [b for b in _python_blocks() if "my_load.csv" in b]
    t = np.arange(600)
    frame = pd.DataFrame({"load": 1000 + 100 * np.sin(2 * np.pi * t / 24)
                          + 10 * np.random.default_rng(0).normal(size=t.size)},
                         index=pd.date_range("2024-01-01", periods=t.size, freq="h"))
    frame.to_csv(tmp_path / "my_load.csv")
    monkeypatch.chdir(tmp_path)
    snippet = snippet.replace("l2n.Config(epochs=60, batch_size=64)",
                              "l2n.Config(epochs=3, pretrain_epochs=1, batch_size=32, "
                              "ir_mlp=(8,), assembler=(8,), shaper_hidden=(16, 16))")
    snippet = snippet.replace("seeds=range(5)", "seeds=range(2), verbose=False")
    scope = {}
    exec(snippet, scope)
    rows = scope["table"].rows
    assert set(rows["method"]) >= {"loss2net", "pinball_tuned", "mse_margin"}
    assert np.isfinite(rows["test_cost"]).all()
    mw = scope["decisions_mw"]
    assert mw.shape[1] == 1 and 700 < float(np.median(mw)) < 1300  # original units


def test_the_grid_snippet_trains_one_result_per_value_in_one_program(windowset):
    from l2n_jax import compiles

    (snippet,) = [b for b in _python_blocks() if "fit_grid(" in b]
    scope = {"l2n": l2n, "config": tiny_config(), "data": windowset,
             "outage_cost": asymmetric_cost}
    with compiles.counting() as seen:
        exec(snippet, scope)
    results = scope["results"]
    assert [r.config.lr_max for r in results] == [3e-4, 1e-3, 3e-3]
    assert compiles.training_programs(seen) <= 2  # start + epochs, not one per value
    assert all(r.seeds == (0, 1, 2) for r in results)
