"""l2n_train: train Loss2Net and the baselines of a use case on its shipped data, and
tabulate their true test costs (lower is better).

Examples:

    l2n_train --usecase=netalloc --quick                 # a smoke run
    l2n_train --usecase=netalloc --seeds=5 --workdir=runs/netalloc
    l2n_train --usecase=power --method=loss2net,mse_margin --sites=PJME,DOM
    l2n_train --usecase=netalloc --plugins=my_methods --method=loss2net,huber_margin

It writes results.csv (one row per site x method x seed), results.md (mean ± std
per site x method), config.json and timing.json (wall and compile seconds, XLA
compilations per method) under --workdir, and prints progress lines
(epoch, steps/s, ETA, costs) to stderr. Rerun a command on the same --workdir to
resume it.

Resume: every training writes a checkpoint under ``<workdir>/checkpoints/`` every
``--checkpoint_every`` epochs, and finished (site, method) rows go to results.csv at
once. Run the same command again on the same workdir and it skips what is finished
and resumes the rest from its checkpoints, with the same final results as an
uninterrupted run (bitwise on CPU). A workdir holding a different run (other seeds,
config or metric parameters) is refused unless ``--overwrite``.
"""

import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import sys

import jax
from absl import app, flags, logging

import l2n_jax
from l2n_jax import (
    cli_process,
    compiles,
    config as config_lib,
    distributed,
    progress,
    tables,
    timing,
    usecases,
)
from l2n_jax import methods as methods_lib
from l2n_jax import workdir as workdir_lib
from l2n_jax.fit import NonFiniteError
from l2n_jax.loop import Interrupted


def _per_usecase(fn) -> str:
    """'name: value; ...' over the use cases, for help texts."""
    return "; ".join(f"{name}: {fn(uc)}" for name, uc in usecases.REGISTRY.items())


_USECASE = flags.DEFINE_string(
    "usecase", None, "Use case to run: " + " | ".join(usecases.REGISTRY) + " (see README)."
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
    "Comma-separated methods. Default per use case: "
    + _per_usecase(lambda uc: ", ".join(uc.methods)) + ". Registered: "
    + ", ".join(methods_lib.names()) + " (and any that --plugins registers).",
)
_SITES = flags.DEFINE_list(
    "sites", None, "Comma-separated sites. Default per use case: "
    + _per_usecase(lambda uc: ", ".join(uc.default_sites or uc.sites)) + ".",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Override the total epochs of every method. Default per use case: "
    + _per_usecase(lambda uc: uc.get_config().epochs) + " (--quick: 3).", lower_bound=2
)
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Override the batch size. Default per use case: "
    + _per_usecase(lambda uc: uc.get_config().batch_size) + " (--quick: 64).",
    lower_bound=1,
)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", None,
    "Write a checkpoint every N epochs (Config.checkpoint_every). Default: with every "
    "progress line, i.e. every Config.log_every epochs, per use case: "
    + _per_usecase(lambda uc: uc.get_config().log_every) + " (--quick: 1; "
    "--set=log_every=N changes it).", lower_bound=1,
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False,
    "Discard results and checkpoints already in --workdir instead of resuming them.",
)
_SET = flags.DEFINE_multi_string(
    "set", [],
    "Override a Config field, NAME=VALUE (repeatable; tuples as 256,256,128), e.g. "
    "--set=shaper_sin=xla --set=replay_size=0.",
)
_PLUGINS = flags.DEFINE_list(
    "plugins", [],
    "Python modules to import first (from the current directory or the path), e.g. "
    "ones that register methods with l2n_jax.methods.register.",
)
_QUICK = flags.DEFINE_bool(
    "quick", False, "Smoke run: a tiny budget, fast compilation, sites batched "
    "(--batch_sites); seconds, not minutes.")
