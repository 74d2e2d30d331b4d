"""Read a cohort laid out like the LV Segmentation Challenge (LVSC) training set.

One folder per patient; in it, one DICOM file per short-axis image,
``<PATIENT>_SA<slice>_ph<phase>.dcm``, and its myocardium mask beside it with the
same stem and ``.png``. Numbers are not zero padded, extensions may be upper case,
long-axis files (``_LA``) and anything else are ignored. The order of the slices
comes from the DICOM geometry, never from the file names.

Reading happens in two passes: :func:`scan_cohort` reads headers only (and the 24
header bytes of each mask PNG) and checks everything it can before a single pixel
is decoded; :func:`read_image` and :func:`read_mask` decode one sampled image.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError

log = logging.getLogger(__name__)

SHORT_AXIS = re.compile(r"^(?P<patient>.+)_SA(?P<slice>\d+)_ph(?P<phase>\d+)\.dcm$", re.IGNORECASE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010

# Columns of the cohort index, one row per sampled image, in store order.
INDEX_COLUMNS = [
    "patient", "slice", "phase", "slice_label", "position", "source", "mask",
    "rows", "columns", "spacing_row", "spacing_col", "vendor", "field_strength",
]


@dataclass(frozen=True)
class Image:
    """One short-axis image of a patient, as its DICOM header and file names describe it."""

    patient: str
    slice_label: int  # the SA number in the file name
    phase: int  # the ph number in the file name
    source: str  # DICOM path
    mask: str  # PNG path
    rows: int
    columns: int
    position: float  # ImagePositionPatient projected on the slice normal (mm)
    spacing_row: float
    spacing_col: float
    vendor: str
    field_strength: float


class Problems:
    """Collects every bad input of a pass, then raises them together."""

    def __init__(self, what: str):
        self.what = what
        self.items: list[str] = []

    def add(self, path, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  ".join(self.items)
            raise UnetcapError(f"{self.what}: {len(self.items)} problem(s)\n  {lines}")


def parallel_map(fn, items, workers: int, chunksize: int = 1):
    """fn over items, in order, in `workers` processes (in this one when workers is 1)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(fn, items, chunksize=chunksize)


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


HEADER_TAGS = ["Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
               "Manufacturer", "MagneticFieldStrength", "SamplesPerPixel", "BitsAllocated", "PixelData"]


