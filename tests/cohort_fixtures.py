"""Tiny cohorts in the public datasets' layouts, exactly as distributed (ACDC, M&Ms, M&Ms-2,
Sunnybrook) and as a lab exports them (folders), with non-square matrices, slices stored
against their positions and patients with fewer images than the study samples.

Every image is a cartoon short-axis slice: an LV cavity (label 1 in this module's label
images), a myocardial ring (2) and an RV crescent (3), on noise; the heart shrinks from
ED to ES. Each writer returns what a test needs to check the reader against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

CAVITY, MYOCARDIUM, RV = 1, 2, 3  # as M&Ms labels them
ACDC_LABELS = np.array([0, 3, 2, 1], np.uint8)  # ACDC: 1 RV, 2 myocardium, 3 LV cavity


def cartoon(shape, z: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image, label image: 1 cavity, 2 myocardium, 3 RV) of slice z at phase t."""
    rows, cols = shape
    y, x = np.mgrid[:rows, :cols]
    cy, cx = rows * 0.5, cols * 0.45
    scale = min(rows, cols) / 64 * (1 - 0.15 * min(t, 1)) * (1 - 0.05 * z)
    r = np.hypot(y - cy, x - cx)
    labels = np.zeros(shape, np.int16)
    labels[np.hypot(y - cy, x - (cx + 14 * scale)) < 11 * scale] = RV
    labels[r < 12 * scale] = MYOCARDIUM
    labels[r < 8 * scale] = CAVITY
    rng = np.random.default_rng(seed + 97 * z + t)
    image = np.array([40, 400, 250, 300], float)[labels] + rng.normal(0, 10, shape)
    return np.clip(image, 0, None).astype(np.int16), labels


def _affine(spacing=(1.4, 1.4), thickness=10.0, reverse=False):
    affine = np.diag([spacing[0], spacing[1], -thickness if reverse else thickness, 1.0])
    affine[:3, 3] = [-100.0, -90.0, 40.0 if reverse else -40.0]
    return affine


def _save_nifti(path: Path, data: np.ndarray, affine) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms(tuple(abs(float(affine[i, i])) for i in range(3)) + (1.0,) * (data.ndim - 3))
    nib.save(image, str(path))


def volume(shape, slices: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) volumes (rows, cols, slices) of phase t."""
    pairs = [cartoon(shape, z, t, seed) for z in range(slices)]
    return np.stack([p[0] for p in pairs], axis=2), np.stack([p[1] for p in pairs], axis=2)


def write_acdc(root: Path) -> dict:
    """Three ACDC patients: patient001 (154 x 224, 5 slices), patient002 (its slices stored
    apex first: the affine's third axis points the other way), patient003 (2 slices only)."""
    spec = {
        "patient001": ((154, 224), 5, False, "DCM"),
        "patient002": ((128, 128), 4, True, "NOR"),
        "patient003": ((96, 112), 2, False, "MINF"),
    }
    for pid, (shape, slices, reverse, group) in spec.items():
        folder = root / pid
        folder.mkdir(parents=True)
        es = 7
        (folder / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: {group}\nHeight: 180.0\nNbFrame: 10\nWeight: 80.0\n")
        affine = _affine(reverse=reverse)
        for frame, t in ((1, 0), (es, 1)):
            image, labels = volume(shape, slices, t, seed=int(pid[-1]))
            if reverse:
                image, labels = image[:, :, ::-1], labels[:, :, ::-1]
            _save_nifti(folder / f"{pid}_frame{frame:02d}.nii.gz", image, affine)
            _save_nifti(folder / f"{pid}_frame{frame:02d}_gt.nii.gz", ACDC_LABELS[labels], affine)
        _save_nifti(folder / f"{pid}_4d.nii.gz", np.zeros(shape + (slices, 3), np.int16), affine)
    return spec


def write_mnms(root: Path, frames=(0, 3), depth: int = 6) -> Path:
    """Two M&Ms patients (4-D cine, labels at `frames` only) and one M&Ms-2 patient
    (ED/ES volumes); returns the information CSV."""
    for code, shape, slices in (("A0S9V9", (120, 150), 3), ("B1K2L3", (100, 100), 4)):
        folder = root / code
        folder.mkdir(parents=True)
        images, labels = [], []
        for t in range(depth):
            image, label = volume(shape, slices, int(t in frames[1:]))
            images.append(image)
            labels.append(label if t in frames else np.zeros_like(label))
        _save_nifti(folder / f"{code}_sa.nii.gz", np.stack(images, axis=3), _affine())
        _save_nifti(folder / f"{code}_sa_gt.nii.gz", np.stack(labels, axis=3).astype(np.uint8), _affine())
    folder = root / "C7D8E9"
    folder.mkdir(parents=True)
    for t, name in enumerate(("ED", "ES")):
        image, label = volume((90, 110), 3, t)
        _save_nifti(folder / f"C7D8E9_SA_{name}.nii.gz", image, _affine())
        _save_nifti(folder / f"C7D8E9_SA_{name}_gt.nii.gz", label.astype(np.uint8), _affine())
    info = root.parent / "mnms_info.csv"
    info.write_text(
        "External code,VendorName,Vendor,Centre,ED,ES\n"
        f"A0S9V9,Siemens,A,1,{frames[0]},{frames[1]}\nB1K2L3,Philips,B,2,{frames[0]},{frames[1]}\n"
    )
    return info


def circle(cy: float, cx: float, radius: float, n: int = 48) -> np.ndarray:
    """Points (x, y) of a circle, as a contour file lists them."""
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], axis=1)


