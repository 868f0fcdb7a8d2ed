"""Checkpoints of a training run, for exact resume after an interruption.

``fit``/``fit_fixed_loss`` write one file per run (all seeds) every
``config.checkpoint_every`` epochs (default: with every progress line), and when
started again on the same path they continue from the last one written. Because every PRNG key is ``fold_in``-derived
from the run key and the epoch/step counters, a resumed run is bitwise the same as an
uninterrupted one (tested on CPU).

Format: one msgpack file (``flax.serialization``) holding the flattened state leaves
as NumPy arrays, the per-chunk history, and a JSON fingerprint of what produced it.
Written to ``path + '.tmp'`` and then ``os.replace``d, so a kill mid-write leaves the
previous checkpoint intact. We use this rather than orbax-checkpoint because the state
is a few MB on one host, and a single atomic file that also carries the history and
the fingerprint is simpler to verify than orbax's directory-per-step layout with
asynchronous commits (see BUILD_NOTES.md).
"""

import hashlib
import json
import os
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np

_VERSION = 1


class Restored(NamedTuple):
    """A checkpoint read back: the state and what the run had logged so far."""

    state: Any
    epoch: int  # epochs of the main phase completed
    chunks: list  # per-chunk history dicts of [seeds, epochs, steps] arrays
    firsts: list  # first epoch of each chunk


def data_digest(*arrays) -> str:
    """A short hash of the training data, so a checkpoint is not resumed on other data."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def save(path: str, state, epoch: int, chunks, firsts, fingerprint: dict) -> None:
    """Atomically writes ``state`` (any pytree of arrays) and the history so far."""
    blob = {
        "version": _VERSION,
        "fingerprint": json.dumps(fingerprint, sort_keys=True),
        "epoch": int(epoch),
        "leaves": {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))},
        "chunks": {
            str(i): {k: np.asarray(v) for k, v in c.items()} for i, c in enumerate(chunks)
        },
        "firsts": np.asarray(firsts, np.int64),
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(blob))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restore(path: str, template, fingerprint: dict) -> Restored | None:
    """Reads ``path`` if it exists; ``template`` gives the state's structure.

    Returns None when there is no checkpoint. Raises ValueError naming the fields
    that differ when the checkpoint was written by another run (config, seeds,
    method, data), and when it is unreadable.
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            blob = flax.serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack raises several types on a damaged file
        raise ValueError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it to "
            "start the run afresh"
        ) from None
    if blob.get("version") != _VERSION:
        raise ValueError(f"checkpoint {path} has format {blob.get('version')}, expected {_VERSION}")
    saved = json.loads(blob["fingerprint"])
    want = json.loads(json.dumps(fingerprint, sort_keys=True))
    if saved != want:
        keys = sorted(set(saved) | set(want))
        diff = [k for k in keys if saved.get(k) != want.get(k)]
        if "config" in diff:
            sc, wc = saved.get("config", {}), want.get("config", {})
            fields = sorted(k for k in set(sc) | set(wc) if sc.get(k) != wc.get(k))
            diff[diff.index("config")] = f"config ({', '.join(fields)})"
        raise ValueError(
            f"checkpoint {path} was written by a different run (differs in: "
            f"{', '.join(diff)}); use another path/workdir or delete it"
        )
    treedef = jax.tree.structure(template)
    leaves = [blob["leaves"][str(i)] for i in range(treedef.num_leaves)]
    for i, (got, ref) in enumerate(zip(leaves, jax.tree.leaves(template))):
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise ValueError(
                f"checkpoint {path}: leaf {i} is {got.dtype}{list(got.shape)}, the run "
                f"needs {ref.dtype}{list(ref.shape)}"
            )
    state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    chunks = [blob["chunks"][str(i)] for i in range(len(blob["chunks"]))]
    return Restored(state, int(blob["epoch"]), chunks, [int(x) for x in blob["firsts"]])
