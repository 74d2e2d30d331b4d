"""What the workflow says about damaged input (issue 24, "Nothing bad reaches the store").

For each cohort format (LVSC, ACDC, M&Ms, Sunnybrook, folders) a tiny clean cohort is
written (the phantom for LVSC, tests/cohort_fixtures.py for the others); each kind of
damage is applied to a fresh copy of it, and the two stages that read input run on the
copy: the cohort stage (`write_sample`) and, when it succeeds, the prepare stage
(`prepare_store`). For each case: the stage that stopped it (cohort, prepare, or none when
it went through), the first problem of the UnetcapError (paths relative to the cohort
folder), the warnings logged, and what was written. Any other exception is a CRASH.

Every labelled image is sampled (images_per_patient above every patient's count,
cohort.few_images all), so damage in any labelled image is read by the prepare stage.

Run: .venv/bin/python benchmarks/damage.py  ->  docs/bad_input/damage.md, damage.csv
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

import cv2  # noqa: E402
import nibabel as nib  # noqa: E402
import pydicom  # noqa: E402
from cohort_fixtures import (  # noqa: E402
    ACDC_LABELS,
    _affine,
    _save_nifti,
    circle,
    reader_options,
    volume,
    write_acdc,
    write_folders,
    write_mnms,
    write_sunnybrook,
)

from unetcap import UnetcapError  # noqa: E402
from unetcap.cohort import write_sample  # noqa: E402
from unetcap.prepare import prepare_store, store_paths  # noqa: E402

OUT = REPO / "docs" / "bad_input"
IMAGES_PER_PATIENT = 100  # above every patient's count: every labelled image is sampled
IMAGE_SIZE = 32
FORMATS = {"lvsc": "LVSC", "acdc": "ACDC", "mnms": "M&Ms", "sunnybrook": "Sunnybrook", "folders": "folders"}
SC_CONTOURS = "contours/SC-HF-I-01/contours-manual/IRCCI-expert"
SC_SERIES = "images/SCD0000101/CINESAX_300"
SC2_CONTOURS = "contours/SC-HF-I-02/contours-manual/IRCCI-expert"
SC2_SERIES = "images/SCD0000201/CINESAX_300"


# --------------------------------------------------------------------------- the clean cohorts
def build(fmt: str, tree: Path) -> None:
    """The clean cohort of `fmt` under tree/cohort (a table outside it beside it)."""
    cohort = tree / "cohort"
    if fmt == "lvsc":
        from unetcap.phantom import write_cohort

        write_cohort(cohort, 3, seed=3, slices=(2, 3), phases=(2, 3), matrix=(24, 40))
    elif fmt == "acdc":
        write_acdc(cohort)
    elif fmt == "mnms":
        write_mnms(cohort)  # its information CSV: tree/mnms_info.csv
    elif fmt == "sunnybrook":
        write_sunnybrook(cohort, slices=2, phases=3)  # series map: cohort/series_map.csv
        # a second patient: the same series and contours under other names
        shutil.copytree(cohort / "images/SCD0000101", cohort / "images/SCD0000201")
        shutil.copytree(cohort / "contours/SC-HF-I-01", cohort / "contours/SC-HF-I-02")
        with open(cohort / "series_map.csv", "a") as f:
            f.write(f"SC-HF-I-02,{SC2_CONTOURS},{SC2_SERIES}\n")
    else:
        write_folders(cohort)


def options_of(fmt: str, tree: Path) -> dict:
    return reader_options(fmt, tree / "cohort")


# --------------------------------------------------------------------------- damage helpers
RNG = np.random.default_rng(24)


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def overwrite(path: Path, at: float = 0.5, n: int = 32) -> None:
    """n random bytes written at `at` (a fraction of the file's length)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + n] = RNG.integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def overwrite_at(path: Path, start: int, n: int = 32) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + n] = RNG.integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def nifti_voxels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj).copy(), image.affine


def edit_nifti(path: Path, change, dtype=None) -> None:
    """Rewrite a NIfTI volume with `change(data)` applied (in `dtype` when given)."""
    data, affine = nifti_voxels(path)
    if dtype is not None:
        data = data.astype(dtype)
    result = change(data)
    _save_nifti(path, data if result is None else result, affine)


def ungzip(path: Path) -> None:
    """The uncompressed NIfTI under its .nii.gz name (not gzip data)."""
    path.write_bytes(gzip.decompress(path.read_bytes()))


def empty_folder(folder: Path) -> None:
    for f in folder.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()


def pick(folder: Path, name: str) -> Path:
    """The file of `folder` named `name`, whatever the case of its name."""
    return next(f for f in folder.iterdir() if f.name.lower() == name.lower())


def edit_dicom(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def crop_dicom(path: Path, rows: int, cols: int) -> None:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array[:rows, :cols].copy()
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)


def edit_png(path: Path, change) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    result = change(image)
    cv2.imwrite(str(path), image if result is None else result)


def zero_pixels(ds) -> None:
    ds.PixelData = np.zeros(ds.pixel_array.shape, ds.pixel_array.dtype).tobytes()


# --------------------------------------------------------------------------- the damage kinds
# Each case: (damage, expected: "stop" | "warn" | "pass", apply(cohort_folder, tree)).
# "pass": a control, or damage the format cannot show (noise in raw pixel data).


def lvsc_cases():
    p1, p2, p3 = "DET0000101", "DET0000201", "DET0000301"

    def f(c, patient, name):
        return pick(c / patient, f"{patient}_{name}")

    def all_masks_empty(c, _):
        for m in (c / p3).iterdir():
            if m.suffix.lower() == ".png":
                edit_png(m, lambda a: np.zeros_like(a))

    def odd_matrix(c, _):  # every image and mask of DET0000201 cropped to 37 x 29
        for d in (c / p2).iterdir():
            if d.suffix.lower() == ".dcm":
                crop_dicom(d, 37, 29)
            else:
                edit_png(d, lambda a: a[:37, :29].copy())

    return [
        ("clean copy (control)", "pass", lambda c, t: None),
        ("odd non-square matrix 37x29, image and mask (control)", "pass", odd_matrix),
        ("DICOM image truncated to half", "stop", lambda c, t: truncate(f(c, p2, "SA2_ph1.dcm"))),
        ("mask PNG truncated to half", "stop", lambda c, t: truncate(f(c, p2, "SA2_ph1.png"))),
        ("random bytes in the DICOM header", "stop", lambda c, t: overwrite_at(f(c, p2, "SA2_ph0.dcm"), 300, 48)),
        ("random bytes in the pixel data (undetectable)", "pass", lambda c, t: overwrite(f(c, p2, "SA2_ph0.dcm"), 0.8)),
        ("random bytes in the mask PNG's middle", "stop", lambda c, t: overwrite(f(c, p2, "SA2_ph0.png"), 0.5, 16)),
        ("image deleted (mask orphaned)", "stop", lambda c, t: f(c, p2, "SA2_ph1.dcm").unlink()),
        ("mask deleted", "stop", lambda c, t: f(c, p2, "SA2_ph1.png").unlink()),
        (
            "wrong BitsAllocated (8 for 16-bit pixels)",
            "stop",
            lambda c, t: edit_dicom(f(c, p2, "SA2_ph1.dcm"), lambda ds: setattr(ds, "BitsAllocated", 8)),
        ),
        (
            "wrong Rows (more than the pixel data holds)",
            "stop",
            lambda c, t: edit_dicom(f(c, p2, "SA2_ph1.dcm"), lambda ds: setattr(ds, "Rows", ds.Rows + 7)),
        ),
        (
            "PixelData element removed",
            "stop",
            lambda c, t: edit_dicom(f(c, p2, "SA2_ph1.dcm"), lambda ds: delattr(ds, "PixelData")),
        ),
        (
            "ImageOrientationPatient with parallel cosines",
            "stop",
            lambda c, t: edit_dicom(
                f(c, p2, "SA1_ph0.dcm"), lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0])
            ),
        ),
        ("all-zero image with a non-empty mask", "stop", lambda c, t: edit_dicom(f(c, p1, "SA2_ph0.dcm"), zero_pixels)),
        (
            "mask of another shape (cropped by 5 rows)",
            "stop",
            lambda c, t: edit_png(f(c, p2, "SA2_ph1.png"), lambda a: a[5:].copy()),
        ),
        ("patient whose myocardium is empty in every mask", "stop", all_masks_empty),
        ("not a DICOM file (text under .dcm)", "stop", lambda c, t: f(c, p2, "SA2_ph1.dcm").write_text("hello\n")),
        ("empty patient folder", "stop", lambda c, t: empty_folder(c / p3)),
        ("zero-byte mask PNG", "stop", lambda c, t: f(c, p2, "SA1_ph1.png").write_bytes(b"")),
    ]


