"""The files a training run leaves: metrics.json (docs/design.md §9) and history.csv.

Their schema, a check that names every problem, and atomic writing. Training writes them
(`unetcap.train.run`); the merge (`unetcap.merge`) and the merge of the kept segmentations
read them back. No TensorFlow, no pandas at import: the merge runs in the analysis
environment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from unetcap import UnetcapError
from unetcap.common import write_text_atomic

SCHEMA = 2
STATUSES = ("ok", "diverged")

# history.csv: one row per epoch (epoch counts from 1). val_bce and steps (optimizer steps of
# the epoch) are extra columns.
HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_dice", "lr", "seconds", "val_bce", "steps"]
HISTORY_REQUIRED = HISTORY_COLUMNS[:6]

# The fields a metrics.json must have (docs/design.md §9): key -> type or nested spec.
# "number" is an int or float (a metric may be null when it could not be computed).
_INT, _NUMBER, _STR, _METRIC = "int", "number", "str", "metric"
SPEC = {
    "schema": _INT,
    "run": {
        "size": _INT,
        "backbone": _STR,
        "family": _STR,
        "depth": _STR,
        "lr": _NUMBER,
        "reg": _NUMBER,
        "fold": _INT,
        "seed": _INT,
    },
    "status": _STR,
    "epochs": _INT,
    "best_epoch": _INT,
    "params": _INT,
    "n_images": {"train": _INT, "val": _INT, "test": _INT, "holdout": _INT},
    "val": {"bce": _METRIC, "dice": _METRIC},
    "test": {"bce": _METRIC, "dice": _METRIC},
    "holdout": {"bce": _METRIC, "dice": _METRIC, "patients": list},
    "seconds": {"train": _NUMBER, "eval": _NUMBER},
    "provenance": {"data_sha256": _STR, "config_sha256": _STR, "versions": dict, "device": _STR, "host": _STR},
}


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
        list: lambda v: isinstance(v, list),
    }[spec](value)
    if not ok:
        kind = {
            _INT: "an integer",
            _NUMBER: "a finite number",
            _METRIC: "a number or null",
            _STR: "a string",
            dict: "an object",
            list: "a list",
        }[spec]
        problems.append(f"field {where} is {value!r}, expected {kind}")


def check_metrics(obj) -> list[str]:
    """What is wrong with a metrics.json object (empty when it follows the schema)."""
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    if obj.get("schema") != SCHEMA:
        return [
            f"schema {obj.get('schema')!r}, this version reads schema {SCHEMA} "
            "(rerun the training runs, or merge with the version that wrote them)"
        ]
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
    obj, problems = load_metrics(path)
    if problems:
        raise UnetcapError(f"{path}: " + "; ".join(problems))
    return obj


def load_metrics(path) -> tuple[dict | None, list[str]]:
    """A metrics.json and what is wrong with it (the object is None when unreadable)."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        return None, [f"cannot read ({err})"]
    return obj, check_metrics(obj)


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
        raise UnetcapError(
            f"{path}: history.csv lacks the columns {missing} (expected {HISTORY_COLUMNS}); rerun the training run"
        )
    return frame