def write_sunnybrook(root: Path, slices: int = 3, phases: int = 4) -> Path:
    """One Sunnybrook patient: a DICOM series IM-0001-NNNN.dcm (pydicom's MR_small, 64 x 64,
    positions along the normal in reverse of the numbering) and contour files: both
    contours at phase 0 of every slice, only the inner one at phase 2. Returns the series map."""
    series = root / "images" / "SCD0000101" / "CINESAX_300"
    contours = root / "contours" / "SC-HF-I-01" / "contours-manual" / "IRCCI-expert"
    series.mkdir(parents=True)
    contours.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    normal = np.cross(
        np.array(template.ImageOrientationPatient[:3], float), np.array(template.ImageOrientationPatient[3:], float)
    )
    for z in range(slices):
        for t in range(phases):
            number = z * phases + t + 1
            ds = template.copy()
            ds.ImagePositionPatient = [float(v) for v in (-8.0 * z) * normal]
            ds.InstanceNumber = number
            ds.save_as(series / f"IM-0001-{number:04d}.dcm")
            if t in (0, 2):
                np.savetxt(contours / f"IM-0001-{number:04d}-icontour-manual.txt", circle(32, 30, 8), fmt="%.2f")
            if t == 0:
                np.savetxt(contours / f"IM-0001-{number:04d}-ocontour-manual.txt", circle(32, 30, 13), fmt="%.2f")
    table = root / "series_map.csv"
    table.write_text(
        "patient,contours,series\n"
        "SC-HF-I-01,contours/SC-HF-I-01/contours-manual/IRCCI-expert,images/SCD0000101/CINESAX_300\n"
    )
    return table


def write_folders(root: Path) -> dict:
    """A lab's export: images/<patient>/s<slice>_p<phase>.<ext> and masks/ beside them, in
    PNG (8 and 16 bit), TIFF, NPY and 2-D NIfTI, masks labelled 0-3; patient p10 has 2 images."""
    import cv2

    written = {}
    layout = {
        "p1": ("png", [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]),
        "p2": ("tif", [(1, 0), (2, 0), (3, 0), (4, 0)]),
        "p3": ("npy", [(1, 0), (1, 1), (2, 0), (2, 1)]),
        "p10": ("nii", [(2, 0), (1, 0)]),
    }
    for patient, (ext, images) in layout.items():
        for folder in ("images", "masks"):
            (root / folder / patient).mkdir(parents=True)
        for z, t in images:
            image, labels = cartoon((70, 90), z, t)
            name = f"s{z}_p{t}"
            if ext in ("png", "tif"):
                cv2.imwrite(str(root / "images" / patient / f"{name}.{ext}"), image.astype(np.uint16))
                cv2.imwrite(str(root / "masks" / patient / f"{name}.png"), labels.astype(np.uint8))
            elif ext == "npy":
                np.save(root / "images" / patient / f"{name}.npy", image.astype(np.float32))
                np.save(root / "masks" / patient / f"{name}.npy", labels.astype(np.uint8))
            else:
                _save_nifti(root / "images" / patient / f"{name}.nii.gz", image[:, :, None], _affine((0.8, 0.9)))
                _save_nifti(
                    root / "masks" / patient / f"{name}.nii.gz",
                    labels[:, :, None].astype(np.uint8),
                    _affine((0.8, 0.9)),
                )
            written[(patient, z, t)] = labels
    return written


# The folders fixture's names: images/<patient>/s<slice>_p<phase>.<ext>
FOLDERS_OPTIONS = {"folders": {"slice": r"/s(\d+)_", "phase": r"_p(\d+)\."}}


def reader_options(fmt: str, cohort: Path) -> dict:
    """Config `cohort`'s reader options for the fixture of format `fmt` written at `cohort`:
    M&Ms' information CSV (beside the cohort), Sunnybrook's series map (in it), the folders
    fixture's slice and phase expressions."""
    if fmt == "mnms":
        return {"info": str(cohort.parent / "mnms_info.csv")}
    if fmt == "sunnybrook":
        return {"series_map": str(cohort / "series_map.csv")}
    if fmt == "folders":
        return dict(FOLDERS_OPTIONS)
    return {}


def copy_patients(root, last: int) -> None:
    """Patients 4..last of an ACDC fixture: copies of the first three under new ids."""
    for k in range(4, last + 1):
        src, dst = root / f"patient00{1 + k % 3}", root / f"patient00{k}"
        dst.mkdir()
        for f in src.iterdir():
            (dst / f.name.replace(src.name, dst.name)).write_bytes(f.read_bytes())