def acdc_cases():
    def p(c, name):
        return c / name[:10] / name

    def empty_structure(c, _):  # patient003: no myocardium (label 2) anywhere
        for frame in ("01", "07"):
            edit_nifti(p(c, f"patient003_frame{frame}_gt.nii.gz"), lambda d: d.__setitem__(d == 2, 0))

    def odd_patient(c, _):  # a fourth patient of 97 x 131 voxels, 3 slices
        folder = c / "patient004"
        folder.mkdir()
        (folder / "Info.cfg").write_text("ED: 1\nES: 7\nGroup: HCM\nHeight: 170.0\nNbFrame: 10\nWeight: 70.0\n")
        for frame, t in ((1, 0), (7, 1)):
            image, labels = volume((97, 131), 3, t, seed=4)
            _save_nifti(folder / f"patient004_frame{frame:02d}.nii.gz", image, _affine())
            _save_nifti(folder / f"patient004_frame{frame:02d}_gt.nii.gz", ACDC_LABELS[labels], _affine())

    def nan(d):
        d[5, 6, 1] = np.nan

    def other_shape(c, _):
        gt = p(c, "patient001_frame07_gt.nii.gz")
        data, affine = nifti_voxels(gt)
        _save_nifti(gt, data[:, :200], affine)

    def four_d(c, _):
        path = p(c, "patient002_frame01.nii.gz")
        data, affine = nifti_voxels(path)
        _save_nifti(path, np.stack([data, data], axis=3), affine)

    def header_dim(c, _):  # dim[3] (slices) 5 -> 50: the header asks for more voxels than stored
        path = p(c, "patient001_frame01.nii.gz")
        raw = bytearray(gzip.decompress(path.read_bytes()))
        raw[46:48] = np.int16(50).tobytes()
        path.write_bytes(gzip.compress(bytes(raw)))

    info = "patient002/Info.cfg"
    return [
        ("clean copy (control)", "pass", lambda c, t: None),
        ("extra patient, odd non-square matrix 97x131 (control)", "pass", odd_patient),
        ("image volume truncated to half", "stop", lambda c, t: truncate(p(c, "patient001_frame07.nii.gz"))),
        ("label volume truncated to half", "stop", lambda c, t: truncate(p(c, "patient001_frame07_gt.nii.gz"))),
        (
            "random bytes in the middle of the image (.gz)",
            "stop",
            lambda c, t: overwrite(p(c, "patient001_frame07.nii.gz")),
        ),
        ("header dim[3] 5 -> 50 (more voxels than stored)", "stop", header_dim),
        ("image deleted (labels orphaned)", "stop", lambda c, t: p(c, "patient002_frame07.nii.gz").unlink()),
        ("labels deleted", "stop", lambda c, t: p(c, "patient002_frame07_gt.nii.gz").unlink()),
        (
            "a NaN voxel in the image",
            "stop",
            lambda c, t: edit_nifti(p(c, "patient001_frame01.nii.gz"), nan, np.float32),
        ),
        (
            "an infinite voxel in the image",
            "stop",
            lambda c, t: edit_nifti(
                p(c, "patient001_frame07.nii.gz"), lambda d: d.__setitem__((0, 0, 2), np.inf), np.float32
            ),
        ),
        (
            "all-zero image with non-empty labels",
            "stop",
            lambda c, t: edit_nifti(p(c, "patient002_frame01.nii.gz"), lambda d: d.__setitem__(Ellipsis, 0)),
        ),
        (
            "label value 7 (ACDC has 0-3)",
            "stop",
            lambda c, t: edit_nifti(
                p(c, "patient001_frame01_gt.nii.gz"), lambda d: d.__setitem__((0, 0, slice(None)), 7)
            ),
        ),
        ("labels of another shape (224 -> 200 columns)", "stop", other_shape),
        ("a 4-D frame volume (ACDC frames are 3-D)", "stop", four_d),
        ("patient whose myocardium is empty everywhere", "stop", empty_structure),
        (
            "not gzip data in a .nii.gz (uncompressed NIfTI)",
            "pass?",
            lambda c, t: ungzip(p(c, "patient003_frame01_gt.nii.gz")),
        ),
        ("Info.cfg without ED and ES", "stop", lambda c, t: (c / info).write_text("Group: NOR\nHeight: 180.0\n")),
        (
            "Info.cfg: ES names a missing frame (9)",
            "stop",
            lambda c, t: (c / info).write_text("ED: 1\nES: 9\nGroup: NOR\n"),
        ),
        ("Info.cfg without Group", "warn", lambda c, t: (c / info).write_text("ED: 1\nES: 7\n")),
        ("Info.cfg deleted", "stop", lambda c, t: (c / info).unlink()),
        ("empty patient folder", "stop", lambda c, t: empty_folder(c / "patient003")),
    ]


