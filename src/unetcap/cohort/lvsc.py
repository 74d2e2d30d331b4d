"""Format `lvsc`: a cohort laid out like the LV Segmentation Challenge (LVSC) training set
(and the phantom, written in that layout).

One folder per patient; in it, one DICOM file per short-axis image,
``<PATIENT>_SA<slice>_ph<phase>.dcm``, and its myocardium mask beside it with the
same stem and ``.png``. Numbers are not zero padded, extensions may be upper case,
long-axis files (``_LA``) and anything else are ignored. The order of the slices
comes from the DICOM geometry, never from the file names.

Reading happens in two passes. :func:`images` lists a patient's images from file names
and headers: every file gets cheap checks (a DICOM preamble, a mask beside it whose PNG
header matches its slice's matrix) and the first phase of each slice is parsed, header
only, for the slice's position. Then :func:`read_dicom` reads each sampled image once,
checks its header in full (pixel data present and not truncated, geometry) and decodes
it. So the cost grows with the sampled images, not with the cohort's files; a defect
inside an image that is never sampled (truncated pixel data, say) goes unnoticed,
because that image is never used.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetcap import UnetcapError
from unetcap.cohort import Image, Patient, blame

DEFAULT_LABELS = [1]  # the mask PNG: any channel > 0 is myocardium
LABEL_VALUES = (0, 1)  # the mask PNG: 0 or 1 once read

SHORT_AXIS = re.compile(r"^(?P<patient>.+)_SA(?P<slice>\d+)_ph(?P<phase>\d+)\.dcm$", re.IGNORECASE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010


def _png_size(path: Path) -> tuple[int, int]:
    """(rows, columns) read from a PNG's IHDR chunk, without decoding the image."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _slice_normal(orientation) -> tuple[float, float, float]:
    """Unit normal of a slice: the cross product of ImageOrientationPatient's row and column cosines."""
    if len(orientation) != 6:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} is not two direction cosines")
    (a, b, c), (d, e, f) = map(float, orientation[:3]), map(float, orientation[3:])
    normal = (b * f - c * e, c * d - a * f, a * e - b * d)
    norm = math.sqrt(sum(x * x for x in normal))
    if not norm > 0:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} has parallel direction cosines")
    return normal[0] / norm, normal[1] / norm, normal[2] / norm


HEADER_TAGS = [
    "Rows",
    "Columns",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Manufacturer",
    "MagneticFieldStrength",
    "SamplesPerPixel",
    "BitsAllocated",
    "PixelData",
]
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit / explicit VR little endian


def _dcmread(path, **kwargs):
    """pydicom.dcmread with a readable ValueError for anything that is not a readable DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as err:
        raise ValueError(f"not a DICOM file ({err})") from None
    except Exception as err:  # pydicom raises many kinds on corrupt files
        raise ValueError(f"unreadable DICOM ({type(err).__name__}: {err})") from None


def _numbers(ds, keyword: str, count: int, default: list | None = None) -> list[float]:
    """The `count` numbers of header element `keyword` (`default` when it is absent or
    empty); ValueError naming the element when it holds anything else: another count of
    values, text, NaN or infinity."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise ValueError(f"DICOM {keyword} is empty")
        return default
    values = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not all(map(math.isfinite, numbers)):
        raise ValueError(f"DICOM {keyword} {[str(v) for v in values]}: expected {count} finite number(s)")
    return numbers


