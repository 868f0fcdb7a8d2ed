"""Multi-device: with 4 (forced host) devices the seed axis is sharded across them,
and the results equal the single-device run up to float rounding."""

import os
import pathlib
import subprocess
import sys

import numpy as np

SCRIPT = pathlib.Path(__file__).with_name("sharded_fit.py")


def _run(out, devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split()
        if "xla_force_host_platform_device_count" not in f
    ) + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sharded_seeds_equal_the_single_device_run(tmp_path):
    one = _run(tmp_path / "one.npz", 1)
    four = _run(tmp_path / "four.npz", 4)
    assert "devices=1 run_devices=1" in one
    assert "devices=4 run_devices=4" in four  # the run really was split
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "four.npz")
    assert a.files == b.files
    for k in a.files:
        # Partitioned programs may fuse differently: equal to float rounding.
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)
