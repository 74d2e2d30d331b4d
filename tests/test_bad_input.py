"""Bad input (issue 24, items 1-4): every corrupt or inconsistent file is an error naming the
file that holds it (the label file where it is the label file), once, all of them in one
pass, and nothing is written; values outside the store's contract never reach it."""

import logging

import nibabel as nib
import numpy as np
import pytest
from cohort_fixtures import copy_patients, write_acdc, write_mnms
from helpers import raised_error

from unetcap.cohort import scan_cohort, write_sample
from unetcap.prepare import prepare_store, store_paths


def _edit_nifti(path, change) -> None:
    """Rewrite a NIfTI volume with `change` applied to a float copy of its voxels."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj).astype(np.float32)
    change(data)
    nib.save(nib.Nifti1Image(data, image.affine), str(path))


@pytest.fixture
def acdc(tmp_path):
    root = tmp_path / "acdc"
    write_acdc(root)
    copy_patients(root, 4)
    return root


def _prepare(root, tmp_path, **options):
    write_sample(root, tmp_path / "sample.csv", 4, source="acdc", options={"few_images": "leave_out", **options})
    return lambda: prepare_store(
        tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 32, source="acdc", options=options
    )


def _nothing_written(tmp_path) -> bool:
    store = tmp_path / "store"
    return not any(store.iterdir()) if store.exists() else True


def test_every_pixel_problem_of_a_cohort_in_one_pass_and_nothing_written(acdc, tmp_path):
    """A NaN voxel, an infinite one, a blank image whose labels are not empty, a label value
    outside the format's and a patient whose structure is empty everywhere: one error, each
    problem once under its own file, with counts; no store."""
    _edit_nifti(acdc / "patient001/patient001_frame01.nii.gz", lambda d: d.__setitem__((5, 6, slice(None)), np.nan))
    _edit_nifti(acdc / "patient001/patient001_frame07.nii.gz", lambda d: d.__setitem__((0, 0, 2), np.inf))
    _edit_nifti(acdc / "patient002/patient002_frame01.nii.gz", lambda d: d.__setitem__(Ellipsis, 0))
    _edit_nifti(acdc / "patient004/patient004_frame01_gt.nii.gz", lambda d: d.__setitem__((0, 0, slice(None)), 7))
    for frame in ("01", "07"):  # patient003: no myocardium (label 2) anywhere
        _edit_nifti(acdc / f"patient003/patient003_frame{frame}_gt.nii.gz", lambda d: d.__setitem__(d == 2, 0))
    message = raised_error(_prepare(acdc, tmp_path))
    lines = message.splitlines()
    assert lines[0].endswith("5 problem(s)"), message
    nan = "patient001_frame01.nii.gz: pixels not finite (NaN or ±inf): 2 pixel(s) in slice 0, frame 1; slice 1, frame 1"
    assert any(line.endswith(f"{nan} (2 sampled images)") for line in lines)
    assert any(
        "patient001_frame07.nii.gz: pixels not finite (NaN or ±inf): 1 pixel(s) in slice 2, frame 7" in line
        for line in lines
    )
    blank = next(line for line in lines if "patient002_frame01.nii.gz:" in line)
    assert "a constant image (every pixel 0) whose labels mark the structure in slice" in blank
    assert blank.endswith("(4 sampled images)")
    assert any("patient004_frame01_gt.nii.gz: label value(s) [7] outside the format's" in line for line in lines)
    assert any("patient patient003: the structure (cohort.labels) is empty in every one" in line for line in lines)
    assert _nothing_written(tmp_path)


def test_a_blank_image_with_empty_labels_is_kept_with_a_warning(acdc, tmp_path, caplog):
    def blank_apex(d):
        d[..., 0] = 0  # the first slice of the ED volume: no heart, no labels

    _edit_nifti(acdc / "patient001/patient001_frame01.nii.gz", blank_apex)
    _edit_nifti(acdc / "patient001/patient001_frame01_gt.nii.gz", blank_apex)
    with caplog.at_level(logging.WARNING, logger="unetcap.prepare"):
        store = _prepare(acdc, tmp_path)()
    assert store["n_images"] == 16
    assert any("patient001_frame01.nii.gz: a constant image with empty labels" in r.message for r in caplog.records)
    images = np.load(tmp_path / "store/images.npy")
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


def test_the_store_writer_refuses_values_outside_its_contract_whatever_the_reader(acdc, tmp_path, monkeypatch):
    """A reader (or a resize) that let a value outside [0, 1] or a NaN through: the writer
    refuses it, names the image and writes nothing."""
    import unetcap.prepare as prepare

    real = prepare.prepare_image

    def overshoot(pixels, size, out=None, box=None):
        image = real(pixels, size, out, box)
        image[0, 0], image[0, 1] = 1.5, np.nan
        return image

    monkeypatch.setattr(prepare, "prepare_image", overshoot)
    message = raised_error(_prepare(acdc, tmp_path))
    assert "6 problem(s)" in message  # one per image volume the sample reads
    assert (
        "patient002_frame01.nii.gz: prepared image outside [0, 1] or not finite: 8 pixel(s) (4 sampled images)"
        in message
    )
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("this is not an Info.cfg\n", ["key ED is missing", "key ES is missing"]),
        ("ED: 1\nES: x7\nGroup: DCM\n", ["key ES is 'x7', not a frame number"]),
        ("ED: 1\nES: 9\nGroup: DCM\n", ["key ES: frame 9 has no image volume (_frame09.nii.gz)"]),
    ],
)
def test_a_malformed_info_cfg_is_an_error_naming_the_file_and_the_key(acdc, text, expected):
    (acdc / "patient002/Info.cfg").write_text(text)
    message = raised_error(lambda: scan_cohort(acdc, 4, source="acdc"))
    assert f"{len(expected)} problem(s)" in message
    for line in expected:
        assert f"patient002/Info.cfg: {line}" in message


def test_a_frame_info_cfg_names_without_its_labels_is_an_error_not_a_dropped_frame(acdc):
    (acdc / "patient001/patient001_frame07_gt.nii.gz").unlink()
    message = raised_error(lambda: scan_cohort(acdc, 4, source="acdc"))
    assert "1 problem(s)" in message
    assert "patient001/Info.cfg: key ES: frame 7 has no labels (patient001_frame07.nii.gz without its _gt)" in message


def test_a_missing_group_is_a_warning_naming_the_patient(acdc, caplog):
    (acdc / "patient003/Info.cfg").write_text("ED: 1\nES: 7\n")
    with caplog.at_level(logging.WARNING, logger="unetcap.cohort.acdc"):
        sample = scan_cohort(acdc, 4, source="acdc")
    assert set(sample.loc[sample.patient == "patient003", "group"]) == {""}
    assert any("without a Group in Info.cfg" in r.message and "patient003" in r.message for r in caplog.records)


def test_a_truncated_volume_is_one_problem_under_its_file(acdc, tmp_path):
    gt = acdc / "patient002/patient002_frame01_gt.nii.gz"  # the sample's images of patient002
    write_sample(acdc, tmp_path / "sample.csv", 4, source="acdc")
    gt.write_bytes(gt.read_bytes()[: len(gt.read_bytes()) // 2])
    message = raised_error(
        lambda: prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 32, source="acdc")
    )
    assert "1 problem(s)" in message, message
    assert f"{gt}: cannot read the NIfTI voxels" in message and "(4 sampled images)" in message


def test_an_information_csv_that_contradicts_the_label_volume_is_an_error_naming_the_row(tmp_path):
    info = write_mnms(tmp_path / "mnms", frames=(0, 3))
    info.write_text(info.read_text().replace("B1K2L3,Philips,B,2,0,3", "B1K2L3,Philips,B,2,0,4"))
    message = raised_error(lambda: scan_cohort(tmp_path / "mnms", 6, source="mnms", options={"info": str(info)}))
    assert f"{info}: row B1K2L3: ES is frame 4, but B1K2L3_sa_gt.nii.gz labels only frame(s) [0, 3]" in message
    info.write_text(info.read_text().replace("B1K2L3,Philips,B,2,0,4", "B1K2L3,Philips,B,2,0,"))
    message = raised_error(lambda: scan_cohort(tmp_path / "mnms", 6, source="mnms", options={"info": str(info)}))
    assert "ED and ES must both be frame numbers (or both empty)" in message and "row B1K2L3: ED '0', ES ''" in message


def test_a_mask_without_its_image_is_an_error_in_every_format_that_pairs_files(tmp_path):
    """LVSC and folders pair an image with its mask by name: a mask whose image is gone is
    named, not skipped (ACDC's and M&Ms' labels without their image already were)."""
    from cohort_fixtures import write_folders

    from unetcap.phantom import write_cohort

    lvsc = tmp_path / "lvsc"
    write_cohort(lvsc, 2, 3, slices=(2, 2), phases=(2, 2), matrix=(40, 40))
    dicom = sorted(lvsc.rglob("*_SA1_ph0.dcm"))[0]
    dicom.unlink()
    message = raised_error(lambda: scan_cohort(lvsc, 2, source="lvsc"))
    assert f"{dicom.with_suffix('.png')}: mask without its image (expected {dicom.name} beside it)" in message

    export = tmp_path / "export"
    write_folders(export)
    image = sorted((export / "images").rglob("*.*"))[0]
    image.unlink()
    message = raised_error(lambda: scan_cohort(export, 2, source="folders"))
    assert "1 mask(s) without an image (expected images/<same name>.<ext>)" in message


def test_negative_label_values_are_an_error_where_a_format_takes_any_labels(tmp_path):
    from cohort_fixtures import write_folders

    export = tmp_path / "export"
    write_folders(export)
    mask = sorted((export / "masks").rglob("*.npy"))[0]
    labels = np.load(mask).astype(np.int16)
    labels[0, 0] = -1
    np.save(mask, labels)
    write_sample(export, tmp_path / "sample.csv", 2, source="folders")
    message = raised_error(
        lambda: prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 32, source="folders")
    )
    assert f"{mask}: negative label value(s), e.g. -1" in message
