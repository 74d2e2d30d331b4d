"""The phantom cohort: LVSC layout, real DICOM headers, consistent geometry, plausible
anatomy and motion, the reader's edge cases, determinism and atomic writing."""

import re
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from helpers import digests

from unetcap import UnetcapError, phantom
from unetcap.phantom import edge_cases, write_cohort

SEED = 5
SMALL = dict(slices=(4, 6), phases=(6, 8), matrix=(64, 96))
NAME = re.compile(
    r"^(?P<pid>DET\d{7})_(?P<view>SA|LA)(?P<label>\d+)_ph(?P<phase>\d+)\.(?P<ext>dcm|png)$", re.IGNORECASE
)
VENDORS = {"GE MEDICAL SYSTEMS", "Philips Medical Systems", "SIEMENS"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "cohort"
    ids = write_cohort(root, 6, SEED, **SMALL)
    return root, ids


def normal_of(ds):
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])


def short_axis(folder: Path):
    """{slice label: {phase: (dcm path, png path)}} of a patient folder."""
    out = {}
    for f in folder.iterdir():
        m = NAME.match(f.name)
        if m and m["view"].upper() == "SA" and m["ext"].lower() == "dcm":
            png = f.with_suffix(".PNG" if f.suffix == ".DCM" else ".png")
            out.setdefault(int(m["label"]), {})[int(m["phase"])] = (f, png)
    return out


def geometric(folder: Path):
    """Slice labels sorted by position along the slice normal, with their positions."""
    sa = short_axis(folder)
    pos = {}
    for label, phases in sa.items():
        ds = pydicom.dcmread(phases[0][0], stop_before_pixels=True)
        pos[label] = float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal_of(ds)))
    labels = sorted(pos, key=pos.get)
    return labels, [pos[k] for k in labels], sa


def read_mask(path):
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return (mask.max(axis=2) if mask.ndim == 3 else mask) > 0