def read_header(path: Path) -> dict:
    """The header fields the study needs, checked; raises ValueError with a readable reason.
    Pixel data is located (and its length checked against the file) but not read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size=256, specific_tags=HEADER_TAGS)
    except InvalidDicomError as err:
        raise ValueError(f"not a DICOM file ({err})") from None
    except Exception as err:  # pydicom raises many kinds on corrupt files
        raise ValueError(f"unreadable DICOM ({type(err).__name__}: {err})") from None
    if PIXEL_DATA not in ds:
        raise ValueError("DICOM without pixel data (no PixelData element)")
    missing = [k for k in HEADER_TAGS[:4] if k not in ds]
    if missing:
        raise ValueError(f"DICOM header lacks {', '.join(missing)}")
    rows, columns = int(ds.Rows), int(ds.Columns)
    pixels = ds._dict[PIXEL_DATA]
    length = getattr(pixels, "length", None)
    if length is not None and length != UNDEFINED_LENGTH:
        size = os.path.getsize(path)
        end = getattr(pixels, "value_tell", 0) + length
        needed = rows * columns * ds.get("SamplesPerPixel", 1) * ds.get("BitsAllocated", 16) // 8
        if end > size:
            raise ValueError(f"truncated: pixel data needs {end} bytes, file has {size}")
        if length < needed and not ds.file_meta.TransferSyntaxUID.is_compressed:
            raise ValueError(f"truncated: {length} bytes of pixel data, {rows}x{columns} needs {needed}")
    normal = _slice_normal(ds.ImageOrientationPatient)
    spacing = ds.get("PixelSpacing") or [1.0, 1.0]
    field = ds.get("MagneticFieldStrength")
    return {
        "rows": rows, "columns": columns,
        "position": sum(float(p) * n for p, n in zip(ds.ImagePositionPatient, normal)),
        "spacing_row": float(spacing[0]), "spacing_col": float(spacing[1]),
        "vendor": str(ds.get("Manufacturer", "")),
        "field_strength": float(field) if field not in (None, "") else math.nan,
    }


def patient_folders(root: Path) -> list[Path]:
    """The patient folders of a cohort, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise UnetcapError(f"{root}: cohort folder does not exist (config key cohort.path)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UnetcapError(f"{root}: cohort folder holds no patient folders (expected e.g. DET0000101/)")
    return folders


def scan_patient(folder: Path) -> tuple[list[Image], list[tuple[Path, str]]]:
    """Every good short-axis image of one patient folder in study order, and (file, problem)
    for every bad one."""
    images, problems = [], []
    files = {p.name.lower(): p for p in folder.iterdir()}
    for path in sorted(files.values()):
        match = SHORT_AXIS.match(path.name)
        if not match:
            continue
        mask = files.get(path.stem.lower() + ".png")
        try:
            header = read_header(path)
        except ValueError as err:
            problems.append((path, str(err)))
            continue
        if mask is None:
            problems.append((path, f"image without a mask (expected {path.stem}.png beside it)"))
            continue
        try:
            mask_shape = _png_size(mask)
        except (OSError, ValueError) as err:
            problems.append((mask, f"unreadable mask ({err})"))
            continue
        if mask_shape != (header["rows"], header["columns"]):
            problems.append((mask, f"mask is {mask_shape[0]}x{mask_shape[1]} but its image "
                                   f"{path.name} is {header['rows']}x{header['columns']}"))
            continue
        images.append(Image(patient=folder.name, slice_label=int(match["slice"]),
                            phase=int(match["phase"]), source=str(path), mask=str(mask), **header))
    return study_order(images), problems


def study_order(images: list[Image]) -> list[Image]:
    """Slice-major, phase-minor: slices by position along the slice normal (ascending),
    phases by their number. A slice's position is the mean over its phases."""
    by_slice: dict[int, list[Image]] = {}
    for image in images:
        by_slice.setdefault(image.slice_label, []).append(image)
    slices = sorted(by_slice.values(), key=lambda s: (np.mean([i.position for i in s]), s[0].slice_label))
    return [image for s in slices for image in sorted(s, key=lambda i: i.phase)]


def sample_indices(n: int, m: int) -> list[int]:
    """Indices of m images stratified over n ordered images: floor(i * n / m), i = 0..m-1."""
    if n < m:
        raise ValueError(f"{n} images, need at least {m}")
    return [i * n // m for i in range(m)]


def scan_cohort(root, images_per_patient: int, workers: int = 1) -> pd.DataFrame:
    """The cohort index: for each patient (sorted by id), its `images_per_patient` sampled
    images in study order, with the columns of INDEX_COLUMNS.

    Reads headers only, patients spread over `workers` processes. Every bad file and every
    patient with too few images is collected and reported in one UnetcapError.
    """
    problems = Problems(f"cohort {root}")
    rows = []
    folders = patient_folders(Path(root))
    for folder, (images, bad) in zip(folders, parallel_map(scan_patient, folders, workers)):
        for path, message in bad:
            problems.add(path, message)
        rows.extend(_sample_patient(folder, images, images_per_patient, problems))
    problems.raise_if_any()
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def _sample_patient(folder: Path, images: list[Image], images_per_patient: int, problems: Problems) -> list[dict]:
    """Index rows of one patient's sampled images (none, with a problem noted, if it cannot give them)."""
    log.info("%s: %d short-axis images", folder.name, len(images))
    if not images:
        problems.add(folder, "no short-axis images (<PATIENT>_SA<slice>_ph<phase>.dcm)")
        return []
    try:
        picks = sample_indices(len(images), images_per_patient)
    except ValueError as err:
        problems.add(folder, f"patient with too few readable short-axis images: {err} (images_per_patient)")
        return []
    slice_rank = {label: rank for rank, label in enumerate(dict.fromkeys(i.slice_label for i in images))}
    return [{**asdict(images[k]), "slice": slice_rank[images[k].slice_label]} for k in picks]


def write_index(root, out_csv, images_per_patient: int, workers: int = 1) -> pd.DataFrame:
    """Scan the cohort and write its index atomically; returns it."""
    index = scan_cohort(root, images_per_patient, workers)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    index.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    os.replace(tmp, out_csv)
    log.info("%d patients, %d sampled images -> %s", index.patient.nunique(), len(index), out_csv)
    return index


def read_index(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient": str})


def read_image(path) -> np.ndarray:
    """The pixel data of a DICOM file as float32 (any transfer syntax pydicom can decode)."""
    import pydicom

    pixels = pydicom.dcmread(path).pixel_array
    if pixels.ndim != 2:
        raise UnetcapError(f"{path}: expected one grey-level frame, got pixel data of shape {pixels.shape}")
    return pixels.astype(np.float32)


def read_mask(path) -> np.ndarray:
    """A mask PNG as a boolean array: any channel > 0 is myocardium."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise UnetcapError(f"{path}: cannot decode the mask PNG")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 0
