"""The phantom's patients in the other layouts a reader takes: ACDC, M&Ms, Sunnybrook and folders.

:func:`write_layout` reads a cohort in the LVSC layout (the phantom) with the LVSC reader
and writes the same images and myocardium masks as the dataset of `layout` distributes
them, so that every reader is tested on the same synthetic patients and their prepared
stores can be compared:

- `acdc`: ``<PID>/Info.cfg`` and one 3-D volume per phase ``<PID>_frameFF.nii.gz``
  (FF = phase + 1) with its labels ``_gt`` (2 = myocardium); every phase is labelled.
- `mnms`: ``<PID>/<PID>_sa.nii.gz``, the 4-D cine, with ``<PID>_sa_gt.nii.gz`` labelled at
  every phase.
- `folders`: ``images/<PID>/s<slice>_p<phase>.png`` (16 bit) and ``masks/...png`` (0/1).
- `sunnybrook`: the DICOM files as a series ``images/<PID>/IM-0001-NNNN.dcm`` (NNNN counts
  slices, then phases, from 1), expert-style contour files
  ``contours/<PID>/IM-0001-NNNN-icontour-manual.txt`` / ``-ocontour-manual.txt`` traced
  (cv2.findContours, every boundary pixel's centre) around the endocardium-filled region
  (the LV cavity: the hole of the myocardium ring) and the epicardium-filled one (ring and
  hole), and ``series_map.csv`` (config `cohort.series_map`). Filling traced contours
  again does not give the masks back exactly at the boundary (see tests/test_format_readers.py).

The NIfTI volumes are stored as a DICOM-to-NIfTI converter stores them: the first axis runs
along a row (the DICOM columns), so an image read back is the DICOM image transposed; the
affine carries the DICOM geometry (in-plane cosines, spacing, slice positions), so the
readers find the same slice order from it. Slices are stacked in their geometric order.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom

import unetcap.cohort.lvsc as lvsc_reader
from unetcap import UnetcapError
from unetcap.common import atomic_dir

log = logging.getLogger(__name__)

LAYOUTS = ("lvsc", "acdc", "mnms", "sunnybrook", "folders")
MYOCARDIUM = {"acdc": 2, "mnms": 2, "sunnybrook": 2, "folders": 1}
SERIES_MAP = "series_map.csv"  # the sunnybrook layout's series map, in the cohort folder
# What the folders reader needs to read the phantom's names (config `cohort.folders`).
FOLDERS_OPTIONS = {"slice": r"/s(\d+)_", "phase": r"_p(\d+)\."}


def _slices(patient) -> list[list[dict]]:
    """The patient's images grouped by slice (geometric order), each {phase, pixels, mask,
    position, source}."""
    found, problems = lvsc_reader.images(patient, {})
    if problems:
        raise UnetcapError(f"{patient.folder}: cannot convert the phantom: {problems[0][1]}")
    slices: dict[int, list[dict]] = {}
    for image in found:
        _, pixels, labels = lvsc_reader.load({"source": image.source, "mask": image.mask}, {})
        slices.setdefault(image.slice, []).append(
            {"phase": image.phase, "pixels": pixels, "mask": labels, "position": image.position, "source": image.source}
        )
    return [slices[k] for k in sorted(slices)]


def _affine(first_source: str, positions: list[float]) -> np.ndarray:
    """NIfTI affine of a volume stored with the first axis along a row: DICOM geometry."""
    ds = pydicom.dcmread(first_source, stop_before_pixels=True)
    row_cos = np.array(ds.ImageOrientationPatient[:3], float)
    col_cos = np.array(ds.ImageOrientationPatient[3:], float)
    spacing_row, spacing_col = (float(v) for v in ds.PixelSpacing)
    normal = np.cross(row_cos, col_cos)
    step = (positions[-1] - positions[0]) / (len(positions) - 1) if len(positions) > 1 else 1.0
    affine = np.eye(4)
    affine[:3, 0] = row_cos * spacing_col  # first axis: along a row (increasing column)
    affine[:3, 1] = col_cos * spacing_row
    affine[:3, 2] = normal * step
    affine[:3, 3] = np.array(ds.ImagePositionPatient, float)
    return affine


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def _volume(slices, phase_index: int, what: str, label: int = 1) -> np.ndarray:
    """(cols, rows, slices) volume of one phase, transposed as a converter stores it."""
    planes = [s[phase_index][what] for s in slices]
    if what == "mask":
        return np.stack([p.T.astype(np.uint8) * label for p in planes], axis=2)
    return np.stack([p.T for p in planes], axis=2)


def write_patient(patient, out: Path, layout: str) -> None:
    """One patient of the LVSC-layout cohort written in `layout` under `out`."""
    slices = _slices(patient)
    phases = len(slices[0])
    if any(len(s) != phases for s in slices):
        raise UnetcapError(f"{patient.folder}: slices with different phase counts cannot form a volume")
    pid = patient.id
    if layout == "folders":
        for folder in ("images", "masks"):
            (out / folder / pid).mkdir(parents=True, exist_ok=True)
        for k, images in enumerate(slices):
            for t, image in enumerate(images):
                name = f"s{k:02d}_p{t:02d}.png"
                cv2.imwrite(str(out / "images" / pid / name), image["pixels"].astype(np.uint16))
                cv2.imwrite(str(out / "masks" / pid / name), image["mask"].astype(np.uint8))
        return
    if layout == "sunnybrook":
        _write_sunnybrook(slices, out, pid)
        return
    folder = out / pid
    folder.mkdir(parents=True)
    affine = _affine(slices[0][0]["source"], [s[0]["position"] for s in slices])
    label = MYOCARDIUM[layout]
    if layout == "acdc":
        (folder / "Info.cfg").write_text(
            f"ED: 1\nES: {phases // 3 + 1}\nGroup: NOR\nHeight: 175.0\nNbFrame: {phases}\nWeight: 75.0\n"
        )
        for t in range(phases):
            _save_nifti(folder / f"{pid}_frame{t + 1:02d}.nii.gz", _volume(slices, t, "pixels"), affine)
            _save_nifti(folder / f"{pid}_frame{t + 1:02d}_gt.nii.gz", _volume(slices, t, "mask", label), affine)
    elif layout == "mnms":
        cine = np.stack([_volume(slices, t, "pixels") for t in range(phases)], axis=3)
        labels = np.stack([_volume(slices, t, "mask", label) for t in range(phases)], axis=3)
        _save_nifti(folder / f"{pid}_sa.nii.gz", cine, affine)
        _save_nifti(folder / f"{pid}_sa_gt.nii.gz", labels, affine)
    else:
        raise UnetcapError(f"cohort.phantom.layout: {layout!r} is not one of {', '.join(LAYOUTS)}")


def _trace(region: np.ndarray) -> np.ndarray | None:
    """(x, y) points of the largest outer boundary of a boolean region (the centres of its
    boundary pixels), None when the region is empty."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea)[:, 0, :].astype(float)


