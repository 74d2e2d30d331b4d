"""Read a cohort, whatever its format, into the study's sample table (docs/contracts.md).

One module per format, each with the same three functions:

- ``patients(root, options) -> list[Patient]``: the cohort's patients, sorted by id, from
  folder and file names only (and a format's own tables: ACDC's Info.cfg, the M&Ms
  information CSV, Sunnybrook's series map);
- ``images(patient, options) -> (list[Image], [(path, problem)])``: the patient's labelled
  images in study order (slices by position along the slice normal, from the image
  headers, never from file names; then phases), from headers only, no pixels;
- ``load(row, options) -> (header, pixels, labels)``: one sampled image as stored (a 2-D
  array), its label image (2-D integers, 0 background) and the header fields of
  HEADER_COLUMNS.

The formats (config `cohort.source`): `lvsc` (and the `phantom` written in that layout),
`acdc`, `mnms` (M&Ms and M&Ms-2), `sunnybrook` and `folders`. Which label values form the
segmented structure is config `cohort.labels` (default: the format's myocardium,
`DEFAULT_LABELS`), so the same study runs for the LV cavity or the RV.

This module does what is common: it samples `images_per_patient` images per patient,
stratified over the study order, decides what happens to a patient with fewer
(`cohort.few_images`: use all of them, leave the patient out, or stop), collects every bad
file of the cohort into one error, and writes the sample table. The prepare stage reads
each sampled image through `read_labelled`.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from unetcap import UnetcapError, schema
from unetcap.common import Problems, parallel_map, write_table

log = logging.getLogger(__name__)

# The cohort's sample: one row per sampled image, in store order. `position` is the slice's
# (mm along the slice normal); `source` and `mask` say where the image and its labels are
# (for volumes, `slice_label` is the slice's index in the volume and `phase` its frame);
# `group` is the patient's diagnosis group where the format gives one, `centre` its centre,
# `vendor` the scanner's maker where a table gives it (the store's index prefers the header's).
SAMPLE_COLUMNS = ["patient", "slice", "phase", "slice_label", "position", "source", "mask", "group", "centre", "vendor"]
# What the prepared store's index adds from each sampled image's own header.
HEADER_COLUMNS = ["rows", "cols", "spacing_row", "spacing_col", "vendor", "field_strength"]
# The keys of config `cohort` that its reader takes (the others say where and what it is).
READER_OPTIONS = ("labels", "few_images", "info", "series_map", "folders")
FORMATS = ("lvsc", "acdc", "mnms", "sunnybrook", "folders")


@dataclass(frozen=True)
class Patient:
    """A patient of a cohort, before any image header is read."""

    id: str
    folder: Path  # where its files are (Sunnybrook: its contour folder)
    group: str = ""  # diagnosis group (ACDC's Group, M&Ms' pathology), when the format gives it
    centre: str = ""
    vendor: str = ""  # when a table gives it (M&Ms); else the image headers do
    series: Path | None = None  # Sunnybrook: the DICOM series its contours belong to
    frames: tuple[int, ...] = ()  # M&Ms: the labelled frames, when the information CSV gives them
    files: tuple[tuple[str, str | None], ...] = ()  # folders: (image, its mask or None), relative paths


@dataclass(frozen=True)
class Image:
    """A labelled image of a patient, in study order."""

    slice: int  # rank of its slice among the patient's slices, by position
    phase: int
    slice_label: int
    position: float
    source: str
    mask: str


class FileProblem(ValueError):
    """What a reader raises for a bad input file (a ValueError, as every reader's checks
    are), with `path`: the file that holds the problem (the label file when it is the
    label file's), which the error names; `where` in the file (a volume's slice and frame)
    and the bad `pixels`, which `common.Problems` sums over a file's sampled images."""

    def __init__(self, path, message: str, where: str = "", pixels: int = 0):
        super().__init__(message)
        self.path, self.where, self.pixels = Path(path), where, pixels

    @property
    def fields(self) -> tuple:
        """The arguments of `common.Problems.add`."""
        return self.path, str(self), self.where, self.pixels


@contextmanager
def blame(path):
    """Inside the block, a ValueError or UnetcapError becomes a FileProblem naming `path`."""
    try:
        yield
    except FileProblem:
        raise
    except (ValueError, UnetcapError) as err:
        raise FileProblem(path, str(err).removeprefix(f"{path}: ")) from None


@cache
def reader(source: str) -> ModuleType:
    """The module that reads cohorts of format `source` (the phantom is written as LVSC)."""
    import importlib

    name = "lvsc" if source == "phantom" else source
    if name not in FORMATS:
        raise UnetcapError(f"cohort.source: {source!r} is not one of {', '.join(('phantom', *FORMATS))}")
    return importlib.import_module(f"unetcap.cohort.{name}")


