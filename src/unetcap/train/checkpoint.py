"""The checkpoint a killed run resumes from: `checkpoint/state.npz` in the run folder, with
the weights, the optimizer state, the best weights so far and the loop's state (a JSON
text: epoch, early-stopping counters, learning rate, history rows). Written atomically
(temporary name, fsync, rename)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from unetcap.common import atomic_path, tmp_path

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.npz"


def write_checkpoint(folder: Path, state: dict, weights, best, optimizer_weights) -> None:
    """Save the loop `state`, the current `weights`, the `best` weights (None: the current
    ones) and the optimizer's weights."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"state": np.array(json.dumps(state))}
    arrays.update({f"w{i}": w for i, w in enumerate(weights)})
    if best is not None:
        arrays.update({f"b{i}": w for i, w in enumerate(best)})
    arrays.update({f"o{i}": w for i, w in enumerate(optimizer_weights)})
    with atomic_path(folder / CHECKPOINT_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read_checkpoint(folder: Path, key: str):
    """(state, weights, best or None, optimizer weights) of a checkpoint made with `key`,
    else None (no checkpoint, another run's, or unreadable: it is then discarded). A
    temporary file left by a killed write is removed."""
    tmp_path(folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))

            def pick(prefix):
                count = sum(1 for k in data.files if k[0] == prefix and k[1:].isdigit())
                return [data[f"{prefix}{i}"] for i in range(count)]

            weights, best, opt = pick("w"), pick("b") or None, pick("o")
    except Exception as err:  # any damage means: start again
        log.warning("discarding unreadable checkpoint %s (%s)", path, err)
        return None
    if state.get("key") != key:
        log.warning("discarding checkpoint %s: it belongs to other settings or data", path)
        return None
    return state, weights, best, opt
