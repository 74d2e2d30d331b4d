"""Holdout, dataset-size subsets and cross-validation folds (docs/design.md §5).

The patients are shuffled once with the config seed; the first `holdout_fraction` of
them form the holdout test pool, the rest the development pool. A subset of S images
takes dev = round((1 - holdout_fraction) * S) development images and S - dev test
images. It uses the first k patients of the dev pool, k = max(folds, ceil(dev / m))
rounded up to a multiple of the fold count (m = images per patient), and the first
max(2, ceil(test / m)) patients of the test pool. Each chosen patient gives an equal
share of images, regularly spaced among its m (a remainder goes to the first patients).
Dev patients are dealt to the folds round-robin in pool order. So subsets are nested by
patient, folds are patient-disjoint and equal, and no patient is in two sets.

A patient may have fewer than m images (config `cohort.few_images: all`). Then a pool's
first patients are taken until their images cover the subset's share (still a multiple of
the fold count for the dev pool), and the shares are dealt equally but never more than a
patient has (the rest goes to the others, in pool order): with every patient at m images
this is the rule above, byte for byte.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetcap import UnetcapError
from unetcap.common import read_table, write_text_atomic

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


def check_sizes(sizes, n_patients: int, folds: int, images_per_patient: int, holdout_fraction: float) -> None:
    """Raise one UnetcapError naming every size the cohort of `n_patients` cannot give."""
    n_test = holdout_count(n_patients, holdout_fraction)
    n_dev = n_patients - n_test
    bad = []
    for size in sizes:
        plan = plan_subset(size, folds, images_per_patient, holdout_fraction)
        if plan.dev_images < plan.dev_patients or plan.test_images < plan.test_patients:
            bad.append(
                f"{size} (too small: every chosen patient must give at least one image; "
                f"it needs {plan.dev_patients} dev and {plan.test_patients} test patients)"
            )
        elif plan.dev_patients > n_dev or plan.test_patients > n_test:
            bad.append(
                f"{size} (needs {plan.dev_patients} development and {plan.test_patients} "
                f"holdout patients; the cohort of {n_patients} gives {n_dev} and {n_test})"
            )
    if bad:
        raise UnetcapError("config key sizes: the cohort cannot give dataset size " + "; ".join(bad))


def spaced(share: int, m: int) -> list[int]:
    """`share` positions regularly spaced among m: floor(j * m / share)."""
    return [j * m // share for j in range(share)]


def patients_needed(counts: list[int], images: int, minimum: int, multiple: int = 1) -> int | None:
    """The fewest first patients of a pool, at least `minimum` and a multiple of `multiple`,
    whose `counts` of images add up to `images` (None when the pool cannot)."""
    total = 0
    for k, count in enumerate(counts, start=1):
        total += count
        if k >= minimum and k % multiple == 0 and total >= images:
            return k
    return None


def deal(images: int, caps: list[int]) -> list[int]:
    """`images` dealt equally to len(caps) patients, the remainder to the first ones, none
    given more than its cap (what a patient cannot take goes to the others)."""
    given = [0] * len(caps)
    remaining, open_ = images, list(range(len(caps)))
    while remaining and open_:
        base, extra = divmod(remaining, len(open_))
        still = []
        for rank, j in enumerate(open_):
            take = min(base + (rank < extra), caps[j] - given[j])
            given[j] += take
            remaining -= take
            if given[j] < caps[j]:
                still.append(j)
        open_ = still
    return given


def make_manifest(sample, size: int, folds: int, seed: int, images_per_patient: int, holdout_fraction: float) -> dict:
    """The split manifest of one dataset size (see docs/contracts.md) from the cohort sample
    (a data frame with a `patient` column, each patient's rows consecutive: at most
    `images_per_patient` of them)."""
    m = images_per_patient
    rows: dict[str, list[int]] = {}
    for row, patient in enumerate(sample["patient"]):
        rows.setdefault(str(patient), []).append(row)
    wrong = [p for p, r in rows.items() if len(r) > m]
    if wrong:
        raise UnetcapError(f"cohort sample: patients {wrong} have more than {m} images (images_per_patient)")
    test_pool, dev_pool = pools(list(rows), seed, holdout_fraction)
    check_sizes([size], len(rows), folds, m, holdout_fraction)
    plan = plan_subset(size, folds, m, holdout_fraction)
    counts = {p: len(r) for p, r in rows.items()}
    dev_k = patients_needed([counts[p] for p in dev_pool], plan.dev_images, plan.dev_patients, folds)
    test_k = patients_needed([counts[p] for p in test_pool], plan.test_images, plan.test_patients)
    if dev_k is None or test_k is None:
        raise UnetcapError(
            f"config key sizes: the cohort cannot give dataset size {size}: it needs {plan.dev_images} development "
            f"and {plan.test_images} holdout images; its {len(dev_pool)} development patients have "
            f"{sum(counts[p] for p in dev_pool)} and its {len(test_pool)} holdout patients "
            f"{sum(counts[p] for p in test_pool)} (some patients have fewer than {m} images)"
        )
    dev_pool, test_pool = dev_pool[:dev_k], test_pool[:test_k]

    def take(patient: str, share: int) -> list[int]:
        return [rows[patient][k] for k in spaced(share, counts[patient])]

    dev_shares = deal(plan.dev_images, [counts[p] for p in dev_pool])
    test_shares = deal(plan.test_images, [counts[p] for p in test_pool])
    dev = [
        {"patient": p, "fold": j % folds, "indices": take(p, share)}
        for j, (p, share) in enumerate(zip(dev_pool, dev_shares))
    ]
    test = [{"patient": p, "indices": take(p, share)} for p, share in zip(test_pool, test_shares)]
    return {
        "schema": SCHEMA,
        "size": size,
        "seed": seed,
        "folds": folds,
        "images_per_patient": m,
        "holdout_fraction": holdout_fraction,
        "n_images": {"dev": plan.dev_images, "test": plan.test_images},
        "dev": dev,
        "test": test,
    }


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
    return {
        "train": pick(e for e in manifest["dev"] if e["fold"] != fold),
        "val": pick(e for e in manifest["dev"] if e["fold"] == fold),
        "test": pick(manifest["test"]),
    }