def cohort_options(options: dict | None) -> dict:
    """The reader options of config `cohort` (labels, few_images, info, series_map, folders),
    checked against the schema, with its defaults for those not given."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(READER_OPTIONS))
    if unknown:
        raise UnetcapError(f"unknown reader options {['cohort.' + k for k in unknown]} (known: {list(READER_OPTIONS)})")
    filled = schema.validated(given, "cohort")
    return {key: filled[key] for key in READER_OPTIONS}


def labels_of(source: str, options: dict) -> list[int] | None:
    """The label values that form the segmented structure: `cohort.labels`, else the
    format's default (None: every non-zero value, for binary masks)."""
    labels = options.get("labels")
    if labels is None:
        return reader(source).DEFAULT_LABELS
    declared = reader(source).LABEL_VALUES
    if declared is not None and not set(labels) <= set(declared) - {0}:
        raise UnetcapError(
            f"cohort.labels: {list(labels)} are not among the labels of cohort.source {source} "
            f'({", ".join(map(str, sorted(set(declared) - {0})))}; README, "Cohorts")'
        )
    return list(labels)


def sample_indices(n: int, m: int) -> list[int]:
    """Indices of m images stratified over n ordered images: floor(i * n / m), i = 0..m-1."""
    if n < m:
        raise ValueError(f"{n} images, need at least {m}")
    return [i * n // m for i in range(m)]


def scan_patient(patient: Patient, source: str, images_per_patient: int, options: dict):
    """(sample rows, [(path, problem)], how its count was handled: "sampled", "all",
    "left out" or "too few") of one patient."""
    images, problems = reader(source).images(patient, options)
    log.info("%s: %d labelled images in %d slices", patient.id, len(images), len({i.slice for i in images}))
    if not images:
        if not problems:
            problems.append((patient.folder, "no labelled images"))
        return [], problems, "too few"
    n, m = len(images), images_per_patient
    if n >= m:
        picks, how = sample_indices(n, m), "sampled"
    elif options["few_images"] == "all":
        picks, how = list(range(n)), "all"
    elif options["few_images"] == "leave_out":
        return [], problems, "left out"
    else:
        problems.append(
            (
                patient.folder,
                f"patient with too few readable labelled images: {n} images, need at "
                f"least {m} (images_per_patient; cohort.few_images: all uses them all)",
            )
        )
        return [], problems, "too few"
    rows = [
        {
            "patient": patient.id,
            "slice": i.slice,
            "phase": i.phase,
            "slice_label": i.slice_label,
            "position": i.position,
            "source": i.source,
            "mask": i.mask,
            "group": patient.group,
            "centre": patient.centre,
            "vendor": patient.vendor,
        }
        for i in (images[k] for k in picks)
    ]
    return rows, problems, how


def _scan(patient, **kwargs):
    return scan_patient(patient, **kwargs)


def scan_cohort(
    root, images_per_patient: int, workers: int = 1, source: str = "lvsc", options: dict | None = None
) -> pd.DataFrame:
    """The cohort's sample: for each patient (sorted by id), its `images_per_patient` sampled
    images in study order (all of them, or none, for a patient with fewer: config
    `cohort.few_images`), with the columns of SAMPLE_COLUMNS.

    Reads headers only, patients spread over `workers` processes. Every bad file and every
    patient that cannot give its images is collected and reported in one UnetcapError.
    """
    options = cohort_options(options)
    labels_of(source, options)  # a bad cohort.labels stops here, before any file is read
    problems = Problems(f"cohort {root}")
    patients = reader(source).patients(Path(root), options)
    if not patients:
        raise UnetcapError(f"{root}: no patients found for cohort.source {source!r}")
    rows, handled = [], {}
    scans = parallel_map(
        partial(_scan, source=source, images_per_patient=images_per_patient, options=options), patients, workers
    )
    for patient, (patient_rows, bad, how) in zip(patients, scans):
        for path, message in bad:
            problems.add(path, message)
        rows.extend(patient_rows)
        handled.setdefault(how, []).append(patient.id)
    problems.raise_if_any()
    for how, what in (("all", "kept all of their images"), ("left out", "left out")):
        if handled.get(how):
            ids = handled[how]
            log.info(
                "cohort.few_images %s: %d patient(s) with fewer than %d images (images_per_patient) %s: %s",
                options["few_images"],
                len(ids),
                images_per_patient,
                what,
                ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""),
            )
    if not rows:
        raise UnetcapError(f"{root}: every patient was left out (fewer than {images_per_patient} images each)")
    sample = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    unwritable = _not_utf8([*sample.source, *sample["mask"]])
    if unwritable:
        raise UnetcapError(
            f"{root}: {len(unwritable)} file name(s) not in UTF-8, which the sample table is written in (rename "
            f"them), e.g. {os.fsencode(unwritable[0])!r}"
        )
    return sample


def _not_utf8(names) -> list[str]:
    """The names that UTF-8 cannot encode: file names whose bytes on disk are not UTF-8
    (Python gives them surrogate characters)."""
    bad = []
    for name in dict.fromkeys(map(str, names)):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name)
    return bad


def count_patients(root, source: str, options: dict | None = None) -> int:
    """How many patients the cohort at `root` has (names and tables only)."""
    return len(reader(source).patients(Path(root), cohort_options(options)))


