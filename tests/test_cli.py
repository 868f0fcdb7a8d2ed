"""The l2n_train console script, run as a user would, in a subprocess."""

import os
import re
import shutil
import signal
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
    return [sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())"]


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
        ("--set=no_such_field=1", "no_such_field"),
        ("--set=replay_size=many", "replay_size"),
        ("--set=shaper_sin=libm", "shaper_sin"),
        ("--coordinator=127.0.0.1:1234", "--distributed"),
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


def test_a_coordinator_port_in_use_or_malformed_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for coordinator, mention in ((f"127.0.0.1:{port}", f"port {port} is not free"),
                                     ("127.0.0.1", "expected HOST:PORT")):
            proc = _run(["--usecase=netalloc", "--quick", f"--workdir={tmp_path / 'out'}",
                         "--distributed", f"--coordinator={coordinator}",
                         "--num_processes=2", "--process_id=0"], cwd=tmp_path)
            assert proc.returncode == 1, proc.stderr[-2000:]
            assert proc.stderr.count("\n") == 1 and mention in proc.stderr, proc.stderr


def test_set_parses_each_config_field_by_its_type():
    from l2n_jax import Config
    from l2n_jax.cli import _parse_field

    config = Config()
    assert _parse_field(config, "shaper_sin=xla") == ("shaper_sin", "xla")
    assert _parse_field(config, "replay_size=0") == ("replay_size", 0)
    assert _parse_field(config, "shaper_lr=2e-4") == ("shaper_lr", 2e-4)
    assert _parse_field(config, "feed_eps=false") == ("feed_eps", False)
    assert _parse_field(config, "shaper_hidden=32,16") == ("shaper_hidden", (32, 16))
    assert _parse_field(config, "assembler=") == ("assembler", ())