def test_layout_follows_lvsc(cohort):
    root, ids = cohort
    assert ids == [phantom.patient_id(i) for i in range(6)] == sorted(p.name for p in root.iterdir())
    assert ids[:2] == ["DET0000101", "DET0000201"]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    for pid in ids:
        files = list((root / pid).iterdir())
        assert all(NAME.match(f.name) and NAME.match(f.name)["pid"] == pid for f in files), pid
        stems = {}
        for f in files:
            stems.setdefault(f.stem, set()).add(f.suffix.lower())
        assert all(exts == {".dcm", ".png"} for exts in stems.values()), pid
        sa = short_axis(root / pid)
        assert sorted(sa) == list(range(1, len(sa) + 1))  # labels from 1, not padded
        assert SMALL["slices"][0] <= len(sa) <= SMALL["slices"][1]
        n_phases = {len(p) for p in sa.values()}
        assert len(n_phases) == 1 and SMALL["phases"][0] <= n_phases.pop() <= SMALL["phases"][1]
        assert all(sorted(p) == list(range(len(p))) for p in sa.values())  # phases from 0


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    tiny = dict(slices=(2, 3), phases=(3, 4), matrix=(32, 40))
    write_cohort(tmp_path / "a", 5, 11, **tiny)
    write_cohort(tmp_path / "b", 5, 11, **tiny)
    write_cohort(tmp_path / "c", 5, 12, **tiny)
    a, b, c = (digests(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c
    shared = set(a) & set(c)
    assert shared and all(a[k] != c[k] for k in shared if k.lower().endswith(".dcm"))


def test_dicom_headers_are_complete_and_consistent(cohort):
    root, ids = cohort
    orientations, studies = [], set()
    for pid in ids:
        labels, positions, sa = geometric(root / pid)
        headers = [pydicom.dcmread(d, stop_before_pixels=True) for label in labels for d, _ in sa[label].values()]
        first = headers[0]
        assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert first.file_meta.MediaStorageSOPClassUID == pydicom.uid.MRImageStorage
        normal = normal_of(first)
        assert np.isclose(np.linalg.norm(normal), 1, atol=1e-5)
        for ds in headers:
            assert ds.PatientID == pid and ds.Modality == "MR"
            assert ds.SOPClassUID == pydicom.uid.MRImageStorage
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
            assert ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.Manufacturer in VENDORS and float(ds.MagneticFieldStrength) in (1.5, 3.0)
            assert SMALL["matrix"][0] <= ds.Rows <= SMALL["matrix"][1]
            assert SMALL["matrix"][0] <= ds.Columns <= SMALL["matrix"][1]
            for key in (
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "ImageOrientationPatient",
                "PixelSpacing",
                "Rows",
                "Columns",
                "Manufacturer",
                "SliceThickness",
            ):
                assert ds[key].value == first[key].value, (pid, key)
            ipp = np.asarray(ds.ImagePositionPatient, float)
            assert np.isclose(float(ds.SliceLocation), ipp @ normal, atol=1e-3)
            offset = ipp - np.asarray(first.ImagePositionPatient, float)
            assert np.allclose(offset, (offset @ normal) * normal, atol=1e-3)  # along the normal
            assert float(ds.SliceThickness) > 0 and "TriggerTime" in ds and "InstanceNumber" in ds
        assert len({ds.SOPInstanceUID for ds in headers}) == len(headers)
        assert len({int(ds.InstanceNumber) for ds in headers}) == len(headers)
        steps = np.diff(positions)
        assert np.allclose(steps, steps[0], atol=1e-3) and steps[0] > 0
        assert np.isclose(steps[0], float(first.SpacingBetweenSlices), atol=1e-3)
        for label in labels:
            times = [
                float(pydicom.dcmread(d, stop_before_pixels=True).TriggerTime)
                for _, (d, _) in sorted(sa[label].items())
            ]
            assert np.all(np.diff(times) > 0)
        orientations.append(tuple(first.ImageOrientationPatient))
        studies.add(first.StudyInstanceUID)
    assert len(set(orientations)) == len(ids) and len(studies) == len(ids)


def test_lvsc_sized_matrix_spacing_and_vendors(tmp_path):
    write_cohort(tmp_path / "c", 8, 3, slices=(2, 2), phases=(2, 2), matrix=(138, 512))
    vendors, fields = set(), set()
    for folder in (tmp_path / "c").iterdir():
        d = next(p for p in folder.iterdir() if p.suffix.lower() == ".dcm" and "_SA" in p.name)
        ds = pydicom.dcmread(d, stop_before_pixels=True)
        assert 138 <= ds.Rows <= 512 and 138 <= ds.Columns <= 512
        assert all(0.7 <= float(s) <= 2.0 for s in ds.PixelSpacing)
        vendors.add(ds.Manufacturer)
        fields.add(float(ds.MagneticFieldStrength))
    assert len(vendors) > 1 and vendors <= VENDORS and fields <= {1.5, 3.0}


def test_pixels_round_trip(cohort):
    root, ids = cohort
    for pid in ids[:3]:
        sa = short_axis(root / pid)
        d, png = sa[1][0]
        ds = pydicom.dcmread(d)
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns)
        assert np.array_equal(pixels, np.frombuffer(ds.PixelData, "<u2").reshape(pixels.shape))
        assert pixels.max() <= 4095 and pixels.std() > 0
        assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).shape[:2] == pixels.shape


def test_masks_show_a_thickening_ring_that_tapers_to_the_apex(cohort):
    root, ids = cohort
    for pid in ids:
        labels, _, sa = geometric(root / pid)
        raw = cv2.imread(str(sa[labels[0]][0][1]), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}
        area = np.array(
            [[read_mask(sa[label][p][1]).sum() for p in sorted(sa[label])] for label in labels]
        )  # (slices, phases) in geometric order
        mid = len(labels) // 2
        assert area[mid].min() > 0  # the ring is there in every phase
        mask = read_mask(sa[labels[mid]][0][1]).astype(np.uint8)
        filled = mask.copy()
        cv2.floodFill(filled, None, (0, 0), 1)  # the corner is never myocardium
        assert (filled == 0).sum() > 0  # a ring: it encloses a cavity
        peak = int(np.argmax(area[mid]))
        assert area[mid, peak] > 1.1 * area[mid, 0]  # thicker wall in systole than at phase 0
        assert 0 < peak < 0.7 * area.shape[1]
        ends = sorted([area[0, 0], area[-1, 0]])
        assert ends[0] < 0.7 * ends[1]  # the apical end is smaller than the base
        assert area[:, 0].max() > ends[0]