def contours_of(myocardium: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(inner, outer) contours of a myocardium mask: traced around the endocardium-filled
    region (the ring's hole) and the epicardium-filled one (ring and hole); None when the
    mask is not a ring."""
    outer = _trace(myocardium)
    if outer is None or len(outer) < 3:
        return None
    filled = np.zeros(myocardium.shape, np.uint8)
    cv2.fillPoly(filled, [outer.astype(np.int32)], 1)
    inner = _trace(filled.astype(bool) & ~myocardium.astype(bool))
    if inner is None or len(inner) < 3:
        return None
    return inner, outer


def _write_sunnybrook(slices, out: Path, pid: str) -> None:
    """One patient in the Sunnybrook layout (its images with a myocardial ring only)."""
    series, contours = out / "images" / pid, out / "contours" / pid
    series.mkdir(parents=True)
    contours.mkdir(parents=True)
    for k, images in enumerate(slices):
        for t, image in enumerate(images):
            traced = contours_of(image["mask"] > 0)
            if traced is None:
                continue
            stem = f"IM-0001-{k * len(images) + t + 1:04d}"
            shutil.copyfile(image["source"], series / f"{stem}.dcm")
            for kind, points in zip("io", traced):
                np.savetxt(contours / f"{stem}-{kind}contour-manual.txt", points, fmt="%.2f")
    with open(out / SERIES_MAP, "a") as table:
        if table.tell() == 0:
            table.write("patient,contours,series\n")
        table.write(f"{pid},contours/{pid},images/{pid}\n")


def write_layout(lvsc_dir, out_dir, layout: str) -> list[str]:
    """Write the LVSC-layout cohort at `lvsc_dir` in `layout` to `out_dir` (whole or not at
    all: written beside it, then renamed). Returns the patient ids."""
    if layout not in LAYOUTS or layout == "lvsc":
        raise UnetcapError(f"cohort.phantom.layout: {layout!r} is not one of {', '.join(LAYOUTS[1:])}")
    ids = []
    with atomic_dir(out_dir) as tmp:
        for patient in lvsc_reader.patients(Path(lvsc_dir), {}):
            write_patient(patient, tmp, layout)
            ids.append(patient.id)
            log.info("patient %s written in the %s layout", patient.id, layout)
    return ids
