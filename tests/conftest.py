"""Shared fixtures: tiny configs and small synthetic series, CPU only.

JAX_PLATFORMS must be set before jax is imported anywhere, so it is set here at
import time (pytest imports conftest.py before any test module).
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
# The tiny test programs spend most of their time in XLA compilation; skipping
# LLVM's optimisation passes roughly halves the suite's runtime on CPU.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import tempfile  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from absl import logging  # noqa: E402

import l2n_jax as l2n  # noqa: E402

logging.set_verbosity(logging.WARNING)

# JAX's persistent compilation cache for the suite and its l2n_train subprocesses
# (through $L2N_JAX_CACHE), apart from l2n_train's own: a rerun loads what an
# earlier run compiled (the suite: 4 min cold, 2 min warm on 2 cores). Set
# L2N_JAX_TEST_CACHE to move it, or to "" for a fresh temporary one.
_CACHE = os.environ.get("L2N_JAX_TEST_CACHE",
                        os.path.expanduser("~/.cache/l2n_jax/xla-tests"))
_CACHE = _CACHE or tempfile.mkdtemp(prefix="l2n_jax_test_xla_")
os.makedirs(_CACHE, exist_ok=True)
os.environ["L2N_JAX_CACHE"] = _CACHE
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

MAX_WORKERS = 4  # pytest-xdist's '-n auto' (pyproject.toml): at most this many


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, if installed
def pytest_xdist_auto_num_workers(config):
    """One worker per core this process may use (not every core the machine has:
    a container's CPU set), at most MAX_WORKERS: each worker holds its own JAX."""
    del config
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


# Under-provisioning is UNDER_WEIGHT times dearer than over-provisioning: the
# optimal decision is the UNDER_WEIGHT / (UNDER_WEIGHT + 1) quantile (0.8).
UNDER_WEIGHT = 4.0


def asymmetric_cost(decision, obs):
    """Per-sample jnp cost: 4 * relu(y - d) + relu(d - y), summed over outputs."""
    x = decision - obs
    return jnp.sum(UNDER_WEIGHT * jnp.maximum(-x, 0.0) + jnp.maximum(x, 0.0))


def asymmetric_cost_np(decisions, obs):
    """The same cost as a batched NumPy function: [B, m], [B, m] -> [B]."""
    x = np.asarray(decisions) - np.asarray(obs)
    return np.sum(UNDER_WEIGHT * np.maximum(-x, 0.0) + np.maximum(x, 0.0), axis=-1)


def make_series(n, seed=0, noise=0.3, extra_column=False):
    """A daily-like sinusoid plus AR(1) noise (phi = 0.6), as a DataFrame."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    shocks = rng.normal(0.0, 1.0, n)
    ar = np.zeros(n)
    for i in range(1, n):
        ar[i] = 0.6 * ar[i - 1] + shocks[i]
    frame = pd.DataFrame({"load": np.sin(2 * np.pi * t / 24) + noise * ar})
    if extra_column:
        frame["aux"] = np.cos(2 * np.pi * t / 24) + 0.1 * rng.normal(size=n)
    return frame


def tiny_config(**changes):
    base = dict(
        epochs=3,
        pretrain_epochs=1,
        batch_size=32,
        ir_mlp=(8,),
        assembler=(8,),
        shaper_hidden=(16, 16),
        log_every=1,
        # The paper's head, which most tests were written for; the default
        # quantile head has its own (test_quantile_head.py).
        decision_head="amount",
    )
    base.update(changes)
    return l2n.Config(**base)


@pytest.fixture(scope="session")
def config():
    return tiny_config()


@pytest.fixture(scope="session")
def windowset():
    """Two input series ('load', 'aux'), target 'load': ~270 training windows."""
    return l2n.make_windows(make_series(400, extra_column=True), ["load"], lookback=8)


@pytest.fixture(scope="session")
def train_windows(windowset):
    return windowset.train


@pytest.fixture(scope="session")
def valid_windows(windowset):
    return windowset.valid


@pytest.fixture(scope="session")
def fitted(config, windowset):
    """A tiny Loss2Net fit, two seeds, with validation (shared by API tests)."""
    return l2n.fit(
        config, windowset.train, asymmetric_cost, seeds=(0, 1), valid=windowset.valid
    )


@pytest.fixture
def key():
    return jax.random.key(0)
