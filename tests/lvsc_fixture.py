"""A small cohort in the LVSC layout built from pydicom's bundled real MR files.

pydicom ships MR_small.dcm (64x64, 16-bit) in several transfer syntaxes; we copy them
into patient folders, give each slice its own position along the slice normal, and
draw a ring mask beside each image.
"""

from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.data import get_testdata_file

SYNTAXES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]


def ring_mask(rows: int, cols: int, radius: float = 12, width: float = 4) -> np.ndarray:
    yy, xx = np.mgrid[:rows, :cols]
    r = np.hypot(yy - rows / 2, xx - cols / 2)
    return ((r < radius) & (r > radius - width)).astype(np.uint8) * 255


def write_patient(
    root: Path,
    patient: str,
    slices: int,
    phases: int,
    *,
    reverse_labels=False,
    upper=False,
    rgb_masks=False,
    spacing=8.0,
    syntax_offset=0,
) -> Path:
    """One patient: `slices` x `phases` images; slice k lies at k * spacing along the normal.
    With reverse_labels, the file's SA number runs opposite to the geometry."""
    folder = root / patient
    folder.mkdir(parents=True, exist_ok=True)
    dcm_ext, png_ext = (".DCM", ".PNG") if upper else (".dcm", ".png")
    for k in range(slices):
        label = slices - k if reverse_labels else k + 1
        for p in range(phases):
            name = SYNTAXES[(syntax_offset + k * phases + p) % len(SYNTAXES)]
            ds = pydicom.dcmread(get_testdata_file(name))
            ds.PatientID = patient
            # MR_small is axial: the normal is +z.
            ds.ImagePositionPatient = [-83.9, -91.2, 6.6 + k * spacing]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            stem = f"{patient}_SA{label}_ph{p}"
            ds.save_as(folder / (stem + dcm_ext), enforce_file_format=True)
            mask = ring_mask(ds.Rows, ds.Columns, radius=10 + k)
            if rgb_masks:
                mask = np.dstack([np.zeros_like(mask), mask, np.zeros_like(mask)])
            cv2.imwrite(str(folder / (stem + png_ext)), mask)
    return folder


def write_cohort(root: Path, patients: int = 3, slices: int = 3, phases: int = 4) -> Path:
    """A clean cohort: patient 0 with reversed slice labels, patient 1 upper-case extensions
    and 3-channel masks, plus a long-axis file that must be ignored."""
    root = Path(root)
    for i in range(patients):
        write_patient(
            root,
            f"DET{i + 1:05d}01",
            slices,
            phases,
            reverse_labels=(i == 0),
            upper=(i == 1),
            rgb_masks=(i == 1),
            syntax_offset=i,
        )
    la = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    la.save_as(root / "DET0000101" / "DET0000101_LA1_ph0.dcm", enforce_file_format=True)
    return root