def mnms_cases():
    def p(c, name):
        return c / name[:6] / name

    def info_edit(old, new):
        def apply(c, t):
            path = t / "mnms_info.csv"
            text = path.read_text()
            assert old in text, (old, text)
            path.write_text(text.replace(old, new))

        return apply

    def nan(d):
        d[10, 10, 1, 3] = np.nan

    def labels_7(d):
        d[0, 0, :, 0] = 7

    def empty_structure(c, _):
        edit_nifti(p(c, "B1K2L3_sa_gt.nii.gz"), lambda d: d.__setitem__(d == 2, 0))

    def other_shape(c, _):
        gt = p(c, "A0S9V9_sa_gt.nii.gz")
        data, affine = nifti_voxels(gt)
        _save_nifti(gt, data[:, :140], affine)

    def fewer_frames(c, _):  # the label cine has 5 frames, the image 6
        gt = p(c, "A0S9V9_sa_gt.nii.gz")
        data, affine = nifti_voxels(gt)
        _save_nifti(gt, data[..., :5], affine)

    def drop_ed(c, t):
        path = t / "mnms_info.csv"
        rows = [line.split(",") for line in path.read_text().splitlines()]
        path.write_text("".join(",".join(r[:4] + r[5:]) + "\n" for r in rows))

    def trailing_comma(c, t):  # an extra empty field: pandas takes the first column as the index
        path = t / "mnms_info.csv"
        head, *rows = path.read_text().splitlines()
        path.write_text(head + "\n" + "".join(r + ",\n" for r in rows))

    def odd_patient(c, _):  # an M&Ms-2 patient of 97 x 131 voxels
        folder = c / "D1E2F3"
        folder.mkdir()
        for t, name in enumerate(("ED", "ES")):
            image, label = volume((97, 131), 3, t)
            _save_nifti(folder / f"D1E2F3_SA_{name}.nii.gz", image, _affine())
            _save_nifti(folder / f"D1E2F3_SA_{name}_gt.nii.gz", label.astype(np.uint8), _affine())

    return [
        ("clean copy (control)", "pass", lambda c, t: None),
        ("extra M&Ms-2 patient, odd non-square matrix 97x131 (control)", "pass", odd_patient),
        ("cine image truncated to half", "stop", lambda c, t: truncate(p(c, "A0S9V9_sa.nii.gz"))),
        ("label cine truncated to half", "stop", lambda c, t: truncate(p(c, "A0S9V9_sa_gt.nii.gz"))),
        ("random bytes in the middle of the image (.gz)", "stop", lambda c, t: overwrite(p(c, "B1K2L3_sa.nii.gz"))),
        ("image deleted (labels orphaned)", "stop", lambda c, t: p(c, "A0S9V9_sa.nii.gz").unlink()),
        ("labels deleted", "stop", lambda c, t: p(c, "A0S9V9_sa_gt.nii.gz").unlink()),
        ("M&Ms-2 ES image deleted (its labels orphaned)", "stop", lambda c, t: p(c, "C7D8E9_SA_ES.nii.gz").unlink()),
        ("a NaN voxel in a labelled frame", "stop", lambda c, t: edit_nifti(p(c, "A0S9V9_sa.nii.gz"), nan, np.float32)),
        (
            "all-zero cine with non-empty labels",
            "stop",
            lambda c, t: edit_nifti(p(c, "B1K2L3_sa.nii.gz"), lambda d: d.__setitem__(Ellipsis, 0)),
        ),
        ("label value 7 (M&Ms has 0-3)", "stop", lambda c, t: edit_nifti(p(c, "A0S9V9_sa_gt.nii.gz"), labels_7)),
        ("labels of another shape (150 -> 140 columns)", "stop", other_shape),
        ("label cine with 5 frames, image 6", "stop", fewer_frames),
        ("patient whose myocardium is empty everywhere", "stop", empty_structure),
        (
            "not gzip data in a .nii.gz (uncompressed NIfTI)",
            "pass?",
            lambda c, t: ungzip(p(c, "C7D8E9_SA_ED_gt.nii.gz")),
        ),
        (
            "information CSV: ES frame 4 not labelled",
            "stop",
            info_edit("B1K2L3,Philips,B,2,0,3", "B1K2L3,Philips,B,2,0,4"),
        ),
        ("information CSV: ED given, ES empty", "stop", info_edit("B1K2L3,Philips,B,2,0,3", "B1K2L3,Philips,B,2,0,")),
        (
            "information CSV: ES frame 9 beyond the 6-frame cine",
            "stop",
            info_edit("A0S9V9,Siemens,A,1,0,3", "A0S9V9,Siemens,A,1,0,9"),
        ),
        ("information CSV without its ED column", "stop", drop_ed),
        ("information CSV: a trailing comma on every data row", "stop", trailing_comma),
        ("empty patient folder", "stop", lambda c, t: empty_folder(c / "B1K2L3")),
    ]


