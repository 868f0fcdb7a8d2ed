"""The committed l2n_train tables were made by this version with today's defaults.

Whether they are still what the code produces takes a full rerun
(``python benchmarks/check_tables.py``, minutes); this checks, in a second, that
nothing a table depends on was changed without regenerating it: the package
version, the use case's default config, seeds, sites and method list.
"""

import json
import pathlib

import pandas as pd
import pytest

import l2n_jax
from l2n_jax.usecases import REGISTRY

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.mark.parametrize("usecase", ["netalloc", "toy"])
def test_a_committed_table_matches_the_current_defaults(usecase):
    info = json.loads((RESULTS / usecase / "config.json").read_text())
    uc = REGISTRY[usecase]
    rows = pd.read_csv(RESULTS / usecase / "results.csv")
    assert info.get("l2n_jax") == l2n_jax.__version__, "regenerate the table"
    assert info["config"] == json.loads(json.dumps(uc.get_config().to_dict()))
    assert info["seeds"] == [0, 1, 2, 3, 4] and info["metric_params"] == {}
    assert list(dict.fromkeys(rows["site"])) == list(uc.default_sites or uc.sites)
    assert list(dict.fromkeys(rows["method"])) == list(uc.methods)
    assert (rows.groupby(["site", "method"]).size() == 5).all()
