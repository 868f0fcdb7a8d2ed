"""An ``l2n_train`` run's working directory: what is finished, what it holds, results.

A workdir holds ``config.json`` (what the run is), ``results.csv`` / ``results.md``
(rows written after every method) and ``checkpoints/``. Rerunning a command on it
skips finished (site, method) rows and resumes the rest; a workdir of another run
(other seeds, config or metric parameters) is refused unless ``overwrite``. A
running ``l2n_train`` holds its workdir (``lock``), so two runs never interleave
rows or overwrite each other's checkpoints.
"""

import fcntl
import json
import os
import pathlib
import shutil

import pandas as pd
from absl import app

from l2n_jax import progress, tables


def make(path: str) -> pathlib.Path:
    """The workdir at ``path``, created; a usage error if it is not writable."""
    workdir = pathlib.Path(path)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_test.{os.getpid()}"  # processes may share it
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise app.UsageError(f"--workdir={workdir} is not writable: {e.strerror}") from None
    return workdir


def lock(workdir: pathlib.Path):
    """Holds ``workdir`` for this process: a second ``l2n_train`` on it is refused.

    An advisory ``flock`` on ``<workdir>/.lock``, released by the kernel when the
    process ends however it ends, so a killed run leaves no stale lock. Returns the
    open file; the lock lasts as long as it is open.
    """
    path = workdir / ".lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise app.UsageError(
            f"--workdir={workdir} is in use by a running l2n_train ({holder}); wait "
            "for it to finish, or use another --workdir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
    handle.flush()
    return handle


def header(uc, params, seeds, config, argv) -> str:
    """The head of results.md: what was decided, the cost and its units, the run."""
    text = uc.describe(**params) if uc.describe else ""
    command = "l2n_train " + " ".join(a for a in argv if not a.startswith("--work"))
    pretrain = (f" (Loss2Net: {config.pretrain_epochs} of them MSE pre-training)"
                if config.pretrain_epochs else "")
    return (f"# {uc.name}: test cost per site × method (lower is better)\n\n{text}\n\n"
            f"Command: `{command}`; seeds {seeds[0]}..{seeds[-1]}; every network method "
            f"{config.epochs} epochs at batch {config.batch_size} of the same "
            f"predictor{pretrain}; knobs tuned on the validation split with the true "
            "metric.\n\n")


def finished(done, site, method) -> bool:
    return done is not None and ((done["site"] == site) & (done["method"] == method)).any()


def prepare(workdir, run_info, overwrite):
    """Rows already finished in ``workdir`` (None if none); refuses a different run."""
    info_path, csv_path = workdir / "config.json", workdir / "results.csv"
    if overwrite:
        for path in (info_path, csv_path, workdir / "results.md", workdir / "timing.json"):
            path.unlink(missing_ok=True)
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
        return None
    if not info_path.exists():
        return None
    try:
        old = json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        raise app.UsageError(f"--workdir={workdir}: config.json is unreadable ({e}); "
                             "pass --overwrite or another --workdir") from None
    # Chunk length does not change results, so a resume may use another one.
    ignore = {"log_every", "checkpoint_every"}
    diff = [k for k in ("usecase", "metric_params", "seeds") if old.get(k) != run_info[k]]
    old_cfg = old.get("config", {})
    diff += [f"config.{k}" for k, v in run_info["config"].items()
             if k not in ignore and old_cfg.get(k) != _jsonable(v)]
    if diff:
        raise app.UsageError(
            f"--workdir={workdir} holds a different run (differs in {', '.join(diff)}); "
            "pass --overwrite to discard it, or use another --workdir"
        )
    if not csv_path.exists():
        return None
    done = pd.read_csv(csv_path)
    progress.to_stderr(f"l2n_train: resuming in {workdir}: {len(done)} finished rows kept")
    return done


def _jsonable(value):
    return json.loads(json.dumps(value))


def write(workdir, frames, uc, header="", save=True):
    """The rows so far, in the use case's site order; written to results.csv and
    results.md when ``save`` (the main process of a multi-process run)."""
    results = pd.concat(frames, ignore_index=True)
    # Sites in the use case's order (a batched use case finishes method by method).
    order = {s: i for i, s in enumerate(uc.sites)}
    results = results.sort_values("site", key=lambda c: c.map(order), kind="stable",
                                  ignore_index=True)
    if save:
        results.to_csv(workdir / "results.csv", index=False)
        (workdir / "results.md").write_text(
            header + (uc.summary or tables.summary_table)(results))
    return results
