"""``l2n_train --distributed``: several processes on 127.0.0.1 (gloo collectives), each
with 2 forced host devices, run one table; it equals the single-process run; a killed
process stops the others with a clear error, and rerunning resumes."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

ARGS = ["--usecase=toy", "--quick", "--sites=n2", "--method=loss2net", "--seeds=4",
        "--epochs=8", "--checkpoint_every=1"]
TIMEOUT = 240  # per process: a hang fails the test instead of stalling CI


def _command():
    script = os.path.join(os.path.dirname(sys.executable), "l2n_train")
    return [script] if os.path.exists(script) else [
        sys.executable, "-c", "import sys; from l2n_jax.cli import main; sys.exit(main())"]


def _env(devices, cache):
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if "xla_force_host_platform_device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags),
                L2N_JAX_CACHE=str(cache))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(n, workdir, cache, devices=2):
    """``n`` processes of one run (or one plain process when n == 1)."""
    args = _command() + ARGS + [f"--workdir={workdir}"]
    if n == 1:
        return [subprocess.Popen(args, env=_env(devices, cache), text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    port = _free_port()
    extra = ["--distributed", f"--coordinator=127.0.0.1:{port}", f"--num_processes={n}",
             "--heartbeat_timeout=10"]
    return [subprocess.Popen(args + extra + [f"--process_id={i}"], env=_env(devices, cache),
                             text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(n)]


def _finish(procs):
    errs = []
    for p in procs:
        try:
            errs.append(p.communicate(timeout=TIMEOUT)[1])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process of the run hung")
    return [p.returncode for p in procs], errs


def _table(workdir):
    return pd.read_csv(workdir / "results.csv").drop(columns="train_s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same table by 2 processes x 2 devices, 1 process x 4 devices, 1 device."""
    root = tmp_path_factory.mktemp("distributed")
    out = {}
    for name, n, devices in (("2x2", 2, 2), ("1x4", 1, 4), ("1x1", 1, 1)):
        codes, errs = _finish(_start(n, root / name, root / "cache", devices))
        assert codes == [0] * n, errs[0][-3000:]
        out[name] = (root / name, errs)
    return out


def test_two_processes_equal_one_process_with_as_many_devices(runs):
    workdir, errs = runs["2x2"]
    assert "on 4 devices of 2 processes" in errs[0]
    assert "epoch 8/8" in errs[0] and "epoch" not in errs[1]  # one set of progress lines
    files = {p.name for p in workdir.iterdir()} - {"results.png"}  # with matplotlib
    assert files == {".lock", "config.json", "results.csv", "results.md", "timing.json"}
    timing = json.loads((workdir / "timing.json").read_text())
    assert (timing["processes"], timing["devices"]) == (2, 4)
    assert [e["method"] for e in timing["entries"]] == ["loss2net"]
    assert timing["entries"][0]["xla_compiles"] > 0
    # Same devices, same partitioned program: bitwise.
    pd.testing.assert_frame_equal(_table(workdir), _table(runs["1x4"][0]))
    # One device fuses differently: float rounding.
    a, b = _table(workdir), _table(runs["1x1"][0])
    for col in ("test_cost", "rmse", "mae"):
        pd.testing.assert_series_equal(a[col], b[col], rtol=1e-4, atol=1e-5)


def test_a_killed_process_stops_the_others_and_the_rerun_resumes(runs, tmp_path):
    workdir = tmp_path / "killed"
    cache = runs["2x2"][0].parent / "cache"
    procs = _start(2, workdir, cache)
    seen = []
    for line in procs[0].stderr:
        seen.append(line)
        if "epoch 3/" in line:
            break
    procs[1].kill()
    t0 = time.perf_counter()
    codes, errs = _finish(procs[:1])
    procs[1].wait(timeout=60)
    waited = time.perf_counter() - t0
    assert codes == [3], "".join(seen) + errs[0][-3000:]
    last = errs[0].strip().splitlines()[-1]
    assert last.startswith("l2n_train: error: process 0: the multi-process run failed")
    assert last.endswith("rerun the same command on every process to resume")
    assert waited < 60  # bounded: gloo sees the closed connection at the next gather
    assert list((workdir / "checkpoints").rglob("*.ckpt"))

    codes, errs = _finish(_start(2, workdir, cache))
    assert codes == [0, 0], errs[0][-3000:]
    found = re.search(r"resuming from .* at epoch (\d+)/8", errs[0])
    assert found and int(found[1]) >= 3, errs[0][-3000:]
    pd.testing.assert_frame_equal(_table(workdir), _table(runs["2x2"][0]))
