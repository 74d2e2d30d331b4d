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

Repeats (config `repeats`, more at small sizes where the patients drawn decide the score):
repeat r of a size takes its k development patients from the dev pool rotated by r * k
(wrapping round when the pool is short), so repeats draw other patients; its folds are
numbered r * folds .. r * folds + folds - 1. Repeat 0 is the rule above, byte for byte.

The holdout pool, every sampled image of every holdout patient, is listed whole in each
manifest (`holdout`): every run is also scored on it (low-noise scores for the
learning curves), while the subset's own test set (`test`) stays the paper's protocol.

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

SCHEMA = 2


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


def repeats_per_size(sizes, repeats) -> dict[int, int]:
    """Config `repeats` (one number for every size, or a list beside `sizes`) as size ->
    repeats; UnetcapError naming the key when a list does not match the sizes."""
    sizes = [int(s) for s in sizes]
    if isinstance(repeats, int) and not isinstance(repeats, bool):
        values = [repeats] * len(sizes)
    else:
        values = list(repeats)
        if len(values) != len(sizes):
            raise UnetcapError(
                f"config key repeats: {len(values)} values for {len(sizes)} sizes {sizes}; give one per size "
                "(in the order of sizes) or a single number"
            )
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise UnetcapError(f"config key repeats: {bad} - each must be a whole number >= 1")
    return dict(zip(sizes, values))


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


def development_draws(
    dev_pool: list[str], counts: dict[str, int], plan: SubsetPlan, folds: int, repeats: int
) -> list[list[str]]:
    """Up to `repeats` draws of development patients for the subset `plan`: each the fewest
    patients of the pool (a multiple of `folds`) that give its development images, starting
    where the draw before it stopped and wrapping around the pool; fewer draws when the pool
    cannot give one more."""
    draws, start = [], 0
    for _ in range(repeats):
        pool = dev_pool[start:] + dev_pool[:start]
        dev_k = patients_needed([counts[p] for p in pool], plan.dev_images, plan.dev_patients, folds)
        if dev_k is None:
            break
        draws.append(pool[:dev_k])
        start = (start + dev_k) % len(dev_pool)
    return draws