def test_intensity_alone_does_not_segment_the_myocardium(cohort):
    root, ids = cohort
    for pid in ids[:3]:
        labels, _, sa = geometric(root / pid)
        pairs = sa[labels[len(labels) // 2]].values()
        images = np.stack([pydicom.dcmread(d).pixel_array for d, _ in pairs]).astype(float)
        masks = np.stack([read_mask(m) for _, m in pairs])
        edges = np.quantile(images, np.linspace(0, 1, 31))
        best = max(
            2 * (band & masks).sum() / (band.sum() + masks.sum())
            for i, lo in enumerate(edges)
            for hi in edges[i + 1 :]
            for band in [(images >= lo) & (images < hi)]
        )
        assert best < 0.65, pid  # an oracle grey-level band still misses most of the ring


def test_edge_cases(cohort):
    root, ids = cohort
    cases = edge_cases(6, SEED)
    chosen = [pid for pids in cases.values() for pid in pids]
    assert len(chosen) == len(set(chosen)) == 5 and set(chosen) <= set(ids)
    [upper] = cases["upper_case"]
    assert {f.suffix for f in (root / upper).iterdir()} == {".DCM", ".PNG"}
    assert all({f.suffix for f in (root / p).iterdir()} == {".dcm", ".png"} for p in ids if p != upper)
    [rgb] = cases["rgb_mask"]
    for f in (root / rgb).glob("*_SA*_ph0.png"):
        mask = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 3 and mask.shape[2] == 3
        assert mask[..., 0].max() == 0 and mask[..., 2].max() == 0  # only one channel carries it
    assert sum(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)[..., 1].any() for f in (root / rgb).glob("*_SA*_ph0.png")) > 0
    for pid in cases["long_axis"]:
        la = sorted((root / pid).glob(f"{pid}_LA*_ph0.*"))
        assert [f.name for f in la] == [f"{pid}_LA{v}_ph0.{e}" for v in (1, 2) for e in ("dcm", "png")]
        ds, sa = pydicom.dcmread(la[0]), pydicom.dcmread(next((root / pid).glob("*_SA1_ph0.dcm")))
        assert ds.SeriesInstanceUID != sa.SeriesInstanceUID
        assert abs(normal_of(ds) @ normal_of(sa)) < 1e-3  # a long-axis plane
        assert read_mask(la[1]).any()
    assert not [f for p in ids if p not in cases["long_axis"] for f in (root / p).glob("*_LA*")]
    for pid in ids:
        labels, _, _ = geometric(root / pid)
        in_order = labels in (sorted(labels), sorted(labels, reverse=True))
        assert in_order == (pid not in cases["label_order"]), pid
        if pid not in cases["label_order"]:
            assert labels == sorted(labels)


def test_reader_reads_the_phantom(cohort):
    from unetcap.cohort import scan_cohort

    root, ids = cohort
    index = scan_cohort(root, 4)
    assert sorted(index.patient.unique()) == ids
    assert not index.source.str.contains("_LA").any()


def test_replaces_atomically(tmp_path, monkeypatch):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    tiny = dict(slices=(2, 2), phases=(2, 2), matrix=(32, 32))
    original = phantom._write_patient

    def fail_on_second(folder, pt, seed, cases):
        if pt.pid == phantom.patient_id(1):
            raise RuntimeError("killed")
        original(folder, pt, seed, cases)

    monkeypatch.setattr(phantom, "_write_patient", fail_on_second)
    with pytest.raises(RuntimeError):
        write_cohort(out, 3, 1, **tiny)
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]
    assert [p.name for p in out.iterdir()] == ["stale.txt"]
    monkeypatch.undo()
    write_cohort(out, 3, 1, **tiny)
    assert sorted(p.name for p in out.iterdir()) == [phantom.patient_id(i) for i in range(3)]
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]


def test_bad_settings_are_all_reported(tmp_path):
    with pytest.raises(UnetcapError) as err:
        write_cohort(tmp_path / "c", 0, -1, slices=(5, 2), phases="x", matrix=(8, 64))
    message = str(err.value)
    for key in ("cohort.patients", "seed", "slices", "phases", "matrix"):
        assert key in message
    assert not (tmp_path / "c").exists()
