"""Fuzzing the cohort readers (issue 24, item 6): a tiny clean cohort of every format
(lvsc: two phantom patients and one of pydicom's MR_small in six transfer syntaxes; acdc,
mnms with its information CSV, sunnybrook with its series map, folders with PNG, TIFF, NPY
and NIfTI files) is copied for each example and corrupted in random ways (truncation,
random bytes, changed DICOM and NIfTI header fields, wrong shapes and types, label values
outside the format's, NaN and infinite voxels, malformed tables, contour files and file
names); then the cohort stage and the prepare stage run on it.

The only outcomes allowed: a UnetcapError each of whose problems names a file that exists
(or a config key, `cohort.` ...), with nothing left at the store's final names when the
prepare stage fails; or a store that keeps its contract (images float32 N x S x S, finite,
in [0, 1]; masks uint8 0/1; store.json's sha256 those of the files; index.csv N rows).
Any other exception fails the test. Each crash the fuzzer found has its regression test
at the end of this module, with the exact corruption.

Measured (`pytest -s` prints it; one core, another test run busy beside it): 125 cases (25
per format, derandomized: the same ones every run) in 14 s, the clean cohorts written once
in 2 s, the whole module with its regression tests in 20 s. 64 of the 125 end in an error
of the cohort stage, 19 in one of the prepare stage, 42 in a store. Run unseeded and
thousands of times (4000 cases per format) while the readers were fixed, until no crash
was left.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cohort_fixtures import reader_options
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from unetcap import UnetcapError

EXAMPLES = 25  # per format
SIZE_CHOICES = (7, 16)
FORMATS = ("lvsc", "acdc", "mnms", "sunnybrook", "folders")
RAN: Counter = Counter()  # (format, outcome) -> cases
SECONDS: Counter = Counter()  # "clean": writing the clean cohorts; "cases": copying, corrupting and running them


# --------------------------------------------------------------------------- the clean cohorts
def build(fmt: str, tree: Path) -> None:
    """The clean cohort of `fmt` under tree/cohort (its tables beside it)."""
    from cohort_fixtures import write_acdc, write_folders, write_mnms, write_sunnybrook

    cohort = tree / "cohort"
    if fmt == "lvsc":
        from lvsc_fixture import write_patient

        from unetcap.phantom import write_cohort

        write_cohort(cohort, 2, seed=3, slices=(2, 3), phases=(2, 2), matrix=(24, 40))
        write_patient(cohort, "DET0000301", 2, 3)  # MR_small in its six transfer syntaxes
    elif fmt == "acdc":
        write_acdc(cohort)
    elif fmt == "mnms":
        write_mnms(cohort)  # the information CSV: tree/mnms_info.csv
    elif fmt == "sunnybrook":
        write_sunnybrook(cohort, slices=2, phases=3)  # the series map: cohort/series_map.csv
    else:
        write_folders(cohort)


def options_of(fmt: str, tree: Path) -> dict:
    return reader_options(fmt, tree / "cohort")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """{format: the folder of its clean cohort}, written once for the module."""
    start = time.perf_counter()
    base = tmp_path_factory.mktemp("clean")
    for fmt in FORMATS:
        build(fmt, base / fmt)
    SECONDS["clean"] += time.perf_counter() - start
    return base


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("cases")


# --------------------------------------------------------------------------- corruptions
ODD_TEXT = ["", "1", "7", "0", "-1", "x7", "1.5", "\u00b2", "\u0663", "99999999999999999999", " 7 ", "1:2", "nan", "é"]
ODD_DS = ["0", "1", "-1", "0.5", "nan", "inf", "-inf", "1e400", "1e-400", "abc", "", " 2 ", "1,5", "2.5e2"]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e-30, 1e30, 2.5]
NIFTI_FIELDS = {  # name: (offset, struct format, values) in a NIfTI-1 header
    "sizeof_hdr": (0, "i", [0, 540, 1234, -1]),
    "dim0": (40, "h", [-1, 0, 1, 2, 3, 4, 5, 7, 8, 100]),
    **{f"dim{k}": (40 + 2 * k, "h", [-5, -1, 0, 1, 2, 3, 1000, 32767]) for k in range(1, 8)},
    "datatype": (70, "h", [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 255, -1]),
    "bitpix": (72, "h", [0, 1, 8, 16, 33, -8]),
    **{f"pixdim{k}": (76 + 4 * k, "f", ODD_FLOATS) for k in range(0, 5)},
    "vox_offset": (108, "f", [0.0, 1.0, 348.0, 353.0, 1e6, 1e30, -1.0, float("nan"), float("inf")]),
    "scl_slope": (112, "f", ODD_FLOATS),
    "scl_inter": (116, "f", ODD_FLOATS),
    "qform_code": (252, "h", [-1, 0, 1, 2, 5, 999]),
    "sform_code": (254, "h", [-1, 0, 1, 2, 5, 999]),
    **{f"quatern{k}": (256 + 4 * k, "f", [float("nan"), float("inf"), 2.0, -2.0, 0.0, 1e30]) for k in range(6)},
    **{f"srow{k}": (280 + 4 * k, "f", [float("nan"), float("inf"), 0.0, 1e30, -1e30]) for k in range(12)},
    "magic": (344, "4s", [b"n+1\0", b"ni1\0", b"n+2\0", b"xxxx", b"\0\0\0\0"]),
}
US_VALUES = [0, 1, 2, 3, 7, 8, 12, 15, 16, 32, 63, 65, 128, 4096, 65535]
DICOM_FIELDS = {
    **dict.fromkeys(
        ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel", "PixelRepresentation"], "US"
    ),
    "PlanarConfiguration": "US",
    **dict.fromkeys(["PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "MagneticFieldStrength"], "DS"),
    "NumberOfFrames": "IS",
    "Manufacturer": "LO",
    "PhotometricInterpretation": "CS",
}
SYNTAX_UIDS = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.3",
    "",
]


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _nifti_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.lower().endswith(".gz") else data


def _write_nifti_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data, 1) if path.name.lower().endswith(".gz") else data)


def _overwrite(data: bytes, draw) -> bytes:
    """`data` with 1-4 runs of random bytes written at random offsets."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=16))
        data[at : at + len(chunk)] = chunk
    return bytes(data)