def test_missing_usecase_is_a_usage_error(tmp_path):
    proc = _run(["--quick"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "usecase" in proc.stderr


def test_help_documents_every_flag(tmp_path):
    proc = _run(["--help"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    for flag in ("--usecase", "--seeds", "--workdir", "--method", "--sites", "--epochs",
                 "--[no]quick", "--beta", "--checkpoint_every", "--[no]overwrite", "--set"):
        assert flag in text, text


def test_unwritable_workdir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run(["--usecase=netalloc", "--quick", f"--workdir={blocker / 'out'}"],
                cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "workdir" in proc.stderr


_RESUME_ARGS = ["--usecase=toy", "--quick", "--sites=n2", "--method=loss2net",
                "--seeds=2", "--epochs=12", "--checkpoint_every=1"]


def _kill_after_epoch(args, cwd, epoch):
    """Starts l2n_train and SIGKILLs it once it logs the end of ``epoch``."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(_command() + args, cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"epoch {epoch}/" in line:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return "".join(seen)


def test_a_killed_run_resumed_on_its_workdir_gives_the_uninterrupted_results(tmp_path):
    whole = _run(_RESUME_ARGS + [f"--workdir={tmp_path / 'whole'}"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    workdir = tmp_path / "killed"
    log = _kill_after_epoch(_RESUME_ARGS + [f"--workdir={workdir}"], tmp_path, epoch=2)
    assert "epoch 2/" in log, log[-3000:]
    assert not (workdir / "results.csv").exists()  # it really died mid-way
    assert list((workdir / "checkpoints").rglob("*.ckpt"))

    resumed = _run(_RESUME_ARGS + [f"--workdir={workdir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = re.search(r"resuming from .* at epoch (\d+)/(\d+)", resumed.stderr)
    assert found and 2 <= int(found[1]) < int(found[2]), resumed.stderr[-3000:]
    a = pd.read_csv(tmp_path / "whole" / "results.csv").drop(columns="train_s")
    b = pd.read_csv(workdir / "results.csv").drop(columns="train_s")
    pd.testing.assert_frame_equal(a, b)
    assert not (workdir / "checkpoints").exists()  # spent checkpoints are removed


def test_ctrl_c_is_one_line_exit_130_and_the_rerun_resumes(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    args = _RESUME_ARGS + [f"--workdir={tmp_path / 'out'}"]
    # A job started in the background by a shell (``cmd &``) inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt: restore the default for the child.
    proc = subprocess.Popen(_command() + args, cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stderr:
            if "co-training 3/" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, rest[-2000:]
    assert "Traceback" not in rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("l2n_train: [toy/n2/loss2net] interrupted after epoch")
    assert "is kept; rerun the same command to resume" in last
    assert list((tmp_path / "out" / "checkpoints").rglob("*.ckpt"))
    resumed = _run(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr


def test_a_second_run_on_a_held_workdir_is_refused_and_a_killed_run_leaves_no_lock(
        tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    workdir = tmp_path / "out"
    # Long enough to be still training while the second command starts and stops.
    args = _RESUME_ARGS + ["--epochs=5000", f"--workdir={workdir}"]
    first = subprocess.Popen(_command() + args, cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for line in first.stderr:
            if "epoch 2/" in line:
                break
        second = _run(args, cwd=tmp_path)
        assert first.poll() is None  # still training: the refusal was the lock's
    finally:
        first.kill()
        first.wait(timeout=60)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert re.search(rf"--workdir={re.escape(str(workdir))} is in use by a running "
                     rf"l2n_train \(pid {first.pid} on ", lines[0]), lines[0]
    # The kernel dropped the killed run's lock: the workdir can be held again.
    probe = _run_python("import pathlib, sys; from l2n_jax import workdir; "
                        "workdir.lock(pathlib.Path(sys.argv[1])); print('held')",
                        str(workdir))
    assert probe.returncode == 0 and probe.stdout.strip() == "held", probe.stderr


def _run_python(code, *argv):
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, timeout=120)


def test_a_workdir_of_another_run_is_refused_unless_overwrite(tmp_path):
    workdir = tmp_path / "out"
    args = ["--usecase=netalloc", "--quick", "--sites=eu", "--method=persistence",
            f"--workdir={workdir}"]
    assert _run(args + ["--seeds=1"], cwd=tmp_path).returncode == 0
    proc = _run(args + ["--seeds=2"], cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "different run" in proc.stderr and "seeds" in proc.stderr
    proc = _run(args + ["--seeds=2", "--overwrite"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(workdir / "results.csv")) == 2


def test_finished_methods_are_skipped_when_the_command_is_rerun(tmp_path):
    workdir = tmp_path / "out"
    args = ["--usecase=netalloc", "--quick", "--sites=eu", "--seeds=1",
            f"--workdir={workdir}"]
    assert _run(args + ["--method=persistence"], cwd=tmp_path).returncode == 0
    proc = _run(args + ["--method=persistence,ar"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "persistence] already in results.csv" in proc.stderr
    df = pd.read_csv(workdir / "results.csv")
    assert sorted(df["method"]) == ["ar", "persistence"]


def test_acra_pjm_runs_out_of_the_box_with_its_own_table(tmp_path):
    workdir = tmp_path / "acra"
    proc = _run(["--usecase=acra_pjm", "--quick", "--seeds=1", "--method=knapsack,oracle",
                 f"--workdir={workdir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(workdir / "results.csv")
    assert set(df["site"]) == {"S4"}  # the default client count
    assert {"test_cost", "profit", "accepted"} <= set(df.columns)
    assert "× knapsack" in (workdir / "results.md").read_text()


def test_acra_is_v2_and_acra_v2_its_alias(tmp_path):
    workdir = tmp_path / "acra_v2"
    proc = _run(["--usecase=acra_v2", "--quick", "--seeds=1", "--sites=S2",
                 "--method=v2_knapsack,v2_knapsack_factors,v2_oracle_qoe",
                 f"--workdir={workdir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(workdir / "results.csv")
    assert {"profit", "accepted", "set_changes"} <= set(df.columns)
    table = (workdir / "results.md").read_text()
    assert "share of (c)→(e) gap" in table and "v2_oracle_qoe" in table