def write_sample(
    root, out_csv, images_per_patient: int, workers: int = 1, source: str = "lvsc", options: dict | None = None
) -> pd.DataFrame:
    """Scan the cohort and write its sample atomically; returns it."""
    sample = scan_cohort(root, images_per_patient, workers, source, options)
    write_table(sample, out_csv)
    log.info("%d patients, %d sampled images -> %s", sample.patient.nunique(), len(sample), out_csv)
    return sample


def read_labelled(row: dict, source: str, options: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header fields, pixels as stored, boolean mask of the structure) of one sampled image.
    Raises ValueError with a readable reason when the image or its labels cannot be read
    or their shapes differ."""
    options = cohort_options(options)
    with blame(row["source"]):
        header, pixels, labels = reader(source).load(row, options)
    if pixels.ndim != 2:
        raise FileProblem(row["source"], f"expected a 2-D image, got shape {pixels.shape}")
    if pixels.size == 0:  # OpenCV's minMaxLoc and resize fail on it (minMaxLoc kills the process)
        raise FileProblem(row["source"], f"an empty image ({pixels.shape[0]}x{pixels.shape[1]})", _where(row))
    if pixels.dtype.kind == "f":
        bad = pixels.size - int(np.count_nonzero(np.isfinite(pixels)))
        if bad:
            raise FileProblem(row["source"], "pixels not finite (NaN or ±inf)", _where(row), bad)
    if labels.shape != pixels.shape:
        raise FileProblem(
            row["mask"],
            f"labels of {labels.shape[0]}x{labels.shape[1]} but the image {Path(row['source']).name} "
            f"is {pixels.shape[0]}x{pixels.shape[1]}",
            _where(row),
        )
    declared = reader(source).LABEL_VALUES
    if declared is not None:
        stray = values_outside(labels, declared)
        if stray:
            raise FileProblem(
                row["mask"], f"label value(s) {stray[:5]} outside the format's {list(declared)}", _where(row)
            )
    elif labels.size and labels.min() < 0:  # a format with any labels: 0 background, positive the structures
        raise FileProblem(row["mask"], f"negative label value(s), e.g. {int(labels.min())}", _where(row))
    wanted = labels_of(source, options)
    mask = labels > 0 if wanted is None else equal_any(labels, wanted)
    if mask.any() and pixels.size and pixels.min() == pixels.max():
        raise FileProblem(
            row["source"],
            f"a constant image (every pixel {pixels.flat[0]:g}) whose labels mark the structure",
            _where(row),
        )
    return header, pixels, mask


def _where(row: dict) -> str:
    """'slice z, frame t' for an image that is one plane of a volume (NIfTI), else ''."""
    if str(row["source"]).lower().endswith((".nii", ".nii.gz")):
        return f"slice {int(row['slice_label'])}, frame {int(row['phase'])}"
    return ""


def values_outside(labels: np.ndarray, declared) -> list:
    """The values of `labels` that are not in `declared`, sorted. (For integer labels and a
    `declared` that is a run of consecutive integers, as every format's is, the minimum and
    maximum settle it: np.unique sorts the image, a hundred times slower.)"""
    low, high = min(declared), max(declared)
    if labels.size == 0 or (
        np.issubdtype(labels.dtype, np.integer)
        and set(range(low, high + 1)) <= set(declared)
        and low <= labels.min()
        and labels.max() <= high
    ):
        return []
    return np.setdiff1d(np.unique(labels), declared).tolist()


def integer_labels(labels: np.ndarray, dtype, where: str = "") -> np.ndarray:
    """A label image as integers of `dtype`, floats rounded to the nearest; ValueError when a
    value is not finite or does not fit `dtype` (the cast would wrap it round, onto another
    label: 65538 onto 2)."""
    inside = f" in {where}" if where else ""
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"label values that are not finite{inside}")
        labels = np.rint(labels)
    fits = np.iinfo(dtype)
    if labels.size and not (fits.min <= labels.min() and labels.max() <= fits.max):
        raise ValueError(f"label values from {labels.min():g} to {labels.max():g}, beyond any label{inside}")
    return labels.astype(dtype)


def equal_any(labels: np.ndarray, values) -> np.ndarray:
    """Boolean image: where `labels` holds one of `values` (np.isin's answer; a comparison per
    value is far quicker for the few values a structure has)."""
    mask = np.zeros(labels.shape, bool)
    for value in values:
        mask |= labels == value
    return mask


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value (slice2 before slice10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def order_images(found: list[tuple[float, int, int, str, str]]) -> list[Image]:
    """Images in study order from (position, slice_label, phase, source, mask): slices by
    position along the slice normal (then label), phases by number; a slice's rank is its
    `slice`."""
    slices = sorted({(round(p, 3), label) for p, label, *_ in found})
    rank = {key: k for k, key in enumerate(slices)}
    ordered = sorted(found, key=lambda f: (rank[(round(f[0], 3), f[1])], f[2], natural_key(f[3])))
    return [
        Image(rank[(round(p, 3), label)], phase, label, p, source, mask) for p, label, phase, source, mask in ordered
    ]
