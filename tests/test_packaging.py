"""A non-editable install (``pip install .``) works from anywhere: the use cases and
their data are inside the package (``l2n_jax.usecases``), nothing else is installed
at the top level."""

import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the project installed from a wheel (dependencies are taken
    from the running environment through a .pth, without its editable install)."""
    tmp = tmp_path_factory.mktemp("wheel_install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path line, not the running environment's own .pth files: its editable
    # l2n_jax stays out of this venv.
    (pathlib.Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, tmp


def _run(venv, cwd, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", L2N_JAX_CACHE="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_installed_package_holds_the_use_cases_and_their_data(installed):
    venv, tmp = installed
    code = ("import importlib.util, l2n_jax, l2n_jax.usecases as u; "
            "print(l2n_jax.__file__); print(importlib.util.find_spec('usecases')); "
            "print({n: u.REGISTRY[n].load(u.REGISTRY[n].sites[0]).train.inputs.shape "
            "for n in u.REGISTRY})")
    proc = _run(venv, tmp, "python", "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, top_level, shapes = proc.stdout.strip().splitlines()
    assert where.startswith(str(venv))  # the wheel, not the repository
    assert top_level == "None"  # no generic top-level `usecases` package
    for name in ("netalloc", "power", "toy", "acra"):
        assert name in shapes


def test_l2n_train_runs_from_the_installed_package(installed):
    venv, tmp = installed
    proc = _run(venv, tmp, "l2n_train", "--usecase=netalloc", "--quick", "--seeds=1",
                "--sites=eu", "--method=persistence,mse", "--workdir=out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp / "out" / "results.csv").exists()
