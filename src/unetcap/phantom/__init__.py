"""A synthetic cohort of cine short-axis MRI in the LVSC layout (the embedded demo's data),
and the same patients in the other layouts a reader takes.

:func:`write_cohort` writes one folder per patient, ``DET0000101/DET0000101_SA1_ph0.dcm``
with the myocardium mask beside it as ``DET0000101_SA1_ph0.png``, exactly as the LV
Segmentation Challenge training set is laid out, so the same reader (`unetcap.cohort`)
serves both. :func:`write_phantom` writes it in any layout of `LAYOUTS`
(:func:`write_layout` converts an LVSC-layout cohort).

Each patient is a small thorax seen in oblique short-axis planes: a left ventricle (bright
blood pool, papillary muscles, a myocardial ring that thickens in systole while the cavity
shrinks, tapering from base to apex), a right-ventricular crescent with a thin wall,
epicardial fat, lungs, chest wall, liver, aorta and spine, under a smooth bias field, a
slight blur and Rician noise. The myocardium's grey level overlaps the chest wall, the
liver, the RV wall and the papillary muscles, so no intensity threshold segments it.
Everything is drawn from the seed: the same seed gives byte-identical files.

Some patients carry the layout's edge cases (see :func:`edge_cases`): upper-case
extensions, 3-channel mask PNGs, long-axis files the reader must ignore, and slice labels
in the file names that do not follow the geometric order of the slices.

The parts, each a module: `anatomy` (one patient, every parameter drawn up front),
`render` (a slice's images and masks, a long-axis view), `lvsc` (a patient's DICOM and PNG
files in the LVSC layout) and `layouts` (ACDC, M&Ms, Sunnybrook and folders from the LVSC
layout).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from unetcap import UnetcapError
from unetcap.common import atomic_dir
from unetcap.phantom.anatomy import MODELS, STANDARD_MATRIX, _draw_patient
from unetcap.phantom.layouts import (
    FOLDERS_OPTIONS,
    LAYOUTS,
    MYOCARDIUM,
    SERIES_MAP,
    contours_of,
    write_layout,
    write_patient,
)
from unetcap.phantom.lvsc import UID_ROOT, _write_patient
from unetcap.phantom.render import CHUNK_PIXELS

__all__ = [
    "CHUNK_PIXELS",
    "EDGE_CASES",
    "FOLDERS_OPTIONS",
    "LAYOUTS",
    "MODELS",
    "MYOCARDIUM",
    "SERIES_MAP",
    "STANDARD_MATRIX",
    "UID_ROOT",
    "contours_of",
    "edge_cases",
    "patient_id",
    "write_cohort",
    "write_layout",
    "write_patient",
    "write_phantom",
]

log = logging.getLogger(__name__)

EDGE_CASES = ("upper_case", "rgb_mask", "label_order", "long_axis")


def patient_id(index: int) -> str:
    """The LVSC-style id of the index-th patient (from 0): DET0000101, DET0000201, ..."""
    return f"DET{(index + 1) * 100 + 1:07d}"


def edge_cases(patients: int, seed: int) -> dict[str, list[str]]:
    """Which patients of the cohort `write_cohort(_, patients, seed)` carry which edge case.

    `upper_case`: one patient whose files end in ``.DCM`` / ``.PNG``; `rgb_mask`: one patient
    whose masks are 3-channel PNGs (myocardium in the green channel only); `label_order`:
    one patient whose SA numbers in the file names are a shuffle of the geometric order
    (neither ascending nor descending when it has 3 slices or more); `long_axis`: two
    patients with long-axis files ``<PID>_LA1_ph0`` and ``<PID>_LA2_ph0`` (+ masks) that a
    reader must ignore. With five patients or more these are five different patients.
    """
    order = np.random.default_rng([seed, 0xED6E]).permutation(patients)
    pick = [patient_id(int(order[i % patients])) for i in range(5)]
    return {
        "upper_case": [pick[0]],
        "rgb_mask": [pick[1]],
        "label_order": [pick[2]],
        "long_axis": sorted(set(pick[3:5])),
    }


def write_cohort(out_dir, patients: int, seed: int, *, slices=(8, 24), phases=(18, 35), matrix=(138, 512)) -> list[str]:
    """Write a synthetic cohort of `patients` patients in the LVSC layout to `out_dir`.

    `slices`, `phases` and `matrix` are inclusive (min, max) ranges of each patient's
    short-axis slice count, phase count and image rows/columns (each drawn per patient).
    The same `seed` gives byte-identical files; the folder appears whole or not at all
    (written beside it, then renamed into place, replacing what was there).
    Returns the patient ids, in order.
    """
    slices, phases, matrix = _check(patients, seed, slices, phases, matrix)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        cases = edge_cases(patients, seed)
        ids = []
        for index in range(patients):
            pid = patient_id(index)
            patient = _draw_patient(np.random.default_rng([seed, index]), pid, slices, phases, matrix)
            _write_patient(tmp / pid, patient, seed, cases)
            log.info(
                "patient %s (%d/%d): %d slices x %d phases, %dx%d px at %.2f mm, %s %.1f T",
                pid,
                index + 1,
                patients,
                patient.n_slices,
                patient.n_phases,
                patient.rows,
                patient.cols,
                patient.spacing,
                patient.vendor,
                patient.field,
            )
            ids.append(pid)
    log.info("%d patients -> %s", patients, out)
    return ids


def _check(patients, seed, slices, phases, matrix):
    """The (min, max) ranges of `slices`, `phases` and `matrix` as integers; one UnetcapError
    naming every bad setting."""
    problems = []

    def span(name, value, least):
        try:
            lo, hi = (int(v) for v in value)
        except (TypeError, ValueError):
            problems.append(f"cohort.phantom.{name}: expected [min, max], got {value!r}")
            return None
        if not least <= lo <= hi:
            problems.append(f"cohort.phantom.{name}: need {least} <= min <= max, got [{lo}, {hi}]")
        return lo, hi

    if not isinstance(patients, int) or not 1 <= patients <= 9_999:
        problems.append(f"cohort.patients: need a whole number from 1 to 9999, got {patients!r}")
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"cohort.phantom.seed: need a whole number >= 0, got {seed!r}")
    ranges = span("slices", slices, 1), span("phases", phases, 1), span("matrix", matrix, 16)
    if problems:
        raise UnetcapError("phantom cohort: bad settings\n  " + "\n  ".join(problems))
    return ranges


def write_phantom(out_dir, layout: str = "lvsc", **phantom) -> list[str]:
    """The phantom cohort (`write_cohort`'s settings) in `layout` (one of LAYOUTS): written
    in the LVSC layout beside `out_dir`, then converted into it."""
    if layout == "lvsc":
        return write_cohort(out_dir, **phantom)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.lvsc.", dir=out.parent) as tmp:
        write_cohort(Path(tmp) / "lvsc", **phantom)
        return write_layout(Path(tmp) / "lvsc", out, layout)
