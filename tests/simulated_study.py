"""Simulated sample-size studies whose noise has the structure of real ones, for testing the
learning curves against a truth they were not drawn from.

The true mean DICE of a model is a logistic curve in log N (slow to rise, no power law and
none of the curve families of unetcap.analysis.curves), and a run's score on each holdout
patient moves with:
- the patient (each holdout patient is easier or harder for every run: one draw per study);
- the training set (each fold of each repeat at a size: a draw shared by every model, larger
  when it has fewer training patients);
- the run itself.
Scores are per-patient counts (intersection, total) as holdout.csv holds them; the pooled
holdout DICE is 2 sum(intersection) / sum(total). Each subset's own test set (test_dice) is
its first few holdout patients, fewer at small sizes, as under the paper's protocol.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from unetcap.splits import plan_subset
from unetcap.study import BACKBONES

SIZES = (75, 150, 300, 600, 1200)
REPEATS = (3, 3, 2, 1, 1)
# the true curve per model: top / (1 + exp(-(log N - log mid) / width))
TRUTH = {
    "vgg16": (0.86, 60.0, 1.2),
    "resnet18": (0.90, 45.0, 1.0),
    "efficientnetb0": (0.88, 70.0, 1.1),
}
PATIENT_SD = 0.35  # logit
TRAINING_SD = 0.5  # logit, for one training patient; / sqrt(patients)
RUN_SD = 0.08  # logit


def true_dice(backbone: str, size) -> np.ndarray:
    """The curve a model's mean DICE follows on an average patient (logit scale)."""
    top, mid, width = TRUTH[backbone]
    return top * expit((np.log(np.asarray(size, dtype=float)) - math.log(mid)) / width)


def simulated_study(
    seed: int = 0,
    sizes=SIZES,
    repeats=REPEATS,
    folds: int = 3,
    backbones=tuple(TRUTH),
    holdout_patients: int = 12,
    images_per_patient: int = 20,
    truth=true_dice,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(merged metrics table, holdout.csv) of one simulated study."""
    rng = np.random.default_rng(seed)
    patients = [f"H{p:02d}" for p in range(holdout_patients)]
    patient_effect = rng.normal(0, PATIENT_SD, holdout_patients)
    pixels = rng.uniform(1500, 3000, holdout_patients)  # myocardium pixels per patient's images
    metrics, holdout = [], []
    for size, reps in zip(sizes, repeats):
        plan = plan_subset(size, folds, images_per_patient, 0.2)
        train_patients = plan.dev_patients * (folds - 1) / folds
        test_patients = plan.test_patients
        for fold in range(folds * reps):
            training = rng.normal(0, TRAINING_SD / math.sqrt(train_patients))
            for backbone in backbones:
                b = BACKBONES[backbone]
                run = rng.normal(0, RUN_SD)
                per_patient = expit(logit(truth(backbone, size)) + patient_effect + training + run)
                per_patient = expit(logit(per_patient) + rng.normal(0, 0.05, holdout_patients))
                predicted = pixels * rng.uniform(0.85, 1.15, holdout_patients)
                total = np.round(pixels + predicted)
                intersection = np.round(per_patient * total / 2)
                holdout_dice = 2 * intersection.sum() / total.sum()
                test = slice(0, test_patients)
                test_dice = 2 * intersection[test].sum() / total[test].sum()
                val_dice = float(expit(logit(truth(backbone, size)) + training + run + rng.normal(0, 0.1)))
                row = {"size": size, "backbone": backbone, "family": b.family, "depth": b.depth}
                row.update(lr=0.001, reg=1e-06, fold=fold, repeat=fold // folds, status="ok")
                row.update(val_dice=val_dice, test_dice=test_dice, holdout_dice=holdout_dice)
                row.update(val_bce=0.1, test_bce=0.1, holdout_bce=0.1)
                metrics.append(row)
                run_columns = {
                    k: row[k] for k in ("size", "backbone", "family", "depth", "lr", "reg", "fold", "repeat")
                }
                for p, name in enumerate(patients):
                    holdout.append(
                        {
                            **run_columns,
                            "patient": name,
                            "pixels": 20 * 32 * 32,
                            "intersection": intersection[p],
                            "total": total[p],
                            "bce_sum": 0.1 * 20 * 32 * 32,
                        }
                    )
    return pd.DataFrame(metrics), pd.DataFrame(holdout)


def population_dice(backbone: str, size: float, seed: int = 0, draws: int = 4000) -> float:
    """The mean holdout DICE a study of `size` images would see on average over patients and
    training sets: what a forecast's band should cover (Monte Carlo, pooled DICE)."""
    rng = np.random.default_rng([seed, 99])
    plan = plan_subset(int(size), 3, 20, 0.2)
    train_patients = plan.dev_patients * 2 / 3
    out = []
    for _ in range(draws // 100):
        patient_effect = rng.normal(0, PATIENT_SD, (100, 12))
        pixels = rng.uniform(1500, 3000, (100, 12))
        training = rng.normal(0, TRAINING_SD / math.sqrt(train_patients), (100, 1))
        run = rng.normal(0, RUN_SD, (100, 1))
        per_patient = expit(logit(true_dice(backbone, size)) + patient_effect + training + run)
        total = pixels * 2
        out.append((per_patient * total).sum(axis=1) / total.sum(axis=1))
    return float(np.mean(np.concatenate(out)))
