"""The runs a learning curve is fitted on, and bootstrap replicates of their means that
resample the study's independent units (numpy and pandas only).

Two kinds of unit make a run's score vary, and runs share them:
- **training sets** (`fold` at a size: each fold of each repeat is one draw of training
  patients, shared by every model and lr x reg of that size): resampled with replacement
  within each size, the same draw for every model;
- **holdout patients** (every run is scored on the same pool, `holdout.csv`): resampled
  with replacement once per replicate, the same draw for every run, and each run's DICE
  recomputed from its per-patient counts as 2 sum(intersection) / sum(total) (global DICE,
  docs/design.md §8). Runs that share a test set are never treated as independent.

Without per-patient counts (a metric other than the holdout pool's, or a table made before
it was scored) only the training sets are resampled, and the notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.study import FIGURE_ORDER


@dataclass
class Units:
    """The runs of the curves, grouped: M models x K sizes, the training-set units of each
    size and, when known, each run's per-patient holdout counts."""

    backbones: list[str]
    sizes: np.ndarray  # (K,)
    runs: pd.DataFrame  # backbone, size, fold, DICE; one row per run, sorted
    model: np.ndarray  # (n_runs,) model index
    size: np.ndarray  # (n_runs,) size index
    unit: np.ndarray  # (n_runs,) training-set unit index
    unit_size: np.ndarray  # (n_units,) size index of each unit
    counts: np.ndarray | None = None  # (n_runs, P, 2): intersection, total per holdout patient
    patients: list[str] = field(default_factory=list)

    @property
    def weights(self) -> np.ndarray:
        """(M, K): training-set units behind each model's mean at each size (0: none)."""
        out = np.zeros((len(self.backbones), len(self.sizes)))
        seen = set(zip(self.model, self.unit))
        for m, u in seen:
            out[m, self.unit_size[u]] += 1
        return out

    def units_per_size(self) -> np.ndarray:
        return np.bincount(self.unit_size, minlength=len(self.sizes))

    def subset(self, keep_sizes) -> Units:
        """The units of the sizes in `keep_sizes` only (a backtest's reduced study)."""
        return self._rows(np.isin(self.sizes, keep_sizes)[self.size])

    def only(self, backbones) -> Units:
        """The units of these models only."""
        return self._rows(self.runs["backbone"].isin(list(backbones)).to_numpy())

    def _rows(self, rows: np.ndarray) -> Units:
        counts = None if self.counts is None else (self.counts[rows], self.patients)
        return make_units(self.runs.loc[rows], counts)


def make_units(runs: pd.DataFrame, counts=None) -> Units:
    """Units from runs (backbone, size, fold, DICE) and optionally (counts (n_runs, P, 2)
    aligned with `runs`, patient ids)."""
    order = {b: i for i, b in enumerate(FIGURE_ORDER)}
    runs = runs.reset_index(drop=True)
    backbones = sorted(set(runs["backbone"]), key=order.get)
    sizes = np.array(sorted(set(runs["size"].astype(float))))
    model = runs["backbone"].map({b: i for i, b in enumerate(backbones)}).to_numpy()
    size = np.searchsorted(sizes, runs["size"].astype(float).to_numpy())
    keys = list(zip(size, runs["fold"].astype(int)))
    unit_ids = {k: i for i, k in enumerate(sorted(set(keys)))}
    unit = np.array([unit_ids[k] for k in keys], dtype=int)
    unit_size = np.array([k[0] for k in sorted(unit_ids)], dtype=int)
    arrays, patients = (None, []) if counts is None else counts
    return Units(backbones, sizes, runs, model, size, unit, unit_size, arrays, list(patients))


