"""``l2n_train``: train and compare every method of a use case on its shipped data.

Example::

    l2n_train --usecase=netalloc --seeds=5 --workdir=runs/netalloc

writes ``results.csv`` (one row per site x method x seed), ``results.md`` (mean ±
std per site x method) and ``config.json`` under ``--workdir``. Progress lines
(epoch, steps/s, ETA, costs) go to the log (stderr).
"""

import dataclasses
import json
import os
import pathlib
import sys

import jax
import pandas as pd
from absl import app, flags, logging

from l2n_jax.compare import METHODS, run_method, summary_table

_USECASE = flags.DEFINE_string(
    "usecase", None, "Use case to run: netalloc | toy (see README)."
)
_SEEDS = flags.DEFINE_integer(
    "seeds", 5, "Number of seeds per method (trained together in one vmapped program).",
    lower_bound=1,
)
_SEED_OFFSET = flags.DEFINE_integer(
    "seed_offset", 0, "First seed; seeds are seed_offset .. seed_offset+seeds-1.",
    lower_bound=0,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory for results.csv/results.md (default runs/<usecase>)."
)
_METHODS = flags.DEFINE_list(
    "method", None,
    "Comma-separated methods (default: the use case's list). Known: " + ", ".join(METHODS),
)
_SITES = flags.DEFINE_list("sites", None, "Comma-separated sites (default: all of the use case).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Override the total epochs of every method.", lower_bound=2
)
_BATCH = flags.DEFINE_integer("batch_size", None, "Override the batch size.", lower_bound=1)
_QUICK = flags.DEFINE_bool("quick", False, "Tiny smoke-test budget (seconds, not minutes).")
_BETA = flags.DEFINE_float(
    "beta", None, "netalloc: SLA fee of an under-provision (scaled units, default 0.5).",
    lower_bound=0.0,
)
_GAMMA = flags.DEFINE_float(
    "gamma", None, "netalloc: cost per unit of over-provision (default 1.0).", lower_bound=0.0
)


def _metric_params(name):
    params = {}
    if _BETA.value is not None:
        params["beta"] = _BETA.value
    if _GAMMA.value is not None:
        params["gamma"] = _GAMMA.value
    if params and name != "netalloc":
        raise app.UsageError(f"--beta/--gamma apply to netalloc only, not {name}")
    return params


def main(argv):
    """Runs the CLI; a usage error is one line on stderr and exit status 1."""
    try:
        _main(argv)
    except app.UsageError as e:
        print(f"l2n_train: error: {e} (see l2n_train --help)", file=sys.stderr)
        sys.exit(1)


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from usecases import REGISTRY

    name = _USECASE.value
    if name is None:
        raise app.UsageError(f"--usecase is required; one of {', '.join(REGISTRY)}")
    if name not in REGISTRY:
        raise app.UsageError(f"unknown --usecase={name}; one of {', '.join(REGISTRY)}")
    uc = REGISTRY[name]
    methods = tuple(_METHODS.value or uc.methods)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise app.UsageError(f"unknown --method {bad}; known: {', '.join(METHODS)}")
    sites = tuple(_SITES.value or uc.sites)
    bad = [s for s in sites if s not in uc.sites]
    if bad:
        raise app.UsageError(f"unknown --sites {bad} for {name}; sites: {', '.join(uc.sites)}")
    params = _metric_params(name)
    config = uc.get_config(quick=_QUICK.value)
    overrides = {}
    if _EPOCHS.value is not None:
        overrides["epochs"] = _EPOCHS.value
        overrides["pretrain_epochs"] = min(config.pretrain_epochs, _EPOCHS.value // 2)
    if _BATCH.value is not None:
        overrides["batch_size"] = _BATCH.value
    try:
        config = config.replace(**overrides)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    workdir = pathlib.Path(_WORKDIR.value or os.path.join("runs", name))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise app.UsageError(f"--workdir={workdir} is not writable: {e.strerror}") from None

    seeds = tuple(range(_SEED_OFFSET.value, _SEED_OFFSET.value + _SEEDS.value))
    try:
        metric = uc.make_metric(**params)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    options = uc.options(**params)
    logging.info(
        "l2n_train usecase=%s sites=%s methods=%s seeds=%s devices=%s",
        name, sites, methods, seeds, jax.devices(),
    )
    (workdir / "config.json").write_text(
        json.dumps(
            {"usecase": name, "metric_params": params, "seeds": seeds,
             "config": dataclasses.asdict(config)},
            indent=2,
        )
    )
    frames = []
    for site in sites:
        ws = uc.load(site)
        for method in methods:
            df = run_method(method, config, ws, metric, seeds, options, label=f"{name}/{site}")
            df.insert(0, "site", site)
            df.insert(0, "usecase", name)
            frames.append(df)
            # Written after every method so a long run leaves partial results.
            _write(workdir, frames)
    results = _write(workdir, frames)
    print(summary_table(results))
    logging.info("wrote %s and %s", workdir / "results.csv", workdir / "results.md")


def _write(workdir, frames):
    results = pd.concat(frames, ignore_index=True).rename(columns={"cost": "test_cost"})
    results.to_csv(workdir / "results.csv", index=False)
    (workdir / "results.md").write_text(summary_table(results))
    return results


def run():
    """Console-script entry point."""
    # --help lists the main module's key flags; under a console script the main
    # module is the wrapper, so register this module's flags for it.
    for flag in flags.FLAGS.get_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    app.run(main)


if __name__ == "__main__":
    sys.exit(run())