def sunnybrook_cases():
    def im(c, number, series=SC_SERIES):
        return c / series / f"IM-0001-{number:04d}.dcm"

    def ct(c, number, kind, contours=SC_CONTOURS):
        return c / contours / f"IM-0001-{number:04d}-{kind}contour-manual.txt"

    def table(rows):
        def apply(c, t):
            head = "patient,contours,series\n"
            (c / "series_map.csv").write_text(head + "".join(r + "\n" for r in rows))

        return apply

    one = f"SC-HF-I-01,{SC_CONTOURS},{SC_SERIES}"
    two = f"SC-HF-I-02,{SC2_CONTOURS},{SC2_SERIES}"

    def ring_empty(c, _):  # patient 2: outer contour = inner contour in every image
        for o in (c / SC2_CONTOURS).glob("*-ocontour-manual.txt"):
            o.write_text(o.with_name(o.name.replace("-ocontour", "-icontour")).read_text())

    def odd_matrix(c, _):  # patient 2's series cropped to 64 x 47 (the contours fit)
        for d in (c / SC2_SERIES).iterdir():
            crop_dicom(d, 64, 47)

    def outside(c, _):
        np.savetxt(ct(c, 4, "o"), np.array([[1, 1], [70, 2], [30, 40]]), fmt="%g")

    def nan_point(c, _):
        points = circle(32, 30, 13)
        points[3] = np.nan
        np.savetxt(ct(c, 4, "o"), points, fmt="%.2f")

    return [
        ("clean copy (control)", "pass", lambda c, t: None),
        ("odd non-square matrix 64x47, one patient (control)", "pass", odd_matrix),
        ("DICOM image truncated to half", "stop", lambda c, t: truncate(im(c, 4))),
        (
            "contour file truncated to one point",
            "stop",
            lambda c, t: ct(c, 4, "i").write_text(ct(c, 4, "i").read_text().splitlines()[0] + "\n"),
        ),
        ("random bytes in the DICOM header", "stop", lambda c, t: overwrite_at(im(c, 4), 300, 48)),
        ("random bytes in the pixel data (undetectable)", "pass", lambda c, t: overwrite(im(c, 4), 0.8)),
        ("image deleted (contours orphaned)", "stop", lambda c, t: im(c, 4).unlink()),
        ("inner contour deleted (image no longer labelled)", "pass?", lambda c, t: ct(c, 4, "i").unlink()),
        (
            "wrong BitsAllocated (8 for 16-bit pixels)",
            "stop",
            lambda c, t: edit_dicom(im(c, 4), lambda ds: setattr(ds, "BitsAllocated", 8)),
        ),
        (
            "wrong Rows (more than the pixel data holds)",
            "stop",
            lambda c, t: edit_dicom(im(c, 4), lambda ds: setattr(ds, "Rows", 71)),
        ),
        ("all-zero image with contours", "stop", lambda c, t: edit_dicom(im(c, 4), zero_pixels)),
        ("contour point outside the image", "stop", outside),
        ("contour point NaN", "stop", nan_point),
        ("contour file of text, not numbers", "stop", lambda c, t: ct(c, 4, "o").write_text("x y\nfoo bar\n")),
        ("patient whose myocardium is empty (outer = inner)", "stop", ring_empty),
        ("not a DICOM file (text under .dcm)", "stop", lambda c, t: im(c, 4).write_text("hello\n")),
        ("series map names a missing series folder", "stop", table([one, two.replace("SCD0000201", "SCD0000999")])),
        ("series map lists a patient twice", "stop", table([one, two, one])),
        (
            "series map without its series column",
            "stop",
            lambda c, t: (c / "series_map.csv").write_text("patient,contours\nSC-HF-I-01," + SC_CONTOURS + "\n"),
        ),
        ("empty contour folder", "stop", lambda c, t: empty_folder(c / SC2_CONTOURS)),
        ("empty series folder", "stop", lambda c, t: empty_folder(c / SC2_SERIES)),
    ]