def holdout_counts(runs: pd.DataFrame, holdout: pd.DataFrame, where: str = "holdout.csv"):
    """(counts (n_runs, P, 2), patients) of each run of `runs` from holdout.csv's rows;
    UnetcapError when a run has no rows or the runs do not share one holdout pool."""
    keys = ["size", "backbone", "lr", "reg", "fold"]
    patients = sorted(set(holdout["patient"].astype(str)))
    index = {p: j for j, p in enumerate(patients)}
    grouped = {k: g for k, g in holdout.groupby(keys, sort=False)}
    out = np.zeros((len(runs), len(patients), 2))
    missing, partial = [], []
    for i, run in enumerate(runs[keys].itertuples(index=False)):
        key = (int(run.size), run.backbone, float(run.lr), float(run.reg), int(run.fold))
        rows = grouped.get(key)
        if rows is None:
            missing.append(key)
            continue
        if len(rows) != len(patients):
            partial.append(key)
        j = rows["patient"].astype(str).map(index).to_numpy()
        out[i, j, 0] = rows["intersection"].to_numpy()
        out[i, j, 1] = rows["total"].to_numpy()
    if missing or partial:
        raise UnetcapError(
            f"{where}: {len(missing)} run(s) without holdout rows (e.g. {missing[:2]}) and {len(partial)} scored on "
            f"another holdout pool (e.g. {partial[:2]}); merge again (snakemake --forcerun merge)"
        )
    return out, patients


def dice_of(counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Global DICE of each run from per-patient counts (n_runs, P, 2), with patients
    weighted (R, P) per replicate (None: each once): (R, n_runs) or (n_runs,)."""
    if weights is None:
        inter, total = counts[..., 0].sum(-1), counts[..., 1].sum(-1)
    else:
        inter, total = weights @ counts[..., 0].T, weights @ counts[..., 1].T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * inter / np.where(total > 0, total, 1), 1.0)


def replicate_means(units: Units, resamples: int, seed: int, block: int = 250) -> np.ndarray:
    """(1 + resamples, M, K) means per model and size: row 0 the data's own, then bootstrap
    replicates that resample the training-set units within each size (same draw for every
    model) and, with per-patient counts, the holdout patients (same draw for every run).
    NaN where a model has no run at a size; a replicate that drew none of a model's units
    keeps the data's mean there."""
    rng = np.random.default_rng([int(seed), 2023])
    n_units = len(units.unit_size)
    base = _means(units, units.runs["DICE"].to_numpy()[None, :], np.ones((1, n_units)))[0]
    out = [base[None]]
    per_size = [np.flatnonzero(units.unit_size == k) for k in range(len(units.sizes))]
    for start in range(0, resamples, block):
        r = min(block, resamples - start)
        unit_weights = np.zeros((r, n_units))
        for members in per_size:
            draws = rng.integers(0, len(members), size=(r, len(members)))
            for j in range(len(members)):
                np.add.at(unit_weights, (np.arange(r), members[draws[:, j]]), 1.0)
        if units.counts is not None:
            patient_weights = rng.multinomial(
                units.counts.shape[1], np.full(units.counts.shape[1], 1 / units.counts.shape[1]), size=r
            )
            dice = dice_of(units.counts, patient_weights.astype(float))
        else:
            dice = np.broadcast_to(units.runs["DICE"].to_numpy(), (r, len(units.runs)))
        means = _means(units, dice, unit_weights)
        out.append(np.where(np.isnan(means), base[None], means))
    return np.concatenate(out)


def _means(units: Units, dice: np.ndarray, unit_weights: np.ndarray) -> np.ndarray:
    """(R, M, K) weighted means of the runs' DICE (R, n_runs), each run weighted by how often
    its training-set unit was drawn (R, n_units)."""
    m, k = len(units.backbones), len(units.sizes)
    group = units.model * k + units.size
    w = unit_weights[:, units.unit]  # (R, n_runs)
    num = np.zeros((len(dice), m * k))
    den = np.zeros((len(dice), m * k))
    for g in np.unique(group):
        cols = group == g
        num[:, g] = (w[:, cols] * dice[:, cols]).sum(-1)
        den[:, g] = w[:, cols].sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (num / np.where(den > 0, den, np.nan)).reshape(len(dice), m, k)