def check_header(ds, path) -> dict:
    """The header fields the study needs from a dataset read from `path`; raises ValueError
    with a readable reason when pixel data is missing or truncated, or geometry or the
    matrix is absent or not numbers."""
    if PIXEL_DATA not in ds:
        raise ValueError("DICOM without pixel data (no PixelData element)")
    missing = [k for k in HEADER_TAGS[:4] if k not in ds]
    if missing:
        raise ValueError(f"DICOM header lacks {', '.join(missing)}")
    rows, columns = (int(_numbers(ds, key, 1)[0]) for key in ("Rows", "Columns"))
    if rows < 1 or columns < 1:
        raise ValueError(f"DICOM of {rows}x{columns} pixels")
    pixels = ds._dict[PIXEL_DATA]
    length = getattr(pixels, "length", None)
    if length is not None and length != UNDEFINED_LENGTH:
        size = os.path.getsize(path)
        end = getattr(pixels, "value_tell", 0) + length
        samples, bits = (_numbers(ds, key, 1, [n])[0] for key, n in (("SamplesPerPixel", 1), ("BitsAllocated", 16)))
        needed = int(rows * columns * samples * bits) // 8
        if end > size:
            raise ValueError(f"truncated: pixel data needs {end} bytes, file has {size}")
        if length < needed and not ds.file_meta.TransferSyntaxUID.is_compressed:
            raise ValueError(f"truncated: {length} bytes of pixel data, {rows}x{columns} needs {needed}")
    normal = _slice_normal(_numbers(ds, "ImageOrientationPatient", 6))
    spacing = _numbers(ds, "PixelSpacing", 2, [1.0, 1.0])
    return {
        "rows": rows,
        "cols": columns,
        "position": sum(p * n for p, n in zip(_numbers(ds, "ImagePositionPatient", 3), normal)),
        "spacing_row": spacing[0],
        "spacing_col": spacing[1],
        "vendor": str(ds.get("Manufacturer", "")),
        "field_strength": _numbers(ds, "MagneticFieldStrength", 1, [math.nan])[0],
    }


def read_header(path) -> dict:
    """`check_header` of a file, reading its header only (pixel data located, not read)."""
    return check_header(_dcmread(path, defer_size=256, specific_tags=HEADER_TAGS), path)


# What the prepare stage needs from a sampled image's header: HEADER_TAGS and the pixel format.
PIXEL_TAGS = HEADER_TAGS + ["PixelRepresentation", "BitsStored", "NumberOfFrames"]


