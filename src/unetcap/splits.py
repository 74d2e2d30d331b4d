"""Holdout, dataset-size subsets and cross-validation folds (DESIGN §4-5).

The patients are shuffled once with the config seed; the first `holdout_fraction` of
them form the holdout test pool, the rest the development pool. A subset of S images
takes dev = round((1 - holdout_fraction) * S) development images and S - dev test
images. It uses the first k patients of the dev pool, k = max(folds, ceil(dev / m))
rounded up to a multiple of the fold count (m = images per patient), and the first
max(2, ceil(test / m)) patients of the test pool. Each chosen patient gives an equal
share of images, regularly spaced among its m (a remainder goes to the first patients).
Dev patients are dealt to the folds round-robin in pool order. So subsets are nested by
patient, folds are patient-disjoint and equal, and no patient is in two sets.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetcap import UnetcapError, write_text_atomic
from unetcap.cohort import read_table

SCHEMA = 1


@dataclass(frozen=True)
class SubsetPlan:
    """How many patients and images a subset of `size` images takes from each pool."""

    size: int
    dev_images: int
    dev_patients: int
    test_images: int
    test_patients: int


def holdout_count(n_patients: int, holdout_fraction: float) -> int:
    """Patients in the holdout test pool: round(holdout_fraction * n), halves up."""
    return math.floor(holdout_fraction * n_patients + 0.5)


def pools(patients: list[str], seed: int, holdout_fraction: float) -> tuple[list[str], list[str]]:
    """(test pool, dev pool): the sorted patient ids shuffled with `seed`, split at
    round(holdout_fraction * n)."""
    ordered = sorted(patients)
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order]
    n_test = holdout_count(len(shuffled), holdout_fraction)
    return shuffled[:n_test], shuffled[n_test:]


def plan_subset(size: int, folds: int, images_per_patient: int, holdout_fraction: float) -> SubsetPlan:
    """Patients and images of a subset; does not look at any cohort."""
    m = images_per_patient
    dev = math.floor((1 - holdout_fraction) * size + 0.5)
    test = size - dev
    dev_patients = math.ceil(max(folds, math.ceil(dev / m)) / folds) * folds
    test_patients = max(2, math.ceil(test / m))
    return SubsetPlan(size, dev, dev_patients, test, test_patients)


def check_sizes(sizes, n_patients: int, folds: int, images_per_patient: int,
                holdout_fraction: float) -> None:
    """Raise one UnetcapError naming every size the cohort of `n_patients` cannot give."""
    n_test = holdout_count(n_patients, holdout_fraction)
    n_dev = n_patients - n_test
    bad = []
    for size in sizes:
        plan = plan_subset(size, folds, images_per_patient, holdout_fraction)
        if plan.dev_images < plan.dev_patients or plan.test_images < plan.test_patients:
            bad.append(f"{size} (too small: every chosen patient must give at least one image; "
                       f"it needs {plan.dev_patients} dev and {plan.test_patients} test patients)")
        elif plan.dev_patients > n_dev or plan.test_patients > n_test:
            bad.append(f"{size} (needs {plan.dev_patients} development and {plan.test_patients} "
                       f"holdout patients; the cohort of {n_patients} gives {n_dev} and {n_test})")
    if bad:
        raise UnetcapError("config key sizes: the cohort cannot give dataset size " + "; ".join(bad))


def shares(images: int, patients: int) -> list[int]:
    """`images` dealt equally to `patients`, the remainder to the first ones."""
    base, extra = divmod(images, patients)
    return [base + (j < extra) for j in range(patients)]


def spaced(share: int, m: int) -> list[int]:
    """`share` positions regularly spaced among m: floor(j * m / share)."""
    return [j * m // share for j in range(share)]


def make_manifest(sample, size: int, folds: int, seed: int, images_per_patient: int,
                  holdout_fraction: float) -> dict:
    """The split manifest of one dataset size (see docs/contracts.md) from the cohort sample
    (a data frame with a `patient` column, `images_per_patient` consecutive rows each)."""
    m = images_per_patient
    rows: dict[str, list[int]] = {}
    for row, patient in enumerate(sample["patient"]):
        rows.setdefault(str(patient), []).append(row)
    wrong = [p for p, r in rows.items() if len(r) != m]
    if wrong:
        raise UnetcapError(f"cohort sample: patients {wrong} do not have {m} images (images_per_patient)")
    test_pool, dev_pool = pools(list(rows), seed, holdout_fraction)
    check_sizes([size], len(rows), folds, m, holdout_fraction)
    plan = plan_subset(size, folds, m, holdout_fraction)

    def take(patient: str, share: int) -> list[int]:
        return [rows[patient][k] for k in spaced(share, m)]

    dev = [{"patient": p, "fold": j % folds, "indices": take(p, share)}
           for j, (p, share) in enumerate(zip(dev_pool, shares(plan.dev_images, plan.dev_patients)))]
    test = [{"patient": p, "indices": take(p, share)}
            for p, share in zip(test_pool, shares(plan.test_images, plan.test_patients))]
    return {"schema": SCHEMA, "size": size, "seed": seed, "folds": folds,
            "images_per_patient": m, "holdout_fraction": holdout_fraction,
            "n_images": {"dev": plan.dev_images, "test": plan.test_images},
            "dev": dev, "test": test}


def write_manifest(sample_csv, out_json, **kwargs) -> dict:
    """Make the manifest from the cohort sample file and write it atomically (stable bytes)."""
    manifest = make_manifest(read_table(sample_csv), **kwargs)
    text = json.dumps(manifest, indent=1)
    # one line per list of store rows, so the manifest stays readable
    text = re.sub(r"\[\n\s*([\d,\s]*?)\n\s*\]", lambda m: "[" + " ".join(m[1].split()) + "]", text)
    write_text_atomic(out_json, text + "\n")
    return manifest


def read_manifest(path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UnetcapError(f"{path}: cannot read the split manifest ({err})") from None
    if manifest.get("schema") != SCHEMA:
        raise UnetcapError(f"{path}: split manifest schema {manifest.get('schema')!r}, expected {SCHEMA}")
    return manifest


def fold_indices(manifest: dict, fold: int) -> dict[str, list[int]]:
    """Store rows of the train, val and test sets of one fold."""
    if not 0 <= fold < manifest["folds"]:
        raise UnetcapError(f"fold {fold} out of range 0..{manifest['folds'] - 1}")
    pick = lambda entries: [i for e in entries for i in e["indices"]]  # noqa: E731
    return {"train": pick(e for e in manifest["dev"] if e["fold"] != fold),
            "val": pick(e for e in manifest["dev"] if e["fold"] == fold),
            "test": pick(manifest["test"])}