def folders_cases():
    def img(c, rel):
        return c / "images" / rel

    def msk(c, rel):
        return c / "masks" / rel

    def empty_structure(c, _):
        for m in (c / "masks/p3").iterdir():
            np.save(m, np.zeros_like(np.load(m)))

    def nan(c, _):
        a = np.load(img(c, "p3/s1_p1.npy"))
        a[10, 10] = np.nan
        np.save(img(c, "p3/s1_p1.npy"), a)

    def zero_image(c, _):
        a = np.load(img(c, "p3/s2_p0.npy"))
        np.save(img(c, "p3/s2_p0.npy"), np.zeros_like(a))

    def negative_label(c, _):
        a = np.load(msk(c, "p3/s1_p0.npy")).astype(np.int16)
        a[0, 0] = -1
        np.save(msk(c, "p3/s1_p0.npy"), a)

    def nan_label(c, _):
        a = np.load(msk(c, "p3/s1_p0.npy")).astype(np.float32)
        a[0, 0] = np.nan
        np.save(msk(c, "p3/s1_p0.npy"), a)

    def rename(c, _):  # s1_p1 -> s1-p1: the phase expression _p(\d+)\. does not match
        for root, ext in (("images", "png"), ("masks", "png")):
            (c / root / f"p1/s1_p1.{ext}").rename(c / root / f"p1/s1-p1.{ext}")

    def stray(c, _):  # a file straight under images/: the patient expression finds no folder
        shutil.copy(img(c, "p1/s1_p0.png"), img(c, "s9_p0.png"))
        shutil.copy(msk(c, "p1/s1_p0.png"), msk(c, "s9_p0.png"))

    def empty_patient(c, _):
        (c / "images/p4").mkdir()
        (c / "masks/p4").mkdir()

    def three_d(c, _):
        a = np.load(img(c, "p3/s2_p1.npy"))
        np.save(img(c, "p3/s2_p1.npy"), np.stack([a, a, a], axis=2))

    def odd_patient(c, _):
        from cohort_fixtures import cartoon

        (c / "images/p5").mkdir()
        (c / "masks/p5").mkdir()
        for z in (1, 2):
            image, labels = cartoon((97, 131), z, 0)
            cv2.imwrite(str(img(c, f"p5/s{z}_p0.png")), image.astype(np.uint16))
            cv2.imwrite(str(msk(c, f"p5/s{z}_p0.png")), labels.astype(np.uint8))

    return [
        ("clean copy (control)", "pass", lambda c, t: None),
        ("extra patient, odd non-square PNG 97x131 (control)", "pass", odd_patient),
        ("PNG image truncated to half", "stop", lambda c, t: truncate(img(c, "p1/s2_p1.png"))),
        ("PNG mask truncated to half", "stop", lambda c, t: truncate(msk(c, "p1/s2_p1.png"))),
        ("TIFF image truncated to half", "stop", lambda c, t: truncate(img(c, "p2/s2_p0.tif"))),
        ("random bytes in the middle of a PNG image", "stop", lambda c, t: overwrite(img(c, "p1/s2_p0.png"), 0.5, 16)),
        ("image deleted (mask without image)", "stop", lambda c, t: img(c, "p2/s3_p0.tif").unlink()),
        ("mask deleted (image without mask)", "stop", lambda c, t: msk(c, "p2/s3_p0.png").unlink()),
        ("a NaN pixel in an NPY image", "stop", nan),
        ("all-zero NPY image with a non-empty mask", "stop", zero_image),
        ("mask value -1 (NPY)", "stop", negative_label),
        ("mask value NaN (float NPY)", "stop", nan_label),
        (
            "mask of another shape (PNG cropped by 5 rows)",
            "stop",
            lambda c, t: edit_png(msk(c, "p1/s1_p0.png"), lambda a: a[5:].copy()),
        ),
        ("a 3-D NPY image (70x90x3)", "stop", three_d),
        ("patient whose masks are empty everywhere", "stop", empty_structure),
        ("not gzip data in a .nii.gz (uncompressed NIfTI)", "pass?", lambda c, t: ungzip(img(c, "p10/s1_p0.nii.gz"))),
        ("file name the phase expression does not match (s1-p1.png)", "stop", rename),
        ("image straight under images/ (patient expression does not match)", "stop", stray),
        ("empty patient folder (images/p4, masks/p4)", "stop", empty_patient),
        ("not an image (text under .png)", "stop", lambda c, t: img(c, "p1/s3_p0.png").write_text("hello\n")),
    ]