def make_manifest(
    sample, size: int, folds: int, seed: int, images_per_patient: int, holdout_fraction: float, repeats: int = 1
) -> dict:
    """The split manifest of one dataset size (see docs/contracts.md) from the cohort sample
    (a data frame with a `patient` column, each patient's rows consecutive: at most
    `images_per_patient` of them), with `repeats` draws of its development patients."""
    m = images_per_patient
    rows: dict[str, list[int]] = {}
    for row, patient in enumerate(sample["patient"]):
        rows.setdefault(str(patient), []).append(row)
    wrong = [p for p, r in rows.items() if len(r) > m]
    if wrong:
        raise UnetcapError(f"cohort sample: patients {wrong} have more than {m} images (images_per_patient)")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise UnetcapError(f"config key repeats: {repeats!r} for size {size} is not a whole number >= 1")
    holdout_pool, dev_pool = pools(list(rows), seed, holdout_fraction)
    check_sizes([size], len(rows), folds, m, holdout_fraction)
    plan = plan_subset(size, folds, m, holdout_fraction)
    counts = {p: len(r) for p, r in rows.items()}
    test_k = patients_needed([counts[p] for p in holdout_pool], plan.test_images, plan.test_patients)
    draws = development_draws(dev_pool, counts, plan, folds, repeats)
    if len(draws) < repeats or test_k is None:
        raise UnetcapError(
            f"config key sizes: the cohort cannot give dataset size {size}: it needs {plan.dev_images} development "
            f"and {plan.test_images} holdout images; its {len(dev_pool)} development patients have "
            f"{sum(counts[p] for p in dev_pool)} and its {len(holdout_pool)} holdout patients "
            f"{sum(counts[p] for p in holdout_pool)} (some patients have fewer than {m} images)"
        )

    def take(patient: str, share: int) -> list[int]:
        return [rows[patient][k] for k in spaced(share, counts[patient])]

    dev = []
    for repeat, chosen in enumerate(draws):
        shares = deal(plan.dev_images, [counts[p] for p in chosen])
        dev += [
            {"patient": p, "repeat": repeat, "fold": repeat * folds + j % folds, "indices": take(p, share)}
            for j, (p, share) in enumerate(zip(chosen, shares))
        ]
    test_pool = holdout_pool[:test_k]
    test_shares = deal(plan.test_images, [counts[p] for p in test_pool])
    test = [{"patient": p, "indices": take(p, share)} for p, share in zip(test_pool, test_shares)]
    return {
        "schema": SCHEMA,
        "size": size,
        "seed": seed,
        "folds": folds,
        "repeats": repeats,
        "images_per_patient": m,
        "holdout_fraction": holdout_fraction,
        "n_images": {"dev": plan.dev_images, "test": plan.test_images},
        "dev": dev,
        "test": test,
        "holdout": [{"patient": p, "indices": rows[p]} for p in holdout_pool],
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
        raise UnetcapError(
            f"{path}: split manifest schema {manifest.get('schema')!r}, this version reads schema {SCHEMA} "
            "(written by an older version: rerun the splits, e.g. snakemake --forcerun splits)"
        )
    return manifest


def fold_indices(manifest: dict, fold: int) -> dict[str, list[int]]:
    """Store rows of the train, val and test sets of one fold (of its repeat: fold //
    folds), and of the holdout pool."""
    total = manifest["folds"] * manifest.get("repeats", 1)
    if not 0 <= fold < total:
        raise UnetcapError(f"fold {fold} out of range 0..{total - 1}")
    repeat = fold // manifest["folds"]
    draw = [e for e in manifest["dev"] if e["fold"] // manifest["folds"] == repeat]
    pick = lambda entries: [i for e in entries for i in e["indices"]]  # noqa: E731
    return {
        "train": pick(e for e in draw if e["fold"] != fold),
        "val": pick(e for e in draw if e["fold"] == fold),
        "test": pick(manifest["test"]),
        "holdout": pick(manifest["holdout"]),
    }


def holdout_patients(manifest: dict) -> list[tuple[str, list[int]]]:
    """The holdout pool: (patient, store rows of all its sampled images), in pool order."""
    return [(str(e["patient"]), list(e["indices"])) for e in manifest["holdout"]]


# ---------------------------------------------------------------------------------------
# Designing a sample-size study
# ---------------------------------------------------------------------------------------


def largest_size(n_patients: int, folds: int, images_per_patient: int, holdout_fraction: float) -> int:
    """The largest dataset size a cohort of `n_patients` (each with `images_per_patient`
    images) can give: all its development patients (a multiple of the fold count), and no
    more test images than its holdout patients have."""
    n_test = holdout_count(n_patients, holdout_fraction)
    dev_images = (n_patients - n_test) // folds * folds * images_per_patient
    size = math.floor(dev_images / (1 - holdout_fraction))
    while size > 0:
        try:
            check_sizes([size], n_patients, folds, images_per_patient, holdout_fraction)
            return size
        except UnetcapError:
            size -= 1
    raise UnetcapError(f"a cohort of {n_patients} patients gives no dataset size with {folds} folds")


def design(
    n_patients: int,
    images_per_patient: int,
    folds: int = 3,
    holdout_fraction: float = 0.2,
    n_sizes: int = 5,
    smallest: int | None = None,
    max_repeats: int = 3,
    largest: int | None = None,
) -> dict:
    """Sizes and repeats for a sample-size study (docs/learning.md §4): `n_sizes` dataset
    sizes spaced geometrically from `smallest` (default: one patient's images per fold)
    up to `largest` (default: the largest the cohort gives; less for a pilot whose labels
    are not all made yet), and per size the repeats (other draws of development patients)
    min(max_repeats, development pool // patients per draw, round(sqrt(patients of the
    largest size / patients of this one))): more where few patients decide the score."""
    if n_sizes < 2:
        raise UnetcapError(f"design: {n_sizes} sizes; a learning curve needs at least 5 (3 to fit, 2 to check)")
    top = largest_size(n_patients, folds, images_per_patient, holdout_fraction)
    if largest is not None:
        if largest > top:
            raise UnetcapError(f"design: the largest size {largest} is more than the cohort gives ({top})")
        top = largest
    low = smallest or math.ceil(folds * images_per_patient / (1 - holdout_fraction))
    if low >= top:
        raise UnetcapError(f"design: the smallest size {low} is not below the largest the cohort gives ({top})")
    # two significant figures (1,900 rather than 1,895), the largest exact
    sizes = sorted({int(float(f"{s:.2g}")) for s in np.geomspace(low, top, n_sizes)[:-1]} | {top})
    check_sizes(sizes, n_patients, folds, images_per_patient, holdout_fraction)
    n_dev = n_patients - holdout_count(n_patients, holdout_fraction)
    k = [plan_subset(s, folds, images_per_patient, holdout_fraction).dev_patients for s in sizes]
    repeats = [max(1, min(max_repeats, n_dev // ki, round(math.sqrt(k[-1] / ki)))) for ki in k]
    return {"sizes": sizes, "repeats": repeats, "folds": folds, "dev_patients": k}


def main(argv=None) -> None:
    """`python -m unetcap.splits --patients 60 --images-per-patient 20`: print the sizes and
    repeats of a sample-size study for a cohort, as config lines."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m unetcap.splits", description=main.__doc__)
    parser.add_argument("--patients", type=int, required=True, help="patients in the cohort")
    parser.add_argument("--images-per-patient", type=int, required=True, help="config images_per_patient")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--holdout-fraction", type=float, default=0.2)
    parser.add_argument("--sizes", type=int, default=5, help="how many dataset sizes (at least 5)")
    parser.add_argument("--smallest", type=int, default=None, help="the smallest dataset size")
    parser.add_argument("--largest", type=int, default=None, help="the largest dataset size (default: all)")
    parser.add_argument("--max-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        plan = design(
            args.patients,
            args.images_per_patient,
            args.folds,
            args.holdout_fraction,
            args.sizes,
            args.smallest,
            args.max_repeats,
            args.largest,
        )
    except UnetcapError as err:
        parser.exit(2, f"error: {err}\n")
    runs = sum(r * args.folds for r in plan["repeats"])
    print(f"# {args.patients} patients x {args.images_per_patient} images, {args.folds} folds: {runs} runs per model")
    print(f"# development patients per draw: {plan['dev_patients']}")
    print(f"sizes: {plan['sizes']}")
    print(f"repeats: {plan['repeats']}")
    print(f"folds: {args.folds}")


if __name__ == "__main__":
    main()
