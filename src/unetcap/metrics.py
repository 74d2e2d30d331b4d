"""DICE and BCE of a set, the metrics.json of a training run, and the merged tables.

DICE (docs/design.md §8) is global over all pixels of a set, on predictions rounded at 0.5:
DICE = 2 sum(y * round(p)) / (sum(y) + sum(round(p))). round() is numpy's (halves to
even: p = 0.5 counts as background, like tf.round). When both the masks and the rounded
predictions are empty, DICE is 0/0 and is defined as 1.0 (nothing to find, nothing found).

BCE is the mean over all pixels of -(y log p + (1 - y) log(1 - p)), with p clipped to
[1e-7, 1 - 1e-7] like Keras, summed in float64.

No TensorFlow here: the merge and the analysis read these files without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from unetcap import UnetcapError, write_text_atomic

SCHEMA = 1
EPSILON = 1e-7  # Keras' backend epsilon, the clip of p in BCE
STATUSES = ("ok", "diverged")

# history.csv: one row per epoch (epoch counts from 1). val_bce and steps (optimizer steps of
# the epoch) are extra columns.
HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_dice", "lr", "seconds", "val_bce", "steps"]
HISTORY_REQUIRED = HISTORY_COLUMNS[:6]
RUN_COLUMNS = ["size", "backbone", "family", "depth", "lr", "reg", "fold"]

# The fields a metrics.json must have (docs/design.md §9): key -> type or nested spec.
# "number" is an int or float (a metric may be null when it could not be computed).
_INT, _NUMBER, _STR, _METRIC = "int", "number", "str", "metric"
SPEC = {
    "schema": _INT,
    "run": {"size": _INT, "backbone": _STR, "family": _STR, "depth": _STR,
            "lr": _NUMBER, "reg": _NUMBER, "fold": _INT, "seed": _INT},
    "status": _STR,
    "epochs": _INT,
    "best_epoch": _INT,
    "params": _INT,
    "n_images": {"train": _INT, "val": _INT, "test": _INT},
    "val": {"bce": _METRIC, "dice": _METRIC},
    "test": {"bce": _METRIC, "dice": _METRIC},
    "seconds": {"train": _NUMBER, "eval": _NUMBER},
    "provenance": {"data_sha256": _STR, "config_sha256": _STR, "versions": dict,
                   "device": _STR, "host": _STR},
}

# Columns of the merged table, in this order; further (extra) fields follow.
METRICS_COLUMNS = [
    "size", "backbone", "family", "depth", "lr", "reg", "fold", "seed", "status", "epochs",
    "best_epoch", "params", "n_images_train", "n_images_val", "n_images_test", "val_bce",
    "val_dice", "test_bce", "test_dice", "seconds_train", "seconds_eval",
    "provenance_data_sha256", "provenance_config_sha256",
]


# ---------------------------------------------------------------- DICE and BCE
def dice_counts(y, p) -> tuple[int, int]:
    """(sum(y * round(p)), sum(y) + sum(round(p))) of masks `y` (0/1) and probabilities `p`."""
    y = np.asarray(y).astype(bool, copy=False)
    hard = np.rint(np.asarray(p)) >= 1
    return int(np.count_nonzero(y & hard)), int(np.count_nonzero(y)) + int(np.count_nonzero(hard))


def dice_from_counts(intersection: int, total: int) -> float:
    """2 * intersection / total; 1.0 when total is 0 (empty masks, empty predictions)."""
    return 1.0 if total == 0 else 2.0 * intersection / total


def dice(y, p) -> float:
    """Global DICE of a whole set (see the module docstring)."""
    return dice_from_counts(*dice_counts(y, p))


def bce_sum(y, p) -> float:
    """Sum over pixels of the binary cross-entropy (float64, p clipped to [eps, 1 - eps])."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return float(-np.sum(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def bce(y, p) -> float:
    """Mean binary cross-entropy over all pixels of a set."""
    n = np.asarray(y).size
    return bce_sum(y, p) / n if n else float("nan")


class Score:
    """DICE and BCE of a set, accumulated batch by batch (same numbers as dice() and bce()
    over the whole set at once), and the soft Dice loss of the whole set,
    1 - (2 sum(y p) + 1) / (sum(y) + sum(p) + 1) on the probabilities (the `bce+dice`
    training loss's second term)."""

    def __init__(self):
        self.intersection = self.total = self.pixels = 0
        self.bce_total = 0.0
        self.soft = np.zeros(2)  # sum(y p), sum(y) + sum(p), float64

    def add(self, y, p) -> None:
        i, t = dice_counts(y, p)
        self.intersection += i
        self.total += t
        self.pixels += np.asarray(y).size
        self.bce_total += bce_sum(y, p)
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        self.soft += (np.sum(y * p), np.sum(y) + np.sum(p))

    @property
    def soft_dice_loss(self) -> float:
        return float(1.0 - (2.0 * self.soft[0] + 1.0) / (self.soft[1] + 1.0))

    @property
    def dice(self) -> float:
        return dice_from_counts(self.intersection, self.total)

    @property
    def bce(self) -> float:
        return self.bce_total / self.pixels if self.pixels else float("nan")