def corrupt_bytes(path: Path, draw) -> str:
    kind = draw(st.sampled_from(["truncate", "bytes", "delete", "empty"]))
    if kind == "delete":
        path.unlink()
        return kind
    data = path.read_bytes()
    if kind == "truncate":
        keep = draw(st.integers(0, max(0, len(data) - 1)))
        path.write_bytes(data[:keep])
        return f"truncate to {keep} of {len(data)} bytes"
    if kind == "empty":
        path.write_bytes(b"")
        return kind
    path.write_bytes(_overwrite(data, draw))
    return "random bytes"


def corrupt_nifti(path: Path, draw) -> str:
    """A changed header field, random bytes in the decompressed file, or new voxels
    (NaN / inf, labels outside the format's, another shape or data type)."""
    kind = draw(st.sampled_from(["field", "field", "inner bytes", "voxels"]))
    try:
        data = _nifti_bytes(path)
        if kind == "voxels":
            import nibabel as nib

            image = nib.load(str(path))
            voxels = np.asanyarray(image.dataobj)
    except Exception:  # corrupted already
        return corrupt_bytes(path, draw)
    if kind == "inner bytes":
        _write_nifti_bytes(path, _overwrite(data, draw))
        return "random bytes in the decompressed NIfTI"
    if kind == "field" and len(data) >= 348:
        name = draw(st.sampled_from(sorted(NIFTI_FIELDS)))
        offset, fmt, values = NIFTI_FIELDS[name]
        value = draw(st.sampled_from(values))
        data = bytearray(data)
        struct.pack_into("<" + fmt, data, offset, value)
        _write_nifti_bytes(path, bytes(data))
        return f"NIfTI {name} = {value!r}"
    if kind != "voxels" or voxels.size == 0:
        return corrupt_bytes(path, draw)
    change = draw(st.sampled_from(["nan", "inf", "labels", "shape", "dtype", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    spots = tuple(rng.integers(0, n, 3) for n in voxels.shape)
    if change in ("nan", "inf"):
        voxels = voxels.astype(np.float32)
        voxels[spots] = np.nan if change == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
    elif change == "labels":
        voxels = voxels.astype(draw(st.sampled_from([np.int32, np.float32])))
        voxels[spots] = draw(st.sampled_from([-1, 4, 7, 255, 1000, 65538, -70000, 0.5, 2.5]))
    elif change == "shape":
        how = draw(st.sampled_from(["drop slice", "transpose", "add axis", "2-D", "5-D", "1-D"]))
        voxels = {
            "drop slice": lambda v: v[..., :-1] if v.ndim > 2 else v[:-1],
            "transpose": lambda v: np.swapaxes(v, 0, 1),
            "add axis": lambda v: v[..., None].repeat(2, axis=-1),
            "2-D": lambda v: v.reshape(v.shape[0], -1),
            "5-D": lambda v: v.reshape(*v.shape[:3], 1, 1, -1) if v.ndim == 3 else v[..., None, None],
            "1-D": lambda v: v.reshape(-1),
        }[how](voxels)
        change = f"shape {how}"
    elif change == "dtype":
        dtype = draw(st.sampled_from(["u1", "i1", "i8", "f8", "c8", "u2", "f4"]))
        voxels = voxels.astype(dtype)
        change = f"dtype {dtype}"
    else:
        voxels = np.full_like(voxels, draw(st.sampled_from([0, 1, 2, 3])))
    try:
        nib.save(nib.Nifti1Image(np.ascontiguousarray(voxels), image.affine), str(path))
    except Exception:  # a shape or type NIfTI cannot hold
        return corrupt_bytes(path, draw)
    return f"NIfTI voxels: {change}"


def _dicom_raw(ds, keyword: str, raw: bytes) -> None:
    """Set element `keyword` of `ds` to the raw bytes `raw`, written as they are."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    vr = dictionary_VR(tag)
    if len(raw) % 2:
        raw += b"\0" if vr in ("US", "UI") else b" "
    little = ds.file_meta.get("TransferSyntaxUID") != "1.2.840.10008.1.2.2"
    implicit = ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2"
    ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, implicit, little)


def corrupt_dicom(path: Path, draw) -> str:
    """A header field set to an odd value, or deleted, another transfer syntax declared, or
    pixel data of another length."""
    import warnings

    import pydicom

    kind = draw(st.sampled_from(["field", "field", "field", "delete", "syntax", "pixels"]))
    if kind == "syntax":  # the file meta's UID, patched in place (the dataset is not re-encoded)
        data = path.read_bytes()
        old = re.search(rb"1\.2\.840\.10008\.1\.2[\d.]*\0?", data[128:400])
        if old is None:
            return corrupt_bytes(path, draw)
        new = draw(st.sampled_from(SYNTAX_UIDS)).encode()
        new = new[: len(old[0])].ljust(len(old[0]), b"\0")
        at = 128 + old.start()
        path.write_bytes(data[:at] + new + data[at + len(new) :])
        return f"TransferSyntaxUID {new!r}"
    try:
        ds = pydicom.dcmread(path)
    except Exception:
        return corrupt_bytes(path, draw)
    if kind == "delete":
        name = draw(st.sampled_from([*DICOM_FIELDS, "PixelData"]))
        if name in ds:
            delattr(ds, name)
        what = f"DICOM {name} deleted"
    elif kind == "pixels":
        length = draw(st.sampled_from([0, 1, 100, 4095, 8191, 8193, 20000]))
        ds.PixelData = draw(st.binary(min_size=min(length, 16), max_size=16)).ljust(length, b"\x07")
        what = f"DICOM PixelData of {length} bytes"
    else:
        name = draw(st.sampled_from(sorted(DICOM_FIELDS)))
        vr = DICOM_FIELDS[name]
        big = ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.2"
        if vr == "US":
            value = draw(st.sampled_from([None, *US_VALUES]))
            raw = b"" if value is None else struct.pack(">H" if big else "<H", value)
        elif vr == "DS":
            value = "\\".join(draw(st.lists(st.sampled_from(ODD_DS), min_size=0, max_size=7)))
            raw = value.encode()
        elif vr == "IS":
            value = draw(st.sampled_from(["", "0", "1", "2", "-1", "abc", "1.5", "99999999999"]))
            raw = value.encode()
        else:
            value = draw(st.sampled_from(["", "RGB", "MONOCHROME1", "PALETTE COLOR", "YBR_FULL", "\xff garbage"]))
            raw = value.encode("latin-1")
        _dicom_raw(ds, name, raw)
        what = f"DICOM {name} = {value!r}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds.save_as(path)
        except Exception:
            return corrupt_bytes(path, draw)
    return what


def _random_array(draw, shape, kinds):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(kinds))
    values = draw(st.sampled_from(["noise", "constant", "labels", "nan", "huge"]))
    if np.dtype(dtype).kind in "fc":
        array = rng.normal(100, 30, shape)
        if values == "nan" and array.size:
            array.flat[rng.integers(0, array.size, 3)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        elif values == "huge":
            array *= 1e36
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        low, high = (info.min, info.max) if values != "labels" else (0, 7)
        array = rng.integers(low, high, shape, dtype=dtype, endpoint=True)
    elif np.dtype(dtype).kind == "b":
        array = rng.integers(0, 2, shape)
    else:
        array = np.full(shape, "abc")
    if values == "constant":
        array = np.zeros(shape)
    return np.asarray(array).astype(dtype)


SHAPES = [(70, 90), (90, 70), (1, 1), (3, 5), (70, 90, 3), (70, 90, 4), (70, 90, 2), (64, 64), (24, 40), (154, 224)]


def corrupt_image(path: Path, draw) -> str:
    """A PNG or TIFF replaced by another: another shape, channels, type or values."""
    import cv2

    shape = draw(st.sampled_from(SHAPES))
    kinds = ["u1", "u2"] + (["f4"] if path.suffix.lower() in (".tif", ".tiff") else [])
    array = _random_array(draw, shape, kinds)
    ext = path.suffix if path.suffix.lower() in (".png", ".tif", ".tiff") else ".png"
    try:
        ok, encoded = cv2.imencode(ext, array)
    except cv2.error:
        ok = False
    if not ok:
        return corrupt_bytes(path, draw)
    path.write_bytes(encoded.tobytes())
    return f"image replaced: {array.dtype} {array.shape}"


def corrupt_npy(path: Path, draw) -> str:
    shape = draw(st.sampled_from([(70, 90), (0, 90), (70, 0), (70,), (2, 70, 90), (70, 90, 1), (1, 70, 90), ()]))
    kind = draw(st.sampled_from(["f4", "f8", "f2", "i8", "u8", "?", "c8", "U3", "O", "M8[s]", "V"]))
    if kind == "O":
        array = np.empty(shape, object)
    elif kind == "M8[s]":
        array = np.zeros(shape, "M8[s]")
    elif kind == "V":
        array = np.zeros(shape, [("a", "<f4")])
    else:
        array = _random_array(draw, shape, [kind])
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=True)
    return f"NPY replaced: {array.dtype} {array.shape}"


def odd_lines(draw, keys, values=ODD_TEXT) -> str:
    lines = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(keys), st.sampled_from([": ", ":", " = ", ""]), st.sampled_from(values)).map(
                    "".join
                ),
                st.text(max_size=20),
            ),
            max_size=8,
        )
    )
    return "\n".join(lines)


def corrupt_info_cfg(path: Path, draw) -> str:
    text = path.read_text(errors="replace")
    if draw(st.booleans()):
        key = draw(st.sampled_from(["ED", "ES", "Group", "NbFrame"]))
        value = draw(st.sampled_from(ODD_TEXT))
        text = re.sub(rf"(?m)^{key}:.*$", f"{key}: {value}", text)
        what = f"Info.cfg {key}: {value!r}"
    else:
        text = odd_lines(draw, ["ED", "ES", "Group", "NbFrame", "ed"])
        what = f"Info.cfg {text!r}"
    path.write_text(text, errors="surrogateescape")
    return what


def corrupt_csv(path: Path, draw, columns: list[str], rows: list[list[str]]) -> str:
    """A table: some of its columns (and a stranger), rows with odd values or quoting."""
    kind = draw(st.sampled_from(["cells", "columns", "text", "empty", "header only"]))
    if kind == "empty":
        path.write_bytes(b"")
        return "CSV empty"
    if kind == "text":
        text = draw(st.text(max_size=80))
        path.write_text(text, errors="surrogateescape")
        return f"CSV {text!r}"
    header = list(columns)
    if kind == "columns":
        header = draw(st.lists(st.sampled_from([*columns, "other", " " + columns[0], ""]), max_size=len(columns) + 1))
    cells = [
        [draw(st.sampled_from([c, *ODD_TEXT, '"', "a,b", "../x", "/"])) if draw(st.booleans()) else c for c in r]
        for r in rows
    ]
    if kind == "header only":
        cells = []
    text = "\n".join(",".join(r) for r in [header, *cells]) + "\n"
    path.write_text(text, errors="surrogateescape")
    return f"CSV {text!r}"


def corrupt_contour(path: Path, draw) -> str:
    kind = draw(st.sampled_from(["points", "points", "text"]))
    if kind == "text":
        text = draw(st.text(max_size=60))
    else:
        lines = path.read_text(errors="replace").splitlines()
        keep = draw(st.integers(0, len(lines)))
        odd = st.sampled_from(["nan", "inf", "-inf", "1e400", "-5", "100", "abc", "", "1,2", "30.5", "32"])
        extra = draw(st.lists(st.lists(odd, min_size=0, max_size=3).map(" ".join), max_size=4))
        at = draw(st.integers(0, keep))
        text = "\n".join(lines[:at] + extra + lines[at:keep])
    path.write_text(text, errors="surrogateescape")
    return f"contour file {text[:80]!r}"


NUMBERS = ["0", "1", "2", "3", "01", "\u0663", "\u00b2", "99999999999999999999", ""]


def new_name(fmt: str, path: Path, draw) -> str:
    """Another file name of the kind the format's readers match."""
    n1, n2 = draw(st.sampled_from(NUMBERS)), draw(st.sampled_from(NUMBERS))
    odd = draw(st.sampled_from(["", "", "x", "é", "_"]))
    if fmt == "lvsc":
        ext = draw(st.sampled_from([".dcm", ".DCM", ".png", ".PNG", ".dcm.png", ""]))
        prefix = path.parent.name if draw(st.booleans()) else draw(st.sampled_from(["", "X", "DET0000101"]))
        return f"{prefix}{odd}_SA{n1}_ph{n2}{ext}"
    if fmt == "acdc":
        pid = path.parent.name
        return f"{pid}{odd}_frame{n1}{draw(st.sampled_from(['', '_gt']))}{draw(st.sampled_from(['.nii.gz', '.nii']))}"
    if fmt == "mnms":
        code = path.parent.name
        part = draw(st.sampled_from(["_sa", "_sa_gt", "_SA_ED", "_SA_ES", "_SA_ED_gt", "_SA_ES_gt", "_SA_XX"]))
        return f"{code}{odd}{part}{draw(st.sampled_from(['.nii.gz', '.nii', '.nii.GZ']))}"
    if fmt == "sunnybrook":
        if path.suffix == ".txt":
            return f"IM-0001-{n1}{odd}-{draw(st.sampled_from(['i', 'o', 'x']))}contour-manual.txt"
        return f"IM-0001-{n1}{odd}.dcm"
    ext = draw(st.sampled_from([".png", ".tif", ".npy", ".nii.gz", ".nii", ".txt", ".PNG"]))
    return f"s{n1}{odd}_p{n2}{ext}"


def rename(fmt: str, path: Path, tree: Path, draw) -> str:
    name = new_name(fmt, path, draw)
    folder = path.parent
    if fmt == "folders" and draw(st.booleans()):  # another patient, one level up or one deeper
        top = next(p for p in path.parents if p.name in ("images", "masks"))
        folder = draw(st.sampled_from([top, top / "p1", top / "p4", folder / "deeper"]))
        folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not name or target.exists():
        return corrupt_bytes(path, draw)
    latin1 = os.fsencode(folder) + b"/" + name.encode().replace("é".encode(), b"\xe9")  # é: in Latin-1, not UTF-8
    os.rename(path, latin1)
    return f"renamed {path.name} -> {os.fsdecode(latin1)}"


def structure(fmt: str, tree: Path, draw) -> str:
    """A patient folder removed or renamed (Latin-1 among the names), or an empty or stray
    one added."""
    cohort = tree / "cohort"
    folders = sorted(p for p in cohort.rglob("*") if p.is_dir())
    kind = draw(st.sampled_from(["remove folder", "rename folder", "empty folder", "stray file"]))
    if kind == "remove folder" and folders:
        folder = draw(st.sampled_from(folders))
        shutil.rmtree(folder)
        return f"removed {folder.relative_to(tree)}"
    if kind == "rename folder" and folders:
        folder = draw(st.sampled_from(folders))
        name = os.fsencode(folder.name) + draw(st.sampled_from([b"\xe9", b"\xc3\xa9", b"_x", b" 2"]))
        moved = [folder]
        if fmt == "folders" and folder.parent.name in ("images", "masks"):  # the patient's images and masks
            moved = [cohort / "images" / folder.name, cohort / "masks" / folder.name]
        for path in moved:
            if path.exists():
                os.rename(path, os.fsencode(path.parent) + b"/" + name)
        return f"renamed folder {folder.relative_to(tree)} -> {name!r}"
    where = draw(st.sampled_from([cohort, *folders]))
    if kind == "empty folder":
        (where / "NEW0000001").mkdir(exist_ok=True)
        return f"empty folder in {where.relative_to(tree)}"
    (where / "notes.txt").write_text("stray")
    return f"stray file in {where.relative_to(tree)}"


PAIR_SHAPES = [(1, 1), (1, 40), (40, 1), (2, 300), (3, 5), (0, 40), (40, 0)]


def partner(fmt: str, path: Path, tree: Path) -> Path | None:
    """The label file of image file `path` (None when it is not an image with one)."""
    from unetcap.cohort.folders import stem

    name = path.name
    if fmt == "lvsc" and name.lower().endswith(".dcm"):
        return next((p for p in path.parent.iterdir() if p.name.lower() == path.stem.lower() + ".png"), None)
    if fmt in ("acdc", "mnms") and _is_nifti(path) and not re.search(r"_gt\.|_4d\.", name):
        gt = path.with_name(re.sub(r"(\.nii(\.gz)?)$", r"_gt\1", name))
        return gt if gt.exists() else None
    if fmt == "folders" and path.parent.parent.name == "images":
        masks = path.parent.parent.parent / "masks" / path.parent.name
        key = stem(name)
        return next((p for p in sorted(masks.glob("*")) if stem(p.name) == key), None) if masks.is_dir() else None
    return None


def _rewrite(path: Path, shape: tuple[int, int], labels: bool, rng) -> None:
    """`path` rewritten, in its own format, as an image (or label image) of `shape`."""
    import cv2

    rows, cols = shape
    values = rng.integers(0, 4, shape) if labels else rng.integers(0, 4000, shape)
    name = path.name.lower()
    if name.endswith(".npy"):
        np.save(path, values.astype(np.uint8 if labels else np.float32))
    elif _is_nifti(path):
        import nibabel as nib

        image = nib.load(str(path))
        voxels = values.reshape(rows, cols, *([1] * (len(image.shape) - 2)))
        voxels = np.broadcast_to(voxels, (rows, cols, *image.shape[2:]))
        data = np.ascontiguousarray(voxels, np.uint8 if labels else np.int16)
        nib.save(nib.Nifti1Image(data, image.affine), str(path))
    elif name.endswith(".dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = values.astype("<u2").tobytes()
        ds.save_as(path)
    else:
        path.write_bytes(
            cv2.imencode(path.suffix, (values > 1).astype(np.uint8) * 255 if labels else values.astype(np.uint16))[
                1
            ].tobytes()
        )


def corrupt_pair(fmt: str, tree: Path, draw) -> str | None:
    """An image and its labels rewritten with the same odd shape (None when the cohort has
    no such pair left)."""
    pairs = [(p, m) for p in sorted(tree.rglob("*")) if p.is_file() and (m := partner(fmt, p, tree)) is not None]
    if fmt == "lvsc":  # the compressed transfer syntaxes would need re-encoding
        pairs = [(p, m) for p, m in pairs if not p.parent.name.endswith("301")]
    if not pairs:
        return None
    image, labels = draw(st.sampled_from(pairs))
    shape = draw(st.sampled_from(PAIR_SHAPES))
    if 0 in shape and not image.name.endswith(".npy"):
        shape = (1, 40)  # PNG and DICOM cannot hold an empty image
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    try:
        _rewrite(image, shape, False, rng)
        _rewrite(labels, shape, True, rng)
    except Exception:  # a file corrupted already
        return None
    return f"{image.relative_to(tree)} and {labels.name}: both {shape[0]}x{shape[1]}"


def corrupt_one(fmt: str, tree: Path, draw) -> str:
    """One random corruption of the copied cohort at `tree`; what it did."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    pick = draw(st.integers(0, 19))
    if not files or pick == 0:
        return structure(fmt, tree, draw)
    if pick == 1 and fmt != "sunnybrook":
        what = corrupt_pair(fmt, tree, draw)
        if what:
            return what
    path = draw(st.sampled_from(files))
    name = path.name.lower()
    kinds = ["bytes"]
    if name.endswith(".dcm"):
        kinds += ["dicom"] * 3
    elif _is_nifti(path):
        kinds += ["nifti"] * 3
    elif name.endswith((".png", ".tif", ".tiff")):
        kinds += ["image"] * 2
    elif name.endswith(".npy"):
        kinds += ["npy"] * 2
    elif name == "info.cfg":
        kinds += ["info"] * 2
    elif name.endswith(".csv"):
        kinds += ["csv"] * 3
    elif name.endswith(".txt"):
        kinds += ["contour"] * 2
    if path.parent != tree:
        kinds.append("rename")
    kind = draw(st.sampled_from(kinds))
    where = str(path.relative_to(tree))
    if kind == "dicom":
        return f"{where}: {corrupt_dicom(path, draw)}"
    if kind == "nifti":
        return f"{where}: {corrupt_nifti(path, draw)}"
    if kind == "image":
        return f"{where}: {corrupt_image(path, draw)}"
    if kind == "npy":
        return f"{where}: {corrupt_npy(path, draw)}"
    if kind == "info":
        return f"{where}: {corrupt_info_cfg(path, draw)}"
    if kind == "csv":
        if fmt == "mnms":
            columns = ["External code", "VendorName", "Vendor", "Centre", "ED", "ES"]
            rows = [["A0S9V9", "Siemens", "A", "1", "0", "3"], ["B1K2L3", "Philips", "B", "2", "0", "3"]]
        else:
            columns = ["patient", "contours", "series"]
            rows = [["SC-HF-I-01", "contours/SC-HF-I-01/contours-manual/IRCCI-expert", "images/SCD0000101/CINESAX_300"]]
            rows.append([draw(st.sampled_from(["SC-HF-I-01", "X"])), "contours/" + "a" * 300, "images"])
            if draw(st.booleans()):
                rows.pop()
        return f"{where}: {corrupt_csv(path, draw, columns, rows)}"
    if kind == "contour":
        return f"{where}: {corrupt_contour(path, draw)}"
    if kind == "rename":
        return rename(fmt, path, tree, draw)
    return f"{where}: {corrupt_bytes(path, draw)}"


# --------------------------------------------------------------------------- the contract
def _named(line: str) -> bool:
    """Whether a problem line names a file or folder that exists, or a config key."""
    if re.search(r"\bcohort\.\w", line):
        return True
    for match in re.finditer(r"/[^:'\"(),;]+", line):  # a path runs to one of these, or to a space
        words = match[0].split(" ")
        if any(os.path.exists(" ".join(words[:k]).rstrip(".")) for k in range(len(words), 0, -1)):
            return True
    return False


def check_error(message: str) -> None:
    lines = message.splitlines()
    problems = lines[1:] if len(lines) > 1 else lines
    unnamed = [line for line in problems if not _named(line)]
    assert not unnamed, f"problems that name no existing file nor config key: {unnamed}\n{message}"


def check_store(out: Path, n: int, size: int) -> None:
    from unetcap.common import read_table
    from unetcap.prepare import load_store
    from unetcap.provenance import sha256_json

    images, masks, meta = load_store(out)
    assert images.dtype == np.float32 and images.shape == (n, size, size)
    assert np.isfinite(images).all() and images.min(initial=0) >= 0 and images.max(initial=0) <= 1
    assert masks.dtype == np.uint8 and masks.shape == (n, size, size) and set(np.unique(masks)) <= {0, 1}
    for name in ("images.npy", "masks.npy", "index.csv"):
        assert meta["sha256"][name] == hashlib.sha256((out / name).read_bytes()).hexdigest(), name
    assert meta["data_sha256"] == sha256_json(meta["sha256"])
    assert len(read_table(out / "index.csv")) == n == meta["n_images"]


def run_case(fmt: str, tree: Path, draw) -> str:
    """Corrupt the cohort copied to `tree`, run the cohort and prepare stages; the outcome
    ("error in cohort", "error in prepare" or "store"), or an AssertionError / any other
    exception when the contract is broken."""
    from unetcap.cohort import write_sample
    from unetcap.cohort.nifti import read_volume
    from unetcap.prepare import prepare_store, store_paths
    from unetcap.schema import allowed

    read_volume.cache_clear()  # cached by path: a fresh copy must be read again
    for _ in range(draw(st.integers(1, 3))):
        note(corrupt_one(fmt, tree, draw))
    options = {**options_of(fmt, tree), "few_images": draw(st.sampled_from(allowed("cohort", "few_images")))}
    if fmt == "sunnybrook" and draw(st.booleans()):
        options["labels"] = [1]
    m, size = draw(st.sampled_from([2, 4, 100])), draw(st.sampled_from(SIZE_CHOICES))
    roi = draw(st.sampled_from([None, {"method": "centre", "fraction": 0.6}, {"method": "heart", "fraction": 0.7}]))
    note(f"options {options}, images_per_patient {m}, image_size {size}, roi {roi}")
    stage = "cohort"
    out = tree / "store"
    try:
        sample = write_sample(tree / "cohort", tree / "sample.csv", m, source=fmt, options=options)
        stage = "prepare"
        prepare_store(tree / "sample.csv", *store_paths(out), size, roi=roi, source=fmt, options=options)
    except UnetcapError as err:
        note(str(err))
        check_error(str(err))
        if stage == "prepare":
            left = [n for n in ("images.npy", "masks.npy", "index.csv", "store.json") if (out / n).exists()]
            assert not left, f"the prepare stage failed but left {left}"
        return f"error in {stage}"
    check_store(out, len(sample), size)
    return "store"


@pytest.mark.filterwarnings("ignore")  # pydicom, nibabel and numpy warn about the corrupt files, as they should
@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_corrupted_cohorts_give_a_named_error_or_a_good_store(clean, scratch, fmt, data):
    start = time.perf_counter()
    tree = Path(tempfile.mkdtemp(dir=scratch))  # each example its own copy: nothing shared between them
    try:
        shutil.copytree(clean / fmt, tree, dirs_exist_ok=True)
        outcome = run_case(fmt, tree, data.draw)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        SECONDS["cases"] += time.perf_counter() - start
    event(outcome)
    RAN[fmt, outcome] += 1


def test_fuzz_report():
    """How many cases the fuzzer ran, and their outcomes (pytest -s shows it)."""
    by_format = {fmt: {o: n for (f, o), n in sorted(RAN.items()) if f == fmt} for fmt in FORMATS}
    print(
        f"\nfuzz: {sum(RAN.values())} cases in {SECONDS['cases']:.1f} s (the clean cohorts written in "
        f"{SECONDS['clean']:.1f} s): {json.dumps(by_format)}"
    )


# --------------------------------------------------------------------------- the crashes it found
def _copy(clean, fmt: str, tmp_path) -> Path:
    tree = tmp_path / fmt
    shutil.copytree(clean / fmt, tree)
    return tree


def _error(fmt: str, tree: Path, images_per_patient: int = 4, **options) -> str:
    """The UnetcapError of the cohort and prepare stages on the cohort at `tree` (checked:
    every problem names an existing file or a config key)."""
    from unetcap.cohort import write_sample
    from unetcap.prepare import prepare_store, store_paths

    options = {**options_of(fmt, tree), **options}
    with pytest.raises(UnetcapError) as err:
        write_sample(tree / "cohort", tree / "sample.csv", images_per_patient, source=fmt, options=options)
        prepare_store(tree / "sample.csv", *store_paths(tree / "store"), 16, source=fmt, options=options)
    check_error(str(err.value))
    return str(err.value)


def _first_image(tree: Path, patient: str = "DET0000101") -> Path:
    """The first phase of the first slice of an LVSC patient: read at the cohort stage."""
    return next(p for p in sorted((tree / "cohort" / patient).iterdir()) if p.name.upper().endswith("_SA1_PH0.DCM"))


@pytest.mark.parametrize(
    "field, raw, expected",
    [
        ("SamplesPerPixel", b"", ""),  # TypeError: int * None; now the default, and pydicom cannot decode it
        ("BitsAllocated", b"", ""),  # TypeError: int * None; now the default, and pydicom cannot decode it
        ("ImagePositionPatient", b"", "DICOM ImagePositionPatient is empty"),  # TypeError: zip(None)
        ("ImageOrientationPatient", b"", "DICOM ImageOrientationPatient is empty"),  # TypeError: len(None)
        ("MagneticFieldStrength", b"1.5\\3", "DICOM MagneticFieldStrength ['1.5', '3']: expected 1"),  # float(list)
        ("PixelSpacing", b"2", "DICOM PixelSpacing ['2']: expected 2 finite number(s)"),  # DSfloat[1]
        ("ImagePositionPatient", b"nan\\0\\0", "DICOM ImagePositionPatient ['nan', '0', '0']"),  # KeyError: nan
        ("Rows", b"", "DICOM Rows is empty"),  # TypeError: int(None)
    ],
)
def test_a_dicom_header_field_empty_or_not_numbers_is_an_error_naming_the_file(clean, tmp_path, field, raw, expected):
    import pydicom

    tree = _copy(clean, "lvsc", tmp_path)
    path = _first_image(tree)
    ds = pydicom.dcmread(path)
    _dicom_raw(ds, field, raw)
    ds.save_as(path)
    assert f"{path}: {expected}" in _error("lvsc", tree)


def test_a_nan_position_in_a_dicom_series_is_an_error_not_a_key_error(clean, tmp_path):
    import pydicom

    tree = _copy(clean, "sunnybrook", tmp_path)
    path = next((tree / "cohort/images").rglob("IM-0001-0001.dcm"))
    ds = pydicom.dcmread(path)
    _dicom_raw(ds, "ImagePositionPatient", b"nan\\nan\\nan")
    ds.save_as(path)
    assert f"{path}: DICOM ImagePositionPatient ['nan', 'nan', 'nan']: expected 3 finite" in _error("sunnybrook", tree)


def test_a_nan_in_the_nifti_affine_is_an_error_not_a_key_error(clean, tmp_path):
    tree = _copy(clean, "mnms", tmp_path)
    path = tree / "cohort/A0S9V9/A0S9V9_sa.nii.gz"
    data = bytearray(_nifti_bytes(path))
    struct.pack_into("<f", data, NIFTI_FIELDS["srow2"][0], float("nan"))  # the sform: x of the third axis
    _write_nifti_bytes(path, bytes(data))
    assert f"{path}: slice positions that are not finite numbers" in _error("mnms", tree)


@pytest.mark.parametrize("fmt, key", [("acdc", "ED"), ("acdc", "ES"), ("mnms", "ES")])
def test_a_superscript_digit_is_not_a_frame_number(clean, tmp_path, fmt, key):
    """'²'.isdigit() is True but int('²') raises ValueError: a traceback, before."""
    tree = _copy(clean, fmt, tmp_path)
    if fmt == "acdc":
        cfg = tree / "cohort/patient002/Info.cfg"
        cfg.write_text(re.sub(rf"(?m)^{key}:.*$", f"{key}: \u00b2", cfg.read_text()))
        assert f"{cfg}: key {key} is '\u00b2', not a frame number" in _error(fmt, tree)
    else:
        info = tree / "mnms_info.csv"
        info.write_text(info.read_text().replace("B1K2L3,Philips,B,2,0,3", "B1K2L3,Philips,B,2,0,\u00b2"))
        assert f"{info}: ED and ES must both be frame numbers" in _error(fmt, tree)


@pytest.mark.parametrize(
    "fmt, table, expected",
    [("mnms", "mnms_info.csv", "information CSV"), ("sunnybrook", "cohort/series_map.csv", "series map")],
)
def test_an_empty_table_is_an_error_naming_it(clean, tmp_path, fmt, table, expected):
    """pandas' EmptyDataError, before."""
    tree = _copy(clean, fmt, tmp_path)
    (tree / table).write_bytes(b"")
    assert f"{tree / table}: cannot read the {expected}" in _error(fmt, tree)


def test_a_series_map_path_too_long_for_the_system_is_a_missing_folder(clean, tmp_path):
    """OSError (File name too long) from Path.is_dir, before."""
    tree = _copy(clean, "sunnybrook", tmp_path)
    table = tree / "cohort/series_map.csv"
    table.write_text(f"patient,contours,series\nX,contours/{'a' * 300},images/SCD0000101/CINESAX_300\n")
    assert "contour folder does not exist (cohort.series_map)" in _error("sunnybrook", tree)


def test_nan_in_a_contour_file_is_an_error_not_a_garbled_mask(clean, tmp_path):
    """A 'nan nan' point was filled as a point at -2^31 (a silently wrong mask), before."""
    tree = _copy(clean, "sunnybrook", tmp_path)
    path = next((tree / "cohort/contours").rglob("IM-0001-0001-ocontour-manual.txt"))
    path.write_text("nan nan\n" + path.read_text())
    assert f"{path}: contour file {path.name}: points that are not finite numbers" in _error("sunnybrook", tree)


@pytest.mark.parametrize(
    "image, mask, expected",
    [
        (None, b"", "{mask}: cannot read s1_p0.npy as NPY (EOFError"),  # EOFError from np.load
        (b"header", None, "{image}: cannot read s1_p0.npy as NPY (ValueError: Header info length (20000) is large"),
        (None, np.zeros((70, 90), "M8[s]"), "{mask}: s1_p0.npy: values of type datetime64[s], not real numbers"),
        (np.zeros((70, 90), [("a", "<f4")]), None, "{image}: s1_p0.npy: values of type [('a', '<f4')], not real"),
        (np.zeros((0, 90), "f4"), np.zeros((0, 90), "u1"), "{image}: an empty image (0x90)"),  # SIGFPE in OpenCV
        (
            None,
            np.pad(np.full((70, 89), 2**32 + 1), ((0, 0), (1, 0))),  # wrapped onto 1 by the int32 cast
            "{mask}: label values from 0 to 4.29497e+09, beyond any label",
        ),
    ],
)
def test_an_npy_that_is_empty_or_not_numbers_is_an_error_naming_the_file(clean, tmp_path, image, mask, expected):
    tree = _copy(clean, "folders", tmp_path)
    paths = {"image": tree / "cohort/images/p3/s1_p0.npy", "mask": tree / "cohort/masks/p3/s1_p0.npy"}
    for path, array in zip(paths.values(), (image, mask)):
        if isinstance(array, bytes) and array == b"header":  # a header of 20000 bytes: numpy says no, on 3 lines
            data = bytearray(path.read_bytes())
            data[8:10] = (20000).to_bytes(2, "little")
            path.write_bytes(bytes(data))
        elif isinstance(array, bytes):
            path.write_bytes(array)
        elif array is not None:
            np.save(path, array)
    assert expected.format(**paths) in _error("folders", tree, images_per_patient=100)


def test_nifti_labels_beyond_int16_are_an_error_not_wrapped_onto_a_label(clean, tmp_path):
    """65538 was cast to int16 as 2, the myocardium, before."""
    import nibabel as nib

    tree = _copy(clean, "acdc", tmp_path)
    gt = tree / "cohort/patient001/patient001_frame01_gt.nii.gz"
    image = nib.load(str(gt))
    labels = np.asarray(image.dataobj).astype(np.int32)
    labels[0, 0, :] = 65538
    nib.save(nib.Nifti1Image(labels, image.affine), str(gt))
    assert f"{gt}: label values from 0 to 65538, beyond any label in slice" in _error(
        "acdc", tree, images_per_patient=100
    )


def test_an_rgb_nifti_is_an_error_naming_the_file(clean, tmp_path):
    """Structured (RGB) voxels: TypeError from np.isfinite, before."""
    import nibabel as nib

    tree = _copy(clean, "acdc", tmp_path)
    gt = tree / "cohort/patient003/patient003_frame07_gt.nii.gz"
    image = nib.load(str(gt))
    rgb = np.zeros(image.shape, [("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, image.affine), str(gt))
    assert f"{gt}: NIfTI of data type" in _error("acdc", tree)


@pytest.mark.parametrize("fmt, folders", [("lvsc", ["DET0000101"]), ("folders", ["images/p3", "masks/p3"])])
def test_a_file_name_not_in_utf8_is_an_error_not_a_unicode_error(clean, tmp_path, fmt, folders):
    """A Latin-1 folder name: UnicodeEncodeError writing the sample table, before."""
    tree = _copy(clean, fmt, tmp_path)
    for folder in folders:
        path = tree / "cohort" / folder
        os.rename(path, os.fsencode(path) + b"\xe9")
    message = _error(fmt, tree)
    assert f"{tree / 'cohort'}: " in message and "file name(s) not in UTF-8" in message and "\\xe9" in message


def test_a_contour_file_numbered_without_padding_is_named_as_it_is(clean, tmp_path):
    """IM-0001-3-icontour-manual.txt was taken for image IM-0001-0003: its problems named
    IM-0001-0003-icontour-manual.txt, which does not exist, and its image was prepared
    without its contour (empty labels), before."""
    tree = _copy(clean, "sunnybrook", tmp_path)
    folder = next((tree / "cohort/contours").rglob("IM-0001-0003-icontour-manual.txt")).parent
    renamed = folder / "IM-0001-3-icontour-manual.txt"
    os.rename(folder / "IM-0001-0003-icontour-manual.txt", renamed)
    message = _error("sunnybrook", tree, labels=[1])
    assert f"{renamed}: contours without their image (expected " in message and "IM-0001-3.dcm)" in message
