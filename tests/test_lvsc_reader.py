"""The LVSC reader and the sample it scans: the design's sampling formula, the index of
sampled images per patient, on real DICOM files (pydicom's bundled MR_small in several
transfer syntaxes) laid out as an LVSC cohort, and every kind of bad input. The other
formats' readers: tests/test_format_readers.py."""

import shutil

import numpy as np
import pydicom
import pytest
from lvsc_fixture import SYNTAXES, write_cohort, write_patient
from pydicom.data import get_testdata_file

from unetcap import UnetcapError
from unetcap.cohort import sample_indices, scan_cohort
from unetcap.cohort.lvsc import read_dicom, read_mask

M = 6  # images per patient in these tests (each patient has 3 x 4 = 12)


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path / "lvsc")


def test_sample_indices_follow_the_design_formula():
    assert sample_indices(12, 6) == [0, 2, 4, 6, 8, 10]
    assert sample_indices(144, 100)[:5] == [0, 1, 2, 4, 5]
    picks = sample_indices(840, 100)
    assert len(picks) == 100 and picks == sorted(set(picks)) and picks[-1] == 831
    assert sample_indices(100, 100) == list(range(100))
    with pytest.raises(ValueError):
        sample_indices(99, 100)


def test_index_lists_sampled_images_per_patient_in_study_order(cohort):
    index = scan_cohort(cohort, M)
    assert list(index.patient.unique()) == ["DET0000101", "DET0000201", "DET0000301"]
    assert (index.groupby("patient").size() == M).all()
    for _, rows in index.groupby("patient"):
        # slice-major, phase-minor, slices by geometry: positions never decrease
        assert np.all(np.diff(rows.position.to_numpy()) >= 0)
        assert list(rows.slice) == [0, 0, 1, 1, 2, 2]
        assert list(rows.phase) == [0, 2, 0, 2, 0, 2]
    assert not index.source.str.contains("_LA").any()


def test_slice_order_comes_from_geometry_not_file_names(cohort):
    index = scan_cohort(cohort, M)
    reversed_patient = index[index.patient == "DET0000101"]
    # labels run 3, 2, 1 along the normal: the reader must follow the positions
    assert list(reversed_patient.slice_label) == [3, 3, 2, 2, 1, 1]
    normal = index[index.patient == "DET0000301"]
    assert list(normal.slice_label) == [1, 1, 2, 2, 3, 3]


def test_upper_case_extensions_and_three_channel_masks(cohort):
    index = scan_cohort(cohort, M)
    upper = index[index.patient == "DET0000201"]
    assert upper.source.str.endswith(".DCM").all() and upper["mask"].str.endswith(".PNG").all()
    mask = read_mask(upper["mask"].iloc[0])
    assert mask.dtype == bool and mask.ndim == 2 and 0 < mask.sum() < mask.size


@pytest.mark.parametrize("name", SYNTAXES)
def test_every_transfer_syntax_decodes_to_the_same_pixels(name):
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    header, pixels = read_dicom(get_testdata_file(name))
    assert pixels.dtype == reference.dtype and pixels.shape == (64, 64)
    np.testing.assert_array_equal(pixels, reference)
    assert (header["rows"], header["cols"]) == (64, 64)
    assert header["spacing_row"] > 0 and header["spacing_col"] > 0 and isinstance(header["vendor"], str)


def test_fast_native_decoding_equals_pydicom(tmp_path):
    """Unsigned 12-in-16-bit images (what scanners write) take the fast path: same pixels."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).tobytes()
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    _, pixels = read_dicom(tmp_path / "a.dcm")
    np.testing.assert_array_equal(pixels, pydicom.dcmread(tmp_path / "a.dcm").pixel_array)


def _problems(root, m=M, **options):
    with pytest.raises(UnetcapError) as err:
        scan_cohort(root, m, options=options)
    return str(err.value)


def test_every_bad_file_is_reported_together(tmp_path):
    root = write_cohort(tmp_path / "lvsc")
    p1, p2, p3 = (root / f"DET0000{i}01" for i in (1, 2, 3))
    # truncated DICOM (pydicom's own), corrupt bytes, no pixel data, missing mask, wrong mask size
    truncated = p3 / "DET0000301_SA1_ph0.dcm"  # first phase of its slice: read for the geometry
    shutil.copy(get_testdata_file("MR_truncated.dcm"), truncated)
    corrupt = p3 / "DET0000301_SA1_ph1.dcm"
    corrupt.write_bytes(b"\x00garbage" * 40)
    no_pixels = p1 / "DET0000101_SA1_ph0.dcm"
    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels)
    (p1 / "DET0000101_SA2_ph1.png").unlink()
    import cv2

    cv2.imwrite(str(p2 / "DET0000201_SA1_ph3.PNG"), np.zeros((32, 48), np.uint8))
    message = _problems(root)
    assert "5 problem(s)" in message
    assert f"{truncated}: truncated" in message
    assert f"{corrupt}: " in message and "DICOM" in message
    assert f"{no_pixels}: DICOM without pixel data" in message
    assert "DET0000101_SA2_ph1.dcm: image without a mask" in message
    assert "DET0000201_SA1_ph3.PNG: mask is 32x48 but its image DET0000201_SA1_ph3.DCM is 64x64" in message


def test_patient_with_too_few_images_by_policy(tmp_path, caplog):
    root = tmp_path / "lvsc"
    write_patient(root, "DET0000101", 3, 4)
    write_patient(root, "DET0000201", 1, 4)
    message = _problems(root, few_images="error")
    assert "DET0000201: patient with too few readable labelled images: 4 images, need at least 6" in message
    assert "DET0000101" not in message
    with caplog.at_level("INFO"):
        kept = scan_cohort(root, M)  # default: use all of them
    assert kept.groupby("patient").size().to_dict() == {"DET0000101": M, "DET0000201": 4}
    assert (
        "1 patient(s) with fewer than 6 images (images_per_patient) kept all of their images: DET0000201" in caplog.text
    )
    left = scan_cohort(root, M, options={"few_images": "leave_out"})
    assert left.patient.unique().tolist() == ["DET0000101"]
    assert "fewer" in _problems(root, m=13, few_images="leave_out")  # every patient left out


def test_empty_cohort_and_empty_patient_folder(tmp_path):
    root = tmp_path / "lvsc"
    root.mkdir()
    assert "holds no patient folders" in _problems(root)
    (root / "DET0000101").mkdir()
    assert "DET0000101: no short-axis images" in _problems(root)
    assert "does not exist" in _problems(tmp_path / "missing")


def test_two_workers_give_the_same_index(cohort):
    assert scan_cohort(cohort, M, workers=2).equals(scan_cohort(cohort, M, workers=1))