# ---------------------------------------------------------------- files
def _check(value, spec, where: str, problems: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            problems.append(f"{where or 'the file'} is not an object")
            return
        for key, sub in spec.items():
            name = f"{where}.{key}" if where else key
            if key not in value:
                problems.append(f"missing field {name}")
            else:
                _check(value[key], sub, name, problems)
        return
    ok = {
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        _METRIC: lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
        _STR: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
    }[spec](value)
    if not ok:
        kind = {_INT: "an integer", _NUMBER: "a finite number", _METRIC: "a number or null",
                _STR: "a string", dict: "an object"}[spec]
        problems.append(f"field {where} is {value!r}, expected {kind}")


def check_metrics(obj) -> list[str]:
    """What is wrong with a metrics.json object (empty when it follows the schema)."""
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    if obj.get("schema") != SCHEMA:
        return [f"schema {obj.get('schema')!r}, this version reads schema {SCHEMA} "
                "(rerun the training runs, or merge with the version that wrote them)"]
    problems: list[str] = []
    _check(obj, SPEC, "", problems)
    if isinstance(obj.get("status"), str) and obj["status"] not in STATUSES:
        problems.append(f"field status is {obj['status']!r}, expected one of {list(STATUSES)}")
    return problems


def write_metrics(obj: dict, path) -> None:
    """Write a metrics.json atomically after checking it against the schema.

    Non-finite metric values are written as null (JSON has no NaN)."""
    problems = check_metrics(obj)
    if problems:
        raise UnetcapError(f"{path}: refusing to write an invalid metrics.json: " + "; ".join(problems))
    write_text_atomic(path, json.dumps(_nan_to_none(obj), indent=1) + "\n")


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_metrics(path) -> dict:
    """A metrics.json, checked against the schema; UnetcapError naming the file otherwise."""
    obj, problems = _load(path)
    if problems:
        raise UnetcapError(f"{path}: " + "; ".join(problems))
    return obj


def _load(path) -> tuple[dict | None, list[str]]:
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        return None, [f"cannot read ({err})"]
    return obj, check_metrics(obj)


def flatten(obj: dict) -> dict:
    """One row of the merged table: `run` fields unprefixed, nested fields joined with "_"
    (val.dice -> val_dice, provenance.versions.tensorflow -> provenance_versions_tensorflow)."""
    row: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}_{key}" if prefix else key, sub)
        elif isinstance(value, list):
            row[prefix] = json.dumps(value)
        else:
            row[prefix] = value

    for key, value in obj.items():
        if key == "schema":
            continue
        walk("" if key == "run" else key, value)
    first = [c for c in METRICS_COLUMNS if c in row]
    return {c: row[c] for c in first + [c for c in row if c not in first]}


# ---------------------------------------------------------------- history
def write_history(rows: list[dict], path) -> None:
    """history.csv (HISTORY_COLUMNS, one row per epoch) written atomically."""
    lines = [",".join(HISTORY_COLUMNS)]
    for row in rows:
        lines.append(",".join(_csv_value(row.get(c)) for c in HISTORY_COLUMNS))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _csv_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


def read_history(path):
    """A history.csv as a data frame; UnetcapError naming the file if columns are missing."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise UnetcapError(f"{path}: cannot read the history ({err})") from None
    missing = [c for c in HISTORY_REQUIRED if c not in frame.columns]
    if missing:
        raise UnetcapError(f"{path}: history.csv lacks the columns {missing} "
                           f"(expected {HISTORY_COLUMNS}); rerun the training run")
    return frame


# ---------------------------------------------------------------- merge
def _sort_key(row: dict):
    return (row["size"], row["backbone"], row["lr"], row["reg"], row["fold"])


def merge_metrics(paths):
    """Every metrics.json in one data frame, one row per run (sorted by size, backbone, lr,
    reg, fold). Every file is checked first; one UnetcapError names each bad file."""
    import pandas as pd

    rows, bad = [], []
    for path in paths:
        obj, problems = _load(path)
        if problems:
            bad.append(f"{path}: " + "; ".join(problems))
        else:
            rows.append(flatten(obj))
    if bad:
        raise UnetcapError(f"{len(bad)} metrics file(s) cannot be merged:\n  " + "\n  ".join(bad))
    rows.sort(key=_sort_key)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    return pd.DataFrame(rows, columns=columns or METRICS_COLUMNS)


def merge_histories(metrics_paths, history_paths):
    """Every history.csv in one data frame with its run's columns (RUN_COLUMNS, read from
    the metrics.json beside it) in front. history_paths[i] belongs to metrics_paths[i].
    The history's own `lr` (the rate during that epoch) becomes `epoch_lr`, since `lr` is
    the run's initial learning rate."""
    import pandas as pd

    if len(metrics_paths) != len(history_paths):
        raise UnetcapError(f"merge: {len(metrics_paths)} metrics files but {len(history_paths)} histories")
    frames, bad = [], []
    for mpath, hpath in zip(metrics_paths, history_paths):
        if Path(mpath).parent != Path(hpath).parent:
            bad.append(f"{hpath}: not in the folder of {mpath}")
            continue
        try:
            obj, frame = read_metrics(mpath), read_history(hpath)
        except UnetcapError as err:
            bad.append(str(err))
            continue
        run = flatten(obj)
        frame = frame.rename(columns={"lr": "epoch_lr"})  # "lr" is the run's initial rate
        for i, col in enumerate(RUN_COLUMNS):
            frame.insert(i, col, run[col])
        frames.append((_sort_key(run), frame))
    if bad:
        raise UnetcapError(f"{len(bad)} run(s) cannot be merged:\n  " + "\n  ".join(bad))
    frames.sort(key=lambda kf: kf[0])
    if not frames:
        return pd.DataFrame(columns=RUN_COLUMNS + [c if c != "lr" else "epoch_lr" for c in HISTORY_COLUMNS])
    return pd.concat([f for _, f in frames], ignore_index=True)


def merge(metrics_paths, history_paths, metrics_csv, histories_csv) -> None:
    """results/metrics.csv and results/histories.csv from every run's files, written
    atomically; nothing is written when any file is refused."""
    table = merge_metrics(metrics_paths)
    histories = merge_histories(metrics_paths, history_paths)
    write_text_atomic(metrics_csv, table.to_csv(index=False))
    write_text_atomic(histories_csv, histories.to_csv(index=False))