_BATCH_SITES = flags.DEFINE_bool(
    "batch_sites", None,
    "Train the sites that have the same window shapes in one program per method "
    "(padded where their lengths differ; a site then trains as it does alone through "
    "the padded path, up to float rounding). Default: on for power and with --quick, "
    "else off.",
)
_CACHE = flags.DEFINE_string(
    "compilation_cache", os.environ.get("L2N_JAX_CACHE", "~/.cache/l2n_jax/xla"),
    "Directory of JAX's persistent compilation cache, shared by runs (a program "
    "compiled once is loaded, not compiled, by later runs); '' turns it off. Default "
    "from $L2N_JAX_CACHE, else ~/.cache/l2n_jax/xla.",
)
_BETA = flags.DEFINE_float(
    "beta", None, "netalloc only: SLA fee of an under-provision (scaled units, default "
    "0.5).", lower_bound=0.0,
)
_GAMMA = flags.DEFINE_float(
    "gamma", None, "netalloc only: cost per unit of over-provision (default 1.0).",
    lower_bound=0.0,
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


def _parse_field(config, text):
    """``NAME=VALUE`` -> (name, value typed as the field's current value)."""
    try:
        return config_lib.parse_field(config, text)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def _app_main(argv):
    """Runs the CLI; a usage error is one line on stderr and exit status 1."""
    try:
        _main(argv)
    except app.UsageError as e:
        print(f"l2n_train: error: {e} (see l2n_train --help)", file=sys.stderr)
        sys.exit(1)
    except NonFiniteError as e:
        print(f"l2n_train: error: {e}", file=sys.stderr)
        sys.exit(2)
    except jax.errors.JaxRuntimeError as e:
        if not distributed.multi():
            raise
        cli_process.exit_failed(e)
    except KeyboardInterrupt as e:
        # Ctrl-C: one line, the checkpoints stay, 130 as shells report SIGINT.
        text = str(e) if isinstance(e, Interrupted) else "interrupted"
        print(f"l2n_train: {text}; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def _import_plugins(names):
    # A console script does not put the current directory on the path.
    sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # a user's module: report whatever it raised
            raise app.UsageError(f"--plugins: cannot import {name!r}: "
                                 f"{type(e).__name__}: {e}") from None


def _config(uc):
    config = uc.get_config(quick=_QUICK.value)
    overrides = {}
    if _EPOCHS.value is not None:
        overrides["epochs"] = _EPOCHS.value
        overrides["pretrain_epochs"] = min(config.pretrain_epochs, _EPOCHS.value // 2)
    if _BATCH.value is not None:
        overrides["batch_size"] = _BATCH.value
    if _CHECKPOINT_EVERY.value is not None:
        overrides["checkpoint_every"] = _CHECKPOINT_EVERY.value
    overrides.update(_parse_field(config, text) for text in _SET.value)
    try:
        return config.replace(**overrides)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def _selection():
    """(use case, methods, sites) the flags ask for, each checked."""
    name = usecases.ALIASES.get(_USECASE.value, _USECASE.value)
    if name is None:
        raise app.UsageError(f"--usecase is required; one of {', '.join(usecases.REGISTRY)}")
    if name not in usecases.REGISTRY:
        raise app.UsageError(f"unknown --usecase={name}; one of "
                             f"{', '.join(usecases.REGISTRY)}")
    uc = usecases.REGISTRY[name]
    chosen = tuple(_METHODS.value or uc.methods)
    known = methods_lib.names(name)
    bad = [m for m in chosen if m not in known]
    if bad:
        raise app.UsageError(f"unknown --method {bad} for {name}; known: {', '.join(known)}")
    sites = tuple(_SITES.value or uc.default_sites or uc.sites)
    bad = [s for s in sites if s not in uc.sites]
    if bad:
        raise app.UsageError(f"unknown --sites {bad} for {name}; sites: {', '.join(uc.sites)}")
    return uc, chosen, sites


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _QUICK.value:
        cli_process.quick_compiles()
    cli_process.join()
    cli_process.compilation_cache(_CACHE.value)
    _import_plugins(_PLUGINS.value)
    uc, chosen, sites = _selection()
    params = _metric_params(uc.name)
    config = _config(uc)
    workdir = workdir_lib.make(_WORKDIR.value or os.path.join("runs", uc.name))
    # The main process holds the workdir; the run's other processes share it.
    with workdir_lib.lock(workdir) if distributed.is_main() else contextlib.nullcontext():
        _table(uc, chosen, sites, params, config, workdir)


def _table(uc, chosen, sites, params, config, workdir):
    """Trains and tabulates what ``workdir`` does not hold yet."""
    seeds = tuple(range(_SEED_OFFSET.value, _SEED_OFFSET.value + _SEEDS.value))
    try:
        metric = uc.make_metric(**params)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    _say(f"l2n_train: {uc.name}, sites {', '.join(sites)}, methods {', '.join(chosen)}, "
         f"seeds {seeds[0]}..{seeds[-1]}, on {_devices()}; results in {workdir}")
    run_info = {"usecase": uc.name, "metric_params": params, "seeds": list(seeds),
                "config": dataclasses.asdict(config), "l2n_jax": l2n_jax.__version__}
    main = distributed.is_main()
    if main:
        done = workdir_lib.prepare(workdir, run_info, _OVERWRITE.value)
        (workdir / "config.json").write_text(json.dumps(run_info, indent=2))
    # The others read what the main process kept (a shared filesystem), so every
    # process trains the same (site, method) list.
    distributed.barrier("l2n_train: workdir prepared")
    if not main:
        done = workdir_lib.prepare(workdir, run_info, overwrite=False)
    header = workdir_lib.header(uc, params, seeds, config, sys.argv[1:])
    results = _run_table(uc, chosen, sites, config, metric, params, seeds, workdir, done,
                         header)
    distributed.barrier("l2n_train: table done")
    if not main:
        return
    # Every training finished and its rows are written: the checkpoints are spent.
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    print((uc.summary or tables.summary_table)(results))
    plot = workdir / "results.png"
    if tables.plot_costs(results, plot, f"{uc.name}: test cost per method and site"):
        _say(f"l2n_train: wrote {plot}")
    _say(f"l2n_train: wrote {workdir / 'results.csv'} and {workdir / 'results.md'}")


def _say(text):
    progress.to_stderr(text)


def _devices():
    if not distributed.multi():
        return ", ".join(str(d) for d in jax.devices())
    return (f"{jax.device_count()} devices of {jax.process_count()} processes "
            f"({jax.devices()[0].platform})")


def _site_groups(uc, sites, batch):
    """Sites trained together: alone, or (``batch``) grouped by window shapes."""
    if not batch:
        return [(s,) for s in sites]
    groups: dict = {}
    for s in sites:
        shapes = tuple(x.shape[1:] for x in uc.load(s).train)
        groups.setdefault(shapes, []).append(s)
    return [tuple(g) for g in groups.values()]


def _run_table(uc, chosen, sites, config, metric, params, seeds, workdir, done, header):
    """Every (site group, method) not already in ``done``; rows written after each."""
    frames = [] if done is None else [done]
    cache = methods_lib.FitCache()  # trainings shared between this run's methods
    batch = _BATCH_SITES.value
    if batch is None:
        batch = uc.batch_sites or _QUICK.value
    groups = _site_groups(uc, sites, batch)
    todo = [(g, m) for g in groups for m in chosen
            if not all(workdir_lib.finished(done, s, m) for s in g)]
    overall = progress.Overall(len(todo), _say)
    spent, main = [], distributed.is_main()
    for group in groups:
        wss = {s: uc.load(s) for s in group}
        label = f"{uc.name}/{group[0]}" if len(group) == 1 else uc.name
        checkpoints = workdir / "checkpoints" / (group[0] if len(group) == 1
                                                 else "+".join(group))
        for method in chosen:
            pending = {s: ws for s, ws in wss.items() if not workdir_lib.finished(done, s, method)}
            for s in set(wss) - set(pending):
                _say(f"[{uc.name}/{s}/{method}] already in results.csv, skipped")
            if not pending:
                continue
            overall.start(f"{method} on {', '.join(pending)}")
            task = methods_lib.Task(config, pending, metric, seeds, uc.options(**params),
                                    label, str(checkpoints), cache)
            before = compiles.total()
            rows = methods_lib.run(method, task, uc.name).rows
            spent.append(timing.entry(method, pending, rows["train_s"].iloc[0],
                                      compiles.total() - before))
            overall.finish()
            rows.insert(0, "usecase", uc.name)
            frames.append(rows.rename(columns={"cost": "test_cost"}))
            # Written after every method so a long run leaves partial results.
            workdir_lib.write(workdir, frames, uc, header, main)
            if main:
                timing.write(workdir / "timing.json", spent)
    return workdir_lib.write(workdir, frames, uc, header, main)


_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def main():
    """Console-script entry point (``l2n_train``)."""
    # --help lists the main module's key flags; under a console script the main
    # module is the wrapper, so register this module's flags for it.
    for module in (__name__, cli_process.__name__):
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    # absl prints the main module's docstring above the flags.
    sys.modules["__main__"].__doc__ = __doc__.split("\n\nResume:")[0]
    # Progress goes to stderr as plain lines; absl's INFO chatter (JAX's "Unable to
    # initialize backend 'tpu'") stays out of the way.
    logging.set_verbosity(logging.WARNING)
    logging.use_absl_handler()
    try:
        app.run(_app_main)
    except SystemExit as e:
        # absl exits with status 1 after printing --help; asking for help is not
        # an error (scripts run `l2n_train --help`).
        if e.code == 1 and any(a in _HELP_FLAGS for a in sys.argv[1:]):
            sys.exit(0)
        raise


if __name__ == "__main__":
    sys.exit(main())
