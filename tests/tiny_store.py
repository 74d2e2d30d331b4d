"""A tiny prepared store and split manifest (docs/contracts.md), written with numpy and json.

Images are small squares with a bright ring (the "myocardium", the mask) on a dim disc,
plus noise; a few images have an empty mask, as apical slices do. Patients P00..: the
first `dev_patients` are dealt to the folds round-robin, the rest form the test set, which
is also the whole holdout pool.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from unetcap.provenance import sha256_file, sha256_json

# TensorFlow's thread count for every training run of a test session, in the pytest process
# (where TensorFlow can be pinned once) and in the subprocesses whose results are compared
# with it (the same count gives bit-identical floats on CPU).
TF_THREADS = 2

INDEX_COLUMNS = [
    "patient",
    "slice",
    "phase",
    "slice_label",
    "position",
    "source",
    "mask",
    "rows",
    "columns",
    "spacing_row",
    "spacing_col",
    "vendor",
    "field_strength",
]


def ring_image(rng: np.random.Generator, size: int, empty: bool) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    outer = rng.uniform(0.18, 0.3) * size
    inner = outer * rng.uniform(0.5, 0.7)
    r = np.hypot(yy - cy, xx - cx)
    mask = ((r <= outer) & (r >= inner)).astype(np.uint8)
    if empty:
        mask[:] = 0
    image = 0.2 + 0.2 * (r < outer * 1.6) + 0.5 * mask + rng.normal(0, 0.05, (size, size))
    return np.clip(image, 0, 1).astype(np.float32), mask


def write_tiny_store(
    root,
    *,
    image_size: int = 32,
    per_patient: int = 4,
    dev_patients: int = 4,
    test_patients: int = 2,
    folds: int = 2,
    seed: int = 0,
) -> dict[str, Path]:
    """Write results/prepared/{images.npy, masks.npy, store.json, index.csv} and
    results/splits/size{size}.json under `root`; return their paths and the size."""
    root = Path(root)
    prepared, splits = root / "results" / "prepared", root / "results" / "splits"
    prepared.mkdir(parents=True, exist_ok=True)
    splits.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_patients = dev_patients + test_patients
    n = n_patients * per_patient
    images = np.zeros((n, image_size, image_size), np.float32)
    masks = np.zeros((n, image_size, image_size), np.uint8)
    for i in range(n):
        images[i], masks[i] = ring_image(rng, image_size, empty=(i % per_patient == per_patient - 1))
    np.save(prepared / "images.npy", images)
    np.save(prepared / "masks.npy", masks)
    with open(prepared / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(INDEX_COLUMNS)
        for i in range(n):
            p, k = divmod(i, per_patient)
            writer.writerow(
                [
                    f"P{p:02d}",
                    k + 1,
                    0,
                    k + 1,
                    float(k),
                    f"P{p:02d}/P{p:02d}_SA{k + 1}_ph0.dcm",
                    f"P{p:02d}/P{p:02d}_SA{k + 1}_ph0.png",
                    image_size,
                    image_size,
                    1.0,
                    1.0,
                    "phantom",
                    1.5,
                ]
            )
    sha = {name: sha256_file(prepared / name) for name in ("images.npy", "masks.npy", "index.csv")}
    (prepared / "store.json").write_text(
        json.dumps(
            {"schema": 1, "n_images": n, "image_size": image_size, "sha256": sha, "data_sha256": sha256_json(sha)},
            indent=1,
        )
        + "\n"
    )
    rows = lambda p: list(range(p * per_patient, (p + 1) * per_patient))  # noqa: E731
    dev = [{"patient": f"P{p:02d}", "repeat": 0, "fold": p % folds, "indices": rows(p)} for p in range(dev_patients)]
    test = [{"patient": f"P{p:02d}", "indices": rows(p)} for p in range(dev_patients, n_patients)]
    size = n
    manifest = {
        "schema": 2,
        "size": size,
        "seed": seed,
        "folds": folds,
        "repeats": 1,
        "images_per_patient": per_patient,
        "holdout_fraction": test_patients / n_patients,
        "n_images": {"dev": dev_patients * per_patient, "test": test_patients * per_patient},
        "dev": dev,
        "test": test,
        "holdout": test,  # the test patients are the whole holdout pool
    }
    (splits / f"size{size}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {
        "images": prepared / "images.npy",
        "masks": prepared / "masks.npy",
        "store": prepared / "store.json",
        "manifest": splits / f"size{size}.json",
        "size": size,
    }
