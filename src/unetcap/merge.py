"""The merge (stage 5, docs/design.md §10): every run's metrics.json and history.csv in one
table each, results/<study>/metrics.csv and results/<study>/histories.csv, and every run's
scores per holdout patient in results/<study>/holdout.csv.

Reads the run files through `unetcap.metrics`, which checks each one; never imports the
training stage or TensorFlow, so the `merge` rule runs in the analysis environment.
"""

from __future__ import annotations

import json
from pathlib import Path

from unetcap import UnetcapError
from unetcap.common import write_text_atomic
from unetcap.metrics import HISTORY_COLUMNS, load_metrics, read_history, read_metrics

RUN_COLUMNS = ["size", "backbone", "family", "depth", "lr", "reg", "fold", "repeat"]
# holdout.csv: one row per run and holdout patient (metrics.json's holdout.patients)
HOLDOUT_COLUMNS = [*RUN_COLUMNS, "patient", "pixels", "intersection", "total", "bce_sum"]

# Columns of the merged table, in this order; further (extra) fields follow.
METRICS_COLUMNS = [
    "size",
    "backbone",
    "family",
    "depth",
    "lr",
    "reg",
    "fold",
    "repeat",
    "seed",
    "status",
    "epochs",
    "best_epoch",
    "params",
    "n_images_train",
    "n_images_val",
    "n_images_test",
    "val_bce",
    "val_dice",
    "test_bce",
    "test_dice",
    "n_images_holdout",
    "holdout_bce",
    "holdout_dice",
    "seconds_train",
    "seconds_eval",
    "provenance_data_sha256",
    "provenance_config_sha256",
]


def flatten(obj: dict) -> dict:
    """One row of the merged table: `run` fields unprefixed, nested fields joined with "_"
    (val.dice -> val_dice, provenance.versions.tensorflow -> provenance_versions_tensorflow).
    The holdout's per-patient counts go to holdout.csv (`holdout_rows`), not here."""
    row: dict = {}
    obj = {**obj, "holdout": {k: v for k, v in obj.get("holdout", {}).items() if k != "patients"}}

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


def _sort_key(row: dict):
    return (row["size"], row["backbone"], row["lr"], row["reg"], row["fold"])


def merge_metrics(paths):
    """Every metrics.json in one data frame, one row per run (sorted by size, backbone, lr,
    reg, fold). Every file is checked first; one UnetcapError names each bad file."""
    import pandas as pd

    rows, bad = [], []
    for path in paths:
        obj, problems = load_metrics(path)
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


def holdout_rows(obj: dict) -> list[dict]:
    """holdout.csv's rows of one run: its run columns and each holdout patient's counts."""
    run = {c: obj["run"].get(c, 0) for c in RUN_COLUMNS}
    return [{**run, **{c: p[c] for c in HOLDOUT_COLUMNS[len(RUN_COLUMNS) :]}} for p in obj["holdout"]["patients"]]


def merge_holdout(paths):
    """Every run's holdout scores per patient in one data frame (HOLDOUT_COLUMNS), sorted
    like the merged table: what the sample-size analysis resamples patients from."""
    import pandas as pd

    objs, bad = [], []
    for path in paths:
        obj, problems = load_metrics(path)
        if problems:
            bad.append(f"{path}: " + "; ".join(problems))
            continue
        missing = [
            f"holdout.patients[{i}].{c}"
            for i, p in enumerate(obj["holdout"]["patients"])
            for c in HOLDOUT_COLUMNS[len(RUN_COLUMNS) :]
            if not isinstance(p, dict) or c not in p
        ]
        if missing:
            bad.append(f"{path}: missing field(s) {', '.join(missing[:5])}")
        objs.append(obj)
    if bad:
        raise UnetcapError(f"{len(bad)} metrics file(s) cannot be merged:\n  " + "\n  ".join(bad))
    objs.sort(key=lambda o: _sort_key(o["run"]))
    return pd.DataFrame([row for obj in objs for row in holdout_rows(obj)], columns=HOLDOUT_COLUMNS)


def merge(metrics_paths, history_paths, metrics_csv, histories_csv, holdout_csv) -> None:
    """results/<study>/metrics.csv, histories.csv and holdout.csv from every run's files,
    written atomically; nothing is written when any file is refused."""
    table = merge_metrics(metrics_paths)
    histories = merge_histories(metrics_paths, history_paths)
    holdout = merge_holdout(metrics_paths)
    write_text_atomic(metrics_csv, table.to_csv(index=False))
    write_text_atomic(histories_csv, histories.to_csv(index=False))
    write_text_atomic(holdout_csv, holdout.to_csv(index=False))