CASES = {
    "lvsc": lvsc_cases,
    "acdc": acdc_cases,
    "mnms": mnms_cases,
    "sunnybrook": sunnybrook_cases,
    "folders": folders_cases,
}


# --------------------------------------------------------------------------- running a case
class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def relative(text: str, tree: Path) -> str:
    cohort = tree / "cohort"
    for path, name in ((cohort, "<cohort>"), (tree, "<tree>")):
        text = text.replace(f"{path}/", "").replace(str(path), name)
    return text


def first_problem(message: str) -> tuple[str, int]:
    """(the first problem line, how many problems) of a UnetcapError's message."""
    lines = message.splitlines()
    if len(lines) > 1 and lines[0].endswith("problem(s)"):
        count = int(lines[0].rsplit(" ", 2)[-2])
        return lines[1].strip(), count
    return lines[0] if lines else "", 1


def written(out: Path) -> str:
    parts = []
    if (out / "sample.csv").exists():
        parts.append("sample.csv")
    store = out / "store"
    if store.exists():
        names = sorted(p.name for p in store.iterdir())
        full = {"images.npy", "masks.npy", "index.csv", "store.json"}
        if set(names) == full:
            parts.append("store")
        elif names:
            parts.append("store/ " + ", ".join(names))
        else:
            parts.append("store/ (empty folder)")
    return " + ".join(parts) if parts else "nothing"


