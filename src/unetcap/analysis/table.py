"""The merged metrics table as the analysis reads it (docs/design.md §10-11): the file checked
for the columns every model needs, and the model frame of the paper's variables that the
statistics, the sample-size curves and the figures share. Imports no model library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError, schema
from unetcap.study import BACKBONES, FIGURE_ORDER

METRICS = ("test_dice", "val_dice")  # every merged table has these
# what each metric a model may explain is scored on
SCORED_ON = {
    "test_dice": "test set",
    "val_dice": "validation fold",
    "holdout_dice": "holdout pool: every sampled image of every holdout patient",
}
# The formula's variables, and the merged table's column each comes from.
VARIABLES = {"ls": "depth", "Family": "family", "Dataset": "size", "lr": "lr", "reg": "reg", "Backend": "train_backend"}
REQUIRED = ("size", "backbone", "family", "depth", "lr", "reg", "fold", "status")
# A run whose validation DICE ends below this learned nothing worth the name (docs/learning.md
# §1: "all background" ends at 0): it stays in every model, as the paper's 1620 did, and every
# table and figure that pools it says how many there are.
LEARNED_FLOOR = 0.05


def not_learned(metrics: pd.DataFrame) -> np.ndarray:
    """Runs whose validation DICE is below LEARNED_FLOOR (a missing one is not counted)."""
    val = pd.to_numeric(metrics["val_dice"], errors="coerce").to_numpy(dtype=float)
    return np.isfinite(val) & (val < LEARNED_FLOOR)


def not_learned_text(count: int) -> str:
    """The phrase every table and figure uses for them."""
    return f"{count} run(s) did not learn (validation DICE below {LEARNED_FLOOR:g}), kept"


def read_metrics(path) -> pd.DataFrame:
    """The merged metrics table (one row per training run), checked for the columns the
    analysis needs. Raises UnetcapError naming the file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise UnetcapError(f"{path}: the merged metrics table is missing; run the merge rule first")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UnetcapError(f"{path}: not a readable CSV table ({err})") from err
    check_metrics(table, where=str(path))
    return table


def check_metrics(table: pd.DataFrame, where: str = "metrics table") -> None:
    """Raise UnetcapError listing every problem of a merged metrics table at once."""
    problems = []
    missing = [c for c in (*REQUIRED, *METRICS) if c not in table.columns]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if table.empty:
        problems.append("no rows (no training run has finished)")
    if "backbone" in table.columns:
        unknown = sorted(set(table["backbone"].astype(str)) - set(BACKBONES))
        if unknown:
            problems.append(f"unknown backbone(s) {', '.join(unknown)} (known: {', '.join(BACKBONES)})")
    for col in ("size", "lr", "reg"):
        if col in table.columns and not pd.api.types.is_numeric_dtype(table[col]):
            problems.append(f"column {col} is not numeric")
    if problems:
        raise UnetcapError(f"{where}: " + "; ".join(problems))


@dataclass
class Frame:
    """The paper's variables, one row per usable run, and what was left out and why."""

    data: pd.DataFrame
    metric: str
    notes: list[str] = field(default_factory=list)
    runs: str = ""  # runs used and left out, and why: the line every table carries


def backend_column(metrics: pd.DataFrame) -> pd.Categorical:
    """Each run's training backend (`train_backend`; tensorflow for tables made before the
    backend was a setting), its levels in the schema's order so that the default,
    tensorflow, is a formula's reference level."""
    levels = schema.allowed("train", "backend")
    if "train_backend" not in metrics.columns:
        return pd.Categorical([levels[0]] * len(metrics), categories=levels)
    return pd.Categorical(metrics["train_backend"].fillna(levels[0]).astype(str), categories=levels)


def model_frame(metrics: pd.DataFrame, metric: str = "test_dice") -> Frame:
    """The frame every model is fitted on: `DICE` (the `metric` column), `ls` (depth),
    `Family`, `Dataset` (size), `lr`, `reg`, `Backend` (a factor a formula may name when
    the table holds runs of both training backends), plus `backbone`, `model` (the figures' short
    name), `size`, `fold`, `status`. Runs whose metric is not a finite number are left out
    (with a note); diverged runs with a finite DICE stay in, as in the paper's 1620."""
    if metric not in SCORED_ON:
        raise UnetcapError(f"analysis.metric: {metric!r} is not one of {', '.join(SCORED_ON)}")
    check_metrics(metrics)
    if metric not in metrics.columns:
        raise UnetcapError(f"metrics table: no column {metric} (made before the runs were scored on it)")
    dice = pd.to_numeric(metrics[metric], errors="coerce").astype(float)
    frame = pd.DataFrame(
        {
            "DICE": dice.to_numpy(),
            "ls": metrics["depth"].astype(str).to_numpy(dtype=object),
            "Family": metrics["family"].astype(str).to_numpy(dtype=object),
            "Dataset": metrics["size"].astype(float).to_numpy(),
            "lr": metrics["lr"].astype(float).to_numpy(),
            "reg": metrics["reg"].astype(float).to_numpy(),
            "Backend": backend_column(metrics),
            "backbone": metrics["backbone"].astype(str).to_numpy(dtype=object),
            "size": metrics["size"].astype(int).to_numpy(),
            "fold": metrics["fold"].to_numpy(),
            "status": metrics["status"].astype(str).to_numpy(dtype=object),
            "learned": ~not_learned(metrics),
        }
    )
    frame["model"] = frame["backbone"].map(lambda b: BACKBONES[b].short)
    notes = [f"Response: {metric} ({SCORED_ON[metric]} DICE)."]
    bad = ~np.isfinite(frame["DICE"].to_numpy())
    if bad.any():
        notes.append(f"{int(bad.sum())} run(s) without a finite {metric} left out.")
    frame = frame.loc[~bad].reset_index(drop=True)
    if len(frame) < 2:
        raise UnetcapError(
            f"metrics table: the analysis needs at least 2 runs with a finite {metric}, found {len(frame)}"
        )
    diverged = int((frame["status"] != "ok").sum())
    if diverged:
        notes.append(f"{diverged} run(s) with status other than ok (diverged) kept with their {metric}.")
    order = {b: i for i, b in enumerate(FIGURE_ORDER)}
    frame = frame.sort_values(
        ["backbone", "size", "lr", "reg", "fold"],
        key=lambda c: c.map(order) if c.name == "backbone" else c,
        kind="stable",
    ).reset_index(drop=True)
    notes.insert(1, f"{len(frame)} run(s) analysed.")
    left_out = f"{int(bad.sum())} left out (no finite {metric})" if bad.any() else "none left out"
    kept = f"; {diverged} diverged run(s) kept with their {metric}" if diverged else ""
    idle = int((~frame["learned"]).sum())
    kept += f"; {not_learned_text(idle)}" if idle else ""
    if idle:
        notes.append(f"{not_learned_text(idle)}: in every model, flagged in the figures.")
    runs = f"Runs: {len(frame)} of the {len(bad)} in the metrics table used, {left_out}{kept}."
    return Frame(frame, metric, notes, runs)
