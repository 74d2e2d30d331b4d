"""A phantom patient's files in the LVSC layout: one DICOM file per short-axis image, with
real MR headers (geometry, timing, scanner), and its myocardium mask beside it as a PNG;
long-axis views and the layout's other edge cases for the patients that carry them.

UIDs are derived from the seed, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from unetcap import UnetcapError
from unetcap.phantom.anatomy import _Patient
from unetcap.phantom.render import _render_long_axis, _render_slice

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; the suffix is a hash of the seed


def _ds(x: float) -> str:
    """A decimal string (DS) of at most 16 characters."""
    return f"{round(float(x), 6) + 0.0:.6f}".rstrip("0").rstrip(".")


def _uid(seed, *parts) -> str:
    return generate_uid(UID_ROOT, entropy_srcs=["unetcap-phantom", str(seed), *map(str, parts)])


def _dataset(pt: _Patient, seed: int) -> Dataset:
    """The header shared by a patient's short-axis images; per-image fields set later."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = pt.study_date
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = pt.vendor
    ds.ManufacturerModelName = pt.model
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CARDIAC MRI"
    ds.SeriesDescription = "CINE SAX"
    ds.PatientName = pt.pid
    ds.PatientID = pt.pid
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "HEART"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SS", "SK"]
    ds.ScanOptions = "CG"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _ds(pt.thickness)
    ds.RepetitionTime = _ds(3.0 + 0.4 * (pt.field == 1.5))
    ds.EchoTime = _ds(1.4 + 0.2 * (pt.field == 1.5))
    ds.ImagingFrequency = _ds(42.577478 * pt.field)
    ds.MagneticFieldStrength = _ds(pt.field)
    ds.SpacingBetweenSlices = _ds(pt.slice_gap)
    ds.FlipAngle = "60" if pt.field == 1.5 else "45"
    ds.NominalInterval = _ds(round(pt.rr_ms))
    ds.HeartRate = str(round(60000 / pt.rr_ms))
    ds.CardiacNumberOfImages = pt.n_phases
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(seed, pt.pid, "study")
    ds.SeriesInstanceUID = _uid(seed, pt.pid, "series", "SA")
    ds.FrameOfReferenceUID = _uid(seed, pt.pid, "frame")
    ds.StudyID = "1"
    ds.SeriesNumber = 5
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in (*pt.row_cos, *pt.col_cos)]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pt.rows, pt.cols
    ds.PixelSpacing = [_ds(pt.spacing), _ds(pt.spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds(round(0.5 * pt.scale))
    ds.WindowWidth = _ds(round(1.1 * pt.scale))
    return ds


def _save(ds: Dataset, path: Path, sop: str, position, instance: int, trigger: float, pixels) -> None:
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [_ds(v) for v in position]
    orientation = [float(v) for v in ds.ImageOrientationPatient]
    ds.SliceLocation = _ds(np.dot(position, np.cross(orientation[:3], orientation[3:])))
    ds.TriggerTime = _ds(trigger)
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(pixels, dtype="<u2").tobytes())  # PixelData
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _save_mask(path: Path, mask: np.ndarray, rgb: bool) -> None:
    png = mask.astype(np.uint8) * 255
    if rgb:  # myocardium in the green channel only (BGR or RGB alike)
        zero = np.zeros_like(png)
        png = np.dstack([zero, png, zero])
    if not cv2.imwrite(str(path), png):
        raise UnetcapError(f"{path}: could not write the mask PNG")


def _write_patient(folder: Path, pt: _Patient, seed: int, cases: dict) -> None:
    """Patient `pt`'s folder: every short-axis image and mask, then its long-axis views when
    `cases` (`edge_cases`) gives it some; file names and masks as its edge cases say."""
    folder.mkdir()
    upper = pt.pid in cases["upper_case"]
    dcm, png = (".DCM", ".PNG") if upper else (".dcm", ".png")
    rgb = pt.pid in cases["rgb_mask"]
    rng = np.random.default_rng([seed, int(pt.pid[3:]), 1])
    labels = list(range(1, pt.n_slices + 1))
    if pt.pid in cases["label_order"]:
        labels = labels[::-1]
        while pt.n_slices >= 3 and (labels == sorted(labels) or labels == sorted(labels, reverse=True)):
            labels = [int(v) for v in rng.permutation(pt.n_slices) + 1]
    ds = _dataset(pt, seed)
    for k, label in enumerate(labels):  # k: geometric order along the normal
        z = k / (pt.n_slices - 1) if pt.n_slices > 1 else 0.5
        if not pt.apex_last:
            z = 1 - z
        images, masks = _render_slice(pt, rng, z)
        position = pt.origin + k * pt.slice_gap * pt.normal
        for phase in range(pt.n_phases):
            stem = f"{pt.pid}_SA{label}_ph{phase}"
            _save(
                ds,
                folder / (stem + dcm),
                _uid(seed, pt.pid, "SA", label, phase),
                position,
                (label - 1) * pt.n_phases + phase + 1,
                phase * pt.rr_ms / pt.n_phases,
                images[phase],
            )
            _save_mask(folder / (stem + png), masks[phase], rgb)
    if pt.pid in cases["long_axis"]:
        _write_long_axis(folder, pt, seed, rng, (dcm, png), rgb)


def _write_long_axis(folder: Path, pt: _Patient, seed: int, rng, suffixes: tuple[str, str], rgb: bool) -> None:
    """Two long-axis views of `pt` at end-diastole, ``<PID>_LA1_ph0`` and ``<PID>_LA2_ph0``
    with their masks: files an LVSC reader must ignore."""
    dcm, png = suffixes
    for view, turn in ((1, 0.0), (2, math.pi / 3)):
        image, mask, (row_cos, col_cos, origin) = _render_long_axis(pt, rng, turn)
        la = _dataset(pt, seed)
        la.SeriesInstanceUID = _uid(seed, pt.pid, "series", "LA", view)
        la.SeriesNumber = 5 + view
        la.SeriesDescription = f"CINE LA{view}"
        la.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
        la.Rows, la.Columns = image.shape
        stem = f"{pt.pid}_LA{view}_ph0"
        _save(la, folder / (stem + dcm), _uid(seed, pt.pid, "LA", view, 0), origin, 1, 0.0, image)
        _save_mask(folder / (stem + png), mask, rgb)