def read_dicom(path) -> tuple[dict, np.ndarray]:
    """(`check_header` fields, pixels as stored: a 2-D integer array) of one DICOM file.

    The file is read once. Native little-endian 16-bit grey images are parsed for the
    study's tags only and their pixels taken straight from the bytes; every other transfer
    syntax is parsed in full and goes through pydicom's decoders (pylibjpeg for JPEG,
    JPEG-LS, JPEG 2000; RLE built in)."""
    with open(path, "rb") as f:  # one read: pydicom's many tell() calls on a file are syscalls
        data = io.BytesIO(f.read())
    ds = _dcmread(data, specific_tags=PIXEL_TAGS)
    header = check_header(ds, path)
    rows, columns = header["rows"], header["cols"]
    native = (
        ds.file_meta.get("TransferSyntaxUID") in NATIVE_SYNTAXES
        and ds.get("BitsAllocated") == 16
        and ds.get("SamplesPerPixel", 1) == 1
        and int(ds.get("NumberOfFrames", 1) or 1) == 1
        and (ds.get("PixelRepresentation", 0) == 0 or ds.get("BitsStored") == 16)
    )
    try:
        if native:
            dtype = "<i2" if ds.get("PixelRepresentation", 0) else "<u2"
            pixels = np.frombuffer(ds.PixelData, dtype=dtype, count=rows * columns).reshape(rows, columns)
        else:
            data.seek(0)
            pixels = _dcmread(data).pixel_array
    except Exception as err:
        raise ValueError(f"cannot decode the pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise ValueError(f"expected one grey-level frame, got pixel data of shape {pixels.shape}")
    return header, pixels.astype(pixels.dtype.newbyteorder("="), copy=False)  # big endian too


def patient_folders(root: Path, example: str = "DET0000101/") -> list[Path]:
    """The patient folders of a cohort, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise UnetcapError(f"{root}: cohort folder does not exist (config key cohort.path)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UnetcapError(f"{root}: cohort folder holds no patient folders (expected e.g. {example})")
    return folders


def patients(root: Path, options: dict) -> list[Patient]:
    """One patient per sub-folder of `root`, named by the folder."""
    return [Patient(folder.name, folder) for folder in patient_folders(root)]


@dataclass(frozen=True)
class Candidate:
    """A short-axis image as its file names describe it, before its header is read."""

    slice_label: int  # the SA number in the file name
    phase: int  # the ph number in the file name
    source: Path
    mask: Path
    mask_shape: tuple[int, int]  # (rows, columns) from the PNG header


def find_images(folder: Path) -> tuple[list[Candidate], list[tuple[Path, str]]]:
    """The short-axis images of a patient folder, by file name, with the cheap checks that
    every file gets: a DICOM preamble, a mask beside it, a readable PNG header."""
    candidates, problems = [], []
    files = {name.lower(): name for name in os.listdir(folder)}
    for name in sorted(files.values()):
        stem, _, extension = name.rpartition(".")
        if extension.lower() == "png" and SHORT_AXIS.match(f"{stem}.dcm") and f"{stem}.dcm".lower() not in files:
            problems.append((folder / name, f"mask without its image (expected {stem}.dcm beside it)"))
        match = SHORT_AXIS.match(name)
        if not match:
            continue
        path = folder / name
        with open(path, "rb") as f:
            if f.read(132)[128:] != b"DICM":
                problems.append((path, "not a DICOM file (no DICM preamble)"))
                continue
        mask = files.get(path.stem.lower() + ".png")
        if mask is None:
            problems.append((path, f"image without a mask (expected {path.stem}.png beside it)"))
            continue
        mask = folder / mask
        try:
            mask_shape = _png_size(mask)
        except (OSError, ValueError) as err:
            problems.append((mask, f"unreadable mask ({err})"))
            continue
        candidates.append(Candidate(int(match["slice"]), int(match["phase"]), path, mask, mask_shape))
    return candidates, problems


def images(patient: Patient, options: dict) -> tuple[list[Image], list[tuple[Path, str]]]:
    """The patient's images in study order, and (file, problem) for every bad file found.

    Every file gets the cheap checks of `find_images`. The first phase of each slice is read
    (header only) for the slice's position and matrix, and every mask must match its slice's
    matrix. The sampled images' own headers are checked in full when they are decoded
    (`read_dicom`, in the prepare stage).
    """
    candidates, problems = find_images(patient.folder)
    by_slice: dict[int, list[Candidate]] = {}
    for c in candidates:
        by_slice.setdefault(c.slice_label, []).append(c)
    slices = []  # (position, label, phases in order)
    for label, phases in by_slice.items():
        phases.sort(key=lambda c: c.phase)
        try:
            header = read_header(phases[0].source)
        except ValueError as err:
            problems.append((phases[0].source, str(err)))
            continue
        matrix = (header["rows"], header["cols"])
        for c in phases:
            if c.mask_shape != matrix:
                problems.append(
                    (
                        c.mask,
                        f"mask is {c.mask_shape[0]}x{c.mask_shape[1]} but its image "
                        f"{c.source.name} is {matrix[0]}x{matrix[1]}",
                    )
                )
        slices.append((header["position"], label, phases))
    slices.sort(key=lambda s: (s[0], s[1]))
    ordered = [
        Image(rank, c.phase, c.slice_label, position, str(c.source), str(c.mask))
        for rank, (position, _, phases) in enumerate(slices)
        for c in phases
    ]
    if not ordered and not problems:
        problems.append((patient.folder, "no short-axis images (<PATIENT>_SA<slice>_ph<phase>.dcm)"))
    return ordered, problems


def load(row, options: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, pixels, labels: 1 where the mask PNG is set) of one sampled image."""
    header, pixels = read_dicom(row["source"])
    with blame(row["mask"]):
        labels = read_mask(row["mask"]).astype(np.uint8)
    return header, pixels, labels


def read_mask(path) -> np.ndarray:
    """A mask PNG as a boolean array: any channel > 0 is myocardium."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise UnetcapError(f"{path}: cannot decode the mask PNG")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 0
