"""Format `sunnybrook`: the Sunnybrook Cardiac Data (Radau et al. 2009), exactly as distributed.

DICOM series (``IM-0001-NNNN.dcm``) and expert contour files
``IM-0001-NNNN-icontour-manual.txt`` (endocardium) and ``-ocontour-manual.txt``
(epicardium), one ``x y`` point per line in pixel coordinates (x the column). File names do
not say which series a contour folder belongs to, so a small table does (config
`cohort.series_map`, CSV with columns ``patient``, ``contours`` and ``series``: the contour
folder and the DICOM series folder, relative to `cohort.path` or absolute).

The label image: 1 inside the inner contour (LV cavity), 2 inside the outer contour but
outside the inner one (myocardium). An image counts for the structure of `cohort.labels`
only when it has the contours that structure needs: the myocardium (2) needs both, the
cavity (1) the inner one; so an image with only an inner contour counts for the LV cavity,
not for the myocardium. Slice positions come from the DICOM headers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.cohort import Patient, blame, labels_of, order_images
from unetcap.cohort.lvsc import read_dicom, read_header

DEFAULT_LABELS = [2]  # myocardium
LABEL_VALUES = (0, 1, 2)  # background, LV cavity (inner contour), myocardium (outer minus inner)
CONTOUR = re.compile(r"^IM-(?P<series>\d+)-(?P<number>\d+)-(?P<kind>[io])contour-manual\.txt$", re.IGNORECASE)
SHIFT = 4  # fractional bits of the contour points when filled (1/16 px)


def read_series_map(path, root: Path) -> list[dict]:
    """The series map's rows, paths resolved against the cohort folder."""
    if not path:
        raise UnetcapError(
            "cohort.series_map: the Sunnybrook format needs the table mapping each contour "
            "folder to its DICOM series (CSV with columns patient, contours, series)"
        )
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:  # pandas' ParserError, EmptyDataError; UnicodeDecodeError
        raise UnetcapError(f"{path}: cannot read the series map (config key cohort.series_map): {err}") from None
    missing = [c for c in ("patient", "contours", "series") if c not in table.columns]
    if missing:
        raise UnetcapError(f"{path}: series map lacks column(s) {', '.join(missing)}")
    resolve = lambda p: Path(p) if Path(p).is_absolute() else Path(root) / p  # noqa: E731
    return [
        {"patient": r.patient.strip(), "contours": resolve(r.contours.strip()), "series": resolve(r.series.strip())}
        for r in table.itertuples()
    ]


def patients(root: Path, options: dict) -> list[Patient]:
    """One patient per row of the series map, sorted by id."""
    rows = read_series_map(options.get("series_map"), root)
    duplicated = sorted({r["patient"] for r in rows if [x["patient"] for x in rows].count(r["patient"]) > 1})
    if duplicated:
        raise UnetcapError(f"{options['series_map']}: patient(s) {', '.join(duplicated)} listed more than once")
    return sorted((Patient(r["patient"], r["contours"], series=r["series"]) for r in rows), key=lambda p: p.id)


def needed(labels) -> set[str]:
    """The contours ("i", "o") an image needs for the structure of `labels`."""
    labels = set(labels) if labels is not None else {1, 2}
    return ({"i", "o"} if 2 in labels else set()) | ({"i"} if 1 in labels else set())


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False too for a path the system cannot look up (a name too long)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def images(patient: Patient, options: dict):
    """The images with the contours the structure needs, in study order (positions from
    their DICOM headers). `mask` is the contour files' common prefix (``.../IM-0001-NNNN``)."""
    problems, found = [], []
    if not _is_dir(patient.folder):
        return [], [(patient.folder, "contour folder does not exist (cohort.series_map)")]
    if patient.series is None or not _is_dir(patient.series):
        return [], [(patient.series, "DICOM series folder does not exist (cohort.series_map)")]
    contours: dict[str, tuple[int, set[str]]] = {}  # by the files' own prefix (IM-0001-0048), not re-padded
    for path in sorted(patient.folder.iterdir()):
        match = CONTOUR.match(path.name)
        if match:
            contours.setdefault(path.name[: match.end("number")], (int(match["number"]), set()))[1].add(
                match["kind"].lower()
            )
    want = needed(labels_of("sunnybrook", options))
    for stem, (number, kinds) in sorted(contours.items()):
        if not want <= kinds:
            continue
        source = patient.series / f"{stem}.dcm"
        if not source.is_file():
            problems.append(
                (
                    patient.folder / f"{stem}-{min(kinds)}contour-manual.txt",
                    f"contours without their image (expected {source})",
                )
            )
            continue
        try:
            header = read_header(source)
        except ValueError as err:
            problems.append((source, str(err)))
            continue
        found.append((header["position"], number, str(source), str(patient.folder / stem)))
    # the slice label: the rank of the image's position (the file numbers run over slices and phases)
    label = {p: k for k, p in enumerate(sorted({round(f[0], 3) for f in found}))}
    found = [(position, label[round(position, 3)], number, source, mask) for position, number, source, mask in found]
    if not found and not problems:
        problems.append(
            (
                patient.folder,
                f"no image with the contours the structure needs ({' and '.join(sorted(want))}contour files)",
            )
        )
    return order_images(found), problems


def read_contour(path: Path) -> np.ndarray:
    """The points of a contour file, as an (n, 2) array of x (column), y (row)."""
    try:
        points = np.loadtxt(path, dtype=float, ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable contour file {path.name} ({err})") from None
    if points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"contour file {path.name}: expected at least 3 lines of 'x y', got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"contour file {path.name}: points that are not finite numbers (nan, inf)")
    return points


def fill(points: np.ndarray, shape: tuple[int, int], path: Path | None = None) -> np.ndarray:
    """Boolean image of the polygon, outline included: every pixel whose centre is inside
    (points at 1/16 px precision) and every pixel the contour line crosses (cv2.fillPoly's
    convention, as the common Sunnybrook tools fill these contours; on the real contours of
    tests/data/sunnybrook that is 4-7 % more pixels than the polygon's area, the ring about
    half a pixel further out than a centres-only fill). ValueError when a point lies outside
    the image (by more than half a pixel)."""
    import cv2

    rows, cols = shape
    outside = (points[:, 0] < -0.5) | (points[:, 0] > cols - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > rows - 0.5)
    if outside.any():
        x, y = points[np.argmax(outside)]
        raise ValueError(
            f"contour file {path.name if path else ''}: {int(outside.sum())} point(s) outside the "
            f"{rows}x{cols} image, e.g. x {x:g}, y {y:g}"
        )
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(points * (1 << SHIFT)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=SHIFT)
    return canvas.astype(bool)


def load(row, options: dict):
    """(header, pixels, labels: 1 LV cavity, 2 myocardium) of one sampled image."""
    header, pixels = read_dicom(row["source"])
    prefix = Path(row["mask"])
    labels = np.zeros(pixels.shape, np.int16)
    inner = prefix.with_name(prefix.name + "-icontour-manual.txt")
    outer = prefix.with_name(prefix.name + "-ocontour-manual.txt")
    cavity = np.zeros(pixels.shape, bool)
    if inner.is_file():
        with blame(inner):
            cavity = fill(read_contour(inner), pixels.shape, inner)
    if outer.is_file():
        with blame(outer):
            labels[fill(read_contour(outer), pixels.shape, outer)] = 2
    labels[cavity] = 1
    return header, pixels, labels
