"""The l2n_train console script, run as a user would, in a subprocess."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def _command():
    script = os.path.join(os.path.dirname(sys.executable), "l2n_train")
    if os.path.exists(script):
        return [script]
    found = shutil.which("l2n_train")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from l2n_jax.cli import run; sys.exit(run())"]


def _run(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(_command() + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke") / "out"
    proc = _run(["--usecase=netalloc", "--quick", "--seeds=2", "--sites=eu",
                 "--method=loss2net,mse_margin", f"--workdir={workdir}"],
                cwd=tmp_path_factory.getbasetemp())
    return proc, workdir


def test_smoke_run_succeeds(smoke_run):
    proc, _ = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_smoke_run_writes_one_csv_row_per_site_method_and_seed(smoke_run):
    _, workdir = smoke_run
    df = pd.read_csv(workdir / "results.csv")
    assert {"usecase", "site", "method", "seed", "test_cost"} <= set(df.columns)
    assert len(df) == 1 * 2 * 2
    assert sorted(zip(df["method"], df["seed"])) == [
        ("loss2net", 0), ("loss2net", 1), ("mse_margin", 0), ("mse_margin", 1)]
    assert (df["usecase"] == "netalloc").all() and (df["site"] == "eu").all()
    assert np.isfinite(df["test_cost"]).all() and (df["test_cost"] >= 0).all()


def test_smoke_run_writes_the_markdown_summary_and_config(smoke_run):
    proc, workdir = smoke_run
    md = (workdir / "results.md").read_text()
    assert "| eu | loss2net |" in md and "| eu | mse_margin |" in md
    assert "| eu | loss2net |" in proc.stdout  # the table is also printed
    assert (workdir / "config.json").exists()


@pytest.mark.parametrize(
    "flag, mention",
    [
        ("--seeds=0", "seeds"),
        ("--usecase=nope", "nope"),
        ("--method=nope", "nope"),
        ("--sites=atlantis", "atlantis"),
        ("--beta=0", "beta"),
        ("--epochs=1", "epochs"),
    ],
)
def test_bad_flag_exits_non_zero_with_a_short_error_and_no_traceback(flag, mention, tmp_path):
    args = ["--usecase=netalloc", "--quick", f"--workdir={tmp_path / 'out'}", flag]
    proc = _run(args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert any(mention in l for l in lines), proc.stderr
    assert len(lines) <= 3, proc.stderr
    assert not (tmp_path / "out" / "results.csv").exists()


def test_missing_usecase_is_a_usage_error(tmp_path):
    proc = _run(["--quick"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "usecase" in proc.stderr


def test_help_documents_every_flag(tmp_path):
    proc = _run(["--help"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    for flag in ("--usecase", "--seeds", "--workdir", "--method", "--sites", "--epochs",
                 "--[no]quick", "--beta"):
        assert flag in text, text


def test_unwritable_workdir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run(["--usecase=netalloc", "--quick", f"--workdir={blocker / 'out'}"],
                cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "workdir" in proc.stderr