def run_case(fmt: str, tree: Path, handler: Collect) -> dict:
    options = options_of(fmt, tree)
    out = tree / "out"
    out.mkdir()
    handler.messages.clear()
    stage, line, count, error = "none", "", 0, ""
    try:
        stage = "cohort"
        write_sample(tree / "cohort", out / "sample.csv", IMAGES_PER_PATIENT, source=fmt, options=options)
        stage = "prepare"
        store = prepare_store(out / "sample.csv", *store_paths(out / "store"), IMAGE_SIZE, source=fmt, options=options)
        stage = "none"
        line = f"{store['n_images']} images stored"
    except UnetcapError as err:
        error = relative(str(err), tree)
        line, count = first_problem(error)
    except Exception as err:  # a bug: record it, do not stop
        error = f"CRASH: {type(err).__name__}: {relative(str(err), tree)}"
        line, count = error.splitlines()[0], 1
    warned = [relative(m, tree) for m in handler.messages]
    return {
        "stage": stage,
        "first_line": line,
        "problems": count,
        "warnings": " | ".join(warned),
        "written": written(out),
        "error": error,
        "crash": error.startswith("CRASH"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where damage.md and damage.csv go (default docs/bad_input)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    handler = Collect()
    library = logging.getLogger("unetcap")
    library.addHandler(handler)
    library.propagate = False  # no INFO lines and no duplicated warnings on the terminal
    library.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(handler)
    logging.getLogger("py.warnings").propagate = False
    warnings.simplefilter("always")
    rows = []
    with tempfile.TemporaryDirectory(prefix="damage-") as tmp:
        base = Path(tmp).resolve()
        for fmt in FORMATS:
            clean = base / "clean" / fmt
            build(fmt, clean)
            for k, (damage, expected, apply) in enumerate(CASES[fmt]()):
                tree = base / "cases" / f"{fmt}-{k:02d}"
                shutil.copytree(clean, tree)
                case_start = time.perf_counter()
                try:
                    apply(tree / "cohort", tree)
                except Exception as err:
                    raise RuntimeError(f"{fmt}: applying {damage!r} failed: {err}") from err
                result = run_case(fmt, tree, handler)
                result.update(
                    format=FORMATS[fmt], damage=damage, expected=expected, seconds=time.perf_counter() - case_start
                )
                rows.append(result)
                shutil.rmtree(tree)
    seconds = time.perf_counter() - start
    report(rows, seconds, args.out)


# --------------------------------------------------------------------------- the report
def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def said(row: dict) -> str:
    """What the workflow said: the first problem (with the count of the others), or the warning."""
    if row["stage"] != "none":
        more = f" (+{row['problems'] - 1} more)" if row["problems"] > 1 else ""
        return row["first_line"] + more
    if row["warnings"]:
        return f"{row['first_line']}; WARNING: {row['warnings']}"
    return row["first_line"]


def silent(row: dict) -> bool:
    return row["stage"] == "none" and row["expected"] == "stop"


def report(rows: list[dict], seconds: float, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = [
        "format",
        "damage",
        "expected",
        "stage",
        "first_line",
        "problems",
        "warnings",
        "written",
        "seconds",
        "error",
    ]
    with open(out / "damage.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "seconds": f"{row['seconds']:.2f}"})
    try:
        version = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        version = "?"
    lines = [
        "# Damaged input: what the workflow says",
        "",
        'Written by `benchmarks/damage.py` (issue 24, "Nothing bad reaches the store"); '
        f"source {version or '?'}, {len(rows)} cases in {seconds:.1f} s.",
        "",
        "Each damage is applied to a fresh copy of a tiny clean cohort of its format; then the "
        "cohort stage (`write_sample`, every labelled image sampled) and, when it succeeds, the "
        f"prepare stage (`prepare_store`, {IMAGE_SIZE} px) run on it. **stage**: the stage that "
        "stopped it (`none`: it went through). **first line**: the first problem of the error "
        "(paths relative to the cohort folder; `(+n more)` other problems), or, when it went "
        "through, how many images were stored and any warning logged. **written**: what exists "
        "afterwards in the output folder (`store`: images.npy, masks.npy, index.csv, store.json). "
        "Controls and damage the format cannot show are marked as such.",
        "",
    ]
    for name in FORMATS.values():
        mine = [r for r in rows if r["format"] == name]
        lines += [
            f"## {name} ({len(mine)} cases)",
            "",
            "| damage | stage | first line | written |",
            "|---|---|---|---|",
        ]
        for r in mine:
            stage = r["stage"] + (" **CRASH**" if r["crash"] else "") + (" **silent**" if silent(r) else "")
            lines.append(f"| {cell(r['damage'])} | {stage} | {cell(said(r))} | {cell(r['written'])} |")
        lines.append("")
    crashes = [r for r in rows if r["crash"]]
    quiet = [r for r in rows if silent(r)]
    lines += ["## Totals", ""]
    for name in FORMATS.values():
        mine = [r for r in rows if r["format"] == name]
        by_stage = {s: sum(r["stage"] == s for r in mine) for s in ("cohort", "prepare", "none")}
        lines.append(
            f"- {name}: {len(mine)} cases; stopped at cohort {by_stage['cohort']}, at prepare "
            f"{by_stage['prepare']}, through {by_stage['none']}; crashes {sum(r['crash'] for r in mine)}"
        )
    lines += [
        f"- crashes (an exception other than UnetcapError): {len(crashes)}",
        f"- damage that went through silently: {len(quiet)}"
        + (": " + "; ".join(f"{r['format']}: {r['damage']}" for r in quiet) if quiet else ""),
        f"- run time: {seconds:.1f} s",
        "",
    ]
    (out / "damage.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written: {out / 'damage.md'}, {out / 'damage.csv'}")


if __name__ == "__main__":
    main()
