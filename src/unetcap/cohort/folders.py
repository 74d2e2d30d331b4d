"""Format `folders`: images and masks exported from a lab's own annotation tool.

``<cohort.path>/images/`` and ``<cohort.path>/masks/`` with matching relative names (the
extension may differ): PNG, TIFF, NPY or 2-D NIfTI, masks binary or labelled. The patient
is read from each image's relative path (``/``-separated) by a regular expression
(config `cohort.folders.patient`, default the first folder); optional expressions give
the slice and the phase (their first group, a number). Images are ordered by slice, then
phase, then name; without a slice expression every image is its own slice, in name order.
Pixel spacing is read from NIfTI headers and unknown (NaN) for the other formats.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from unetcap import UnetcapError, schema
from unetcap.cohort import Patient, blame, integer_labels, natural_key, order_images
from unetcap.cohort.nifti import read_volume

DEFAULT_LABELS = None  # every non-zero mask value
LABEL_VALUES = None  # any: the lab's own labels
EXTENSIONS = (".nii.gz", ".png", ".tif", ".tiff", ".npy", ".nii")


def settings(options: dict) -> dict:
    """The expressions of config `cohort.folders` (the schema's defaults for those not given), compiled."""
    given = schema.validated(options.get("folders"), "cohort", "folders")
    compiled = {}
    for key, pattern in given.items():
        if pattern is None:
            compiled[key] = None
            continue
        try:
            compiled[key] = re.compile(pattern)
        except re.error as err:
            raise UnetcapError(f"cohort.folders.{key}: {pattern!r} is not a regular expression ({err})") from None
        if compiled[key].groups < 1:
            example = schema.default("cohort", "folders", "patient")
            raise UnetcapError(f"cohort.folders.{key}: {pattern!r} needs a group, e.g. {example!r}")
    return compiled


def stem(relative: str) -> str | None:
    """`relative` without a supported extension (None when it has none)."""
    low = relative.lower()
    ext = next((e for e in EXTENSIONS if low.endswith(e)), None)
    return relative[: -len(ext)] if ext else None


def files(folder: Path) -> dict[str, str]:
    """{relative stem: relative path} of the supported files under `folder`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            relative = Path(dirpath, name).relative_to(folder).as_posix()
            key = stem(relative)
            if key is not None:
                found[key] = relative
    return found


def _layout(root: Path) -> tuple[Path, Path]:
    images, masks = Path(root) / "images", Path(root) / "masks"
    for folder in (images, masks):
        if not folder.is_dir():
            raise UnetcapError(f"{folder}: missing (cohort.source folders reads {root}/images and {root}/masks)")
    return images, masks


def _patient_of(pattern, relative: str) -> str | None:
    match = pattern.search(relative)
    if not match:
        return None
    return match.group("patient") if "patient" in pattern.groupindex else match.group(1)


def patients(root: Path, options: dict) -> list[Patient]:
    """The patients named by `cohort.folders.patient` in the images' relative paths, each
    with its images and their masks (images/ and masks/ are walked once for the cohort)."""
    images, masks = _layout(root)
    pattern = settings(options)["patient"]
    mask_files, image_files = files(masks), files(images)
    found: dict[str, list] = {}
    unmatched = []
    for key, relative in image_files.items():
        patient = _patient_of(pattern, relative)
        if patient is None:
            unmatched.append(relative)
        else:
            found.setdefault(patient, []).append((relative, mask_files.get(key)))
    if unmatched:
        raise UnetcapError(
            f"{images}: {len(unmatched)} image(s) whose path the patient expression "
            f"{pattern.pattern!r} (cohort.folders.patient) does not match, e.g. {unmatched[0]}"
        )
    orphans = sorted(set(mask_files) - set(image_files), key=natural_key)
    if orphans:
        raise UnetcapError(
            f"{masks}: {len(orphans)} mask(s) without an image (expected images/<same name>.<ext>): "
            + ", ".join(mask_files[k] for k in orphans[:10])
            + (" ..." if len(orphans) > 10 else "")
        )
    return [
        Patient(i, Path(root), files=tuple(sorted(found[i], key=lambda f: natural_key(f[0]))))
        for i in sorted(found, key=natural_key)
    ]


def _number(pattern, relative: str, key: str) -> int | None:
    if pattern is None:
        return None
    match = pattern.search(relative)
    if not match or not match.group(1).isdigit():
        raise ValueError(f"cohort.folders.{key} {pattern.pattern!r} finds no number in {relative}")
    return int(match.group(1))


def images(patient: Patient, options: dict):
    """The patient's images with a mask (found by `patients`), in study order."""
    image_dir, mask_dir = Path(patient.folder) / "images", Path(patient.folder) / "masks"
    compiled = settings(options)
    problems, rows = [], []
    for relative, mask in patient.files:
        if mask is None:
            problems.append((image_dir / relative, f"image without a mask (expected masks/{stem(relative)}.<ext>)"))
            continue
        try:
            slice_number = _number(compiled["slice"], relative, "slice")
            phase = _number(compiled["phase"], relative, "phase") or 0
        except ValueError as err:
            problems.append((image_dir / relative, str(err)))
            continue
        rows.append((relative, slice_number, phase, str(image_dir / relative), str(mask_dir / mask)))
    found = []
    for k, (_relative, slice_number, phase, source, mask) in enumerate(rows):
        label = slice_number if slice_number is not None else k
        found.append((float(label), label, phase, source, mask))
    return order_images(found), problems


def read_array(path) -> tuple[np.ndarray, tuple[float, float]]:
    """(2-D array as stored, pixel spacing or NaN) of a PNG, TIFF, NPY or 2-D NIfTI file."""
    low = str(path).lower()
    spacing = (float("nan"), float("nan"))
    if low.endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as err:  # numpy raises several kinds on a corrupt or empty file, some on several lines
            reason = " ".join(str(err).split())
            raise ValueError(f"cannot read {Path(path).name} as NPY ({type(err).__name__}: {reason})") from None
    elif low.endswith((".nii", ".nii.gz")):
        volume, array = read_volume(str(path))
        spacing = volume.spacing
    else:
        import cv2

        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ValueError(f"cannot decode {Path(path).name}")
        if array.ndim == 3:
            array = array[..., :3].max(axis=2) if array.shape[2] > 1 else array[..., 0]
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2:
        raise ValueError(f"{Path(path).name}: expected a 2-D image, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{Path(path).name}: values of type {array.dtype}, not real numbers")
    return array, spacing


def load(row, options: dict):
    """(header, pixels, labels) of one sampled image."""
    pixels, spacing = read_array(row["source"])
    with blame(row["mask"]):
        labels = integer_labels(read_array(row["mask"])[0], np.int32)
    if np.issubdtype(pixels.dtype, np.bool_):
        pixels = pixels.astype(np.uint8)
    return (
        {
            "rows": pixels.shape[0],
            "cols": pixels.shape[1],
            "spacing_row": spacing[0],
            "spacing_col": spacing[1],
            "vendor": "",
            "field_strength": float("nan"),
        },
        pixels,
        labels,
    )
