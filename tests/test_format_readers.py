"""Each format's reader but LVSC's (that one: tests/test_lvsc_reader.py) on files in the public
datasets' layouts (tests/cohort_fixtures.py): ACDC, M&Ms, M&Ms-2, Sunnybrook and plain
folders, through the one interface, into the prepared store and the splits; the phantom
written in each layout gives the same store."""

import numpy as np
import pandas as pd
import pytest
from cohort_fixtures import (
    CAVITY,
    MYOCARDIUM,
    RV,
    cartoon,
    copy_patients,
    write_acdc,
    write_folders,
    write_mnms,
    write_sunnybrook,
)
from helpers import raised_error

from unetcap import UnetcapError
from unetcap.cohort import read_labelled, scan_cohort, write_sample
from unetcap.cohort.sunnybrook import fill
from unetcap.common import read_table
from unetcap.prepare import load_store, prepare_store, store_paths
from unetcap.splits import deal, fold_indices, make_manifest


def _rows(sample, patient):
    return sample[sample.patient == patient]


def test_acdc_slices_in_position_order_with_group_and_myocardium(tmp_path):
    spec = write_acdc(tmp_path / "acdc")
    sample = scan_cohort(tmp_path / "acdc", 8, source="acdc")
    assert sample.groupby("patient").size().to_dict() == {"patient001": 8, "patient002": 8, "patient003": 4}
    assert dict(zip(sample.patient, sample.group)) == {p: s[3] for p, s in spec.items()}
    stored_first = _rows(sample, "patient002")  # stored apex first: the affine says so
    assert np.all(np.diff(stored_first.position.to_numpy()) >= 0)
    assert np.all(np.diff(stored_first.slice_label.to_numpy()) <= 0)
    assert set(_rows(sample, "patient003").phase) == {1, 7}  # the ED and ES frames of Info.cfg, as named
    assert not sample.source.str.contains("_4d").any()
    row = _rows(sample, "patient001").iloc[3].to_dict()
    header, pixels, mask = read_labelled(row, "acdc")
    z = int(row["slice_label"])
    expected_image, expected_labels = cartoon((154, 224), z, int(row["phase"] != 1), seed=1)
    assert pixels.shape == (154, 224) and np.array_equal(pixels, expected_image)
    assert np.array_equal(mask, expected_labels == MYOCARDIUM)
    assert header["spacing_row"] == pytest.approx(1.4)
    _, _, rv = read_labelled(row, "acdc", {"labels": [1]})  # ACDC's own labels: 1 the RV, 3 the LV cavity
    assert np.array_equal(rv, expected_labels == RV)
    _, _, cavity = read_labelled(row, "acdc", {"labels": [3]})
    assert np.array_equal(cavity, expected_labels == CAVITY)


def test_acdc_bad_inputs_reported_together(tmp_path):
    write_acdc(tmp_path / "acdc")
    (tmp_path / "acdc/patient001/patient001_frame07.nii.gz").unlink()
    (tmp_path / "acdc/patient002/Info.cfg").unlink()
    (tmp_path / "acdc/patient003/patient003_frame01_gt.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(UnetcapError) as err:
        scan_cohort(tmp_path / "acdc", 4, source="acdc")
    message = str(err.value)
    assert "4 problem(s)" in message
    assert "patient001/Info.cfg: key ES: frame 7 has no image volume" in message  # the frame Info.cfg names
    assert "patient001_frame07_gt.nii.gz: labels without their image" in message
    assert "patient002: no Info.cfg" in message
    assert "patient003_frame01_gt.nii.gz: not a readable NIfTI file" in message  # the label file, not the image


def test_mnms_frames_from_labels_or_information_csv_and_mnms2(tmp_path):
    info = write_mnms(tmp_path / "mnms", frames=(0, 3))
    found = scan_cohort(tmp_path / "mnms", 6, source="mnms")
    assert sorted(set(_rows(found, "A0S9V9").phase)) == [0, 3]  # labelled frames found in the label volume
    assert sorted(set(_rows(found, "C7D8E9").phase)) == [0, 1]  # M&Ms-2: ED and ES volumes
    with_info = scan_cohort(tmp_path / "mnms", 6, source="mnms", options={"info": str(info)})
    pd.testing.assert_frame_equal(
        found.drop(columns=["centre", "vendor"]), with_info.drop(columns=["centre", "vendor"])
    )
    assert dict(zip(with_info.patient, with_info.vendor)) == {"A0S9V9": "Siemens", "B1K2L3": "Philips", "C7D8E9": ""}
    assert dict(zip(with_info.patient, with_info.centre))["B1K2L3"] == "2"
    row = _rows(found, "B1K2L3").iloc[-1].to_dict()
    _, pixels, mask = read_labelled(row, "mnms")
    assert pixels.shape == (100, 100) and mask.any()
    assert np.array_equal(mask, cartoon((100, 100), int(row["slice_label"]), int(row["phase"] == 3))[1] == 2)
    # an information CSV naming a frame the cine does not have is an error, not a silent skip
    info.write_text("External code,VendorName,Centre,ED,ES\nA0S9V9,Siemens,1,0,9\n")
    with pytest.raises(UnetcapError, match=r"labelled frames \[9\] \(cohort.info\) outside the cine's 6 frames"):
        scan_cohort(tmp_path / "mnms", 6, source="mnms", options={"info": str(info)})


def test_sunnybrook_myocardium_needs_both_contours(tmp_path):
    series_map = write_sunnybrook(tmp_path / "scd")
    options = {"series_map": str(series_map)}
    myocardium = scan_cohort(tmp_path / "scd", 3, source="sunnybrook", options=options)
    assert myocardium.phase.tolist() == [9, 5, 1]  # the images with both contours, by position
    cavity = scan_cohort(tmp_path / "scd", 6, source="sunnybrook", options={**options, "labels": [1]})
    assert cavity.phase.tolist() == [9, 11, 5, 7, 1, 3]  # an inner contour alone counts for the cavity
    header, pixels, mask = read_labelled(myocardium.iloc[0].to_dict(), "sunnybrook", options)
    from cohort_fixtures import circle

    outer, inner = fill(circle(32, 30, 13), (64, 64)), fill(circle(32, 30, 8), (64, 64))
    assert np.array_equal(mask, outer & ~inner) and 300 < mask.sum() < 400  # pi (13^2 - 8^2) = 330
    _, _, cav = read_labelled(cavity.iloc[1].to_dict(), "sunnybrook", {**options, "labels": [1]})
    assert np.array_equal(cav, inner)
    assert header["rows"] == 64
    with pytest.raises(UnetcapError, match="cohort.series_map"):
        scan_cohort(tmp_path / "scd", 3, source="sunnybrook")


def test_folders_patients_slices_phases_and_every_file_format(tmp_path):
    labels = write_folders(tmp_path / "export")
    options = {"folders": {"slice": r"/s(\d+)_", "phase": r"_p(\d+)\."}}
    sample = scan_cohort(tmp_path / "export", 4, source="folders", options=options)
    assert sample.groupby("patient").size().to_dict() == {"p1": 4, "p2": 4, "p3": 4, "p10": 2}
    assert list(sample.patient.unique()) == ["p1", "p2", "p3", "p10"]  # numbers sorted by value
    p10 = _rows(sample, "p10")
    assert p10.slice_label.tolist() == [1, 2]  # slice numbers, not file order
    for row in sample.to_dict("records"):
        _, pixels, mask = read_labelled(row, "folders", options)
        expected = labels[(row["patient"], row["slice_label"], row["phase"])]
        assert pixels.shape == (70, 90) and np.array_equal(mask, expected > 0)
    _, _, cavity = read_labelled(p10.iloc[0].to_dict(), "folders", {**options, "labels": [CAVITY]})
    assert np.array_equal(cavity, labels[("p10", 1, 0)] == CAVITY)
    (tmp_path / "export/masks/p2/s3_p0.png").unlink()
    with pytest.raises(UnetcapError, match=r"s3_p0.tif: image without a mask \(expected masks/p2/s3_p0.<ext>\)"):
        scan_cohort(tmp_path / "export", 4, source="folders", options=options)
    with pytest.raises(UnetcapError, match="cohort.folders.slice"):
        scan_cohort(tmp_path / "export", 4, source="folders", options={"folders": {"slice": r"/x(\d+)"}})


def test_a_real_layout_goes_through_prepare_and_splits(tmp_path):
    """ACDC with patients of 4 to 10 labelled images at images_per_patient 8 (use them all):
    a store with the Group in its index, and patient-disjoint, nested splits."""
    write_acdc(tmp_path / "acdc")
    copy_patients(tmp_path / "acdc", 8)
    sample = write_sample(tmp_path / "acdc", tmp_path / "sample.csv", 8, source="acdc")
    counts = sample.groupby("patient").size()
    assert sorted(set(counts)) == [4, 8]
    store = prepare_store(
        tmp_path / "sample.csv",
        *store_paths(tmp_path / "prepared"),
        32,
        source="acdc",
        roi={"method": "heart", "fraction": 0.8},
    )
    images, masks, _ = load_store(tmp_path / "prepared")
    assert images.shape == (len(sample), 32, 32) and store["n_images"] == len(sample)
    assert masks.reshape(len(masks), -1).max(axis=1).all()  # every slice has myocardium
    index = read_table(tmp_path / "prepared/index.csv")
    matrix = {
        "patient001": 154,
        "patient002": 128,
        "patient003": 96,
        "patient004": 128,
        "patient005": 96,
        "patient006": 154,
        "patient007": 128,
        "patient008": 96,
    }
    assert (index.group != "").all() and index.rows.tolist() == index.patient.map(matrix).tolist()
    manifests = {
        size: make_manifest(sample, size, folds=2, seed=3, images_per_patient=8, holdout_fraction=0.25)
        for size in (20, 40)
    }
    for size, manifest in manifests.items():
        dev = [i for e in manifest["dev"] for i in e["indices"]]
        test = [i for e in manifest["test"] for i in e["indices"]]
        assert len(dev) + len(test) == size and len(set(dev + test)) == size
        folds = fold_indices(manifest, 0)
        patients = {k: set(sample.patient.iloc[v]) for k, v in folds.items()}
        assert not (patients["train"] & patients["val"]) and not (
            patients["test"] & (patients["train"] | patients["val"])
        )
    small = {e["patient"] for e in manifests[20]["dev"]}
    assert small <= {e["patient"] for e in manifests[40]["dev"]}  # nested by patient
    again = make_manifest(sample, 40, folds=2, seed=3, images_per_patient=8, holdout_fraction=0.25)
    assert again == manifests[40]


def test_deal_is_equal_shares_when_no_patient_is_short():
    assert deal(10, [8, 8, 8]) == [4, 3, 3]
    assert deal(10, [2, 8, 8]) == [2, 4, 4]
    assert deal(7, [1, 1, 8]) == [1, 1, 5]
    assert deal(3, [4, 4, 4, 4]) == [1, 1, 1, 0]


@pytest.mark.slow
def test_the_workflow_reads_an_acdc_cohort_up_to_the_splits(tmp_path):
    """The real Snakemake: cohort.source acdc, patients of 4 and 8 images (few_images: all),
    the LV cavity instead of the myocardium; cohort, prepare and splits run, the log says
    which patients kept all their images."""
    import yaml
    from snakemake_run import copy_workflow, snakemake

    root = tmp_path / "acdc"
    write_acdc(root)
    copy_patients(root, 4)
    work = copy_workflow(tmp_path / "work")
    config = yaml.safe_load((work / "config/test.yaml").read_text())
    config["cohort"] = {"source": "acdc", "path": str(root), "patients": 4, "labels": [3]}
    config.update(images_per_patient=8, sizes=[12], holdout_fraction=0.5)
    (work / "acdc.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(
        work,
        "results/acdc/prepared/store.json",
        "results/acdc/splits/size12.json",
        "--configfile",
        "acdc.yaml",
        "--cores",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    index = read_table(work / "results/acdc/prepared/index.csv")
    assert index.groupby("patient").size().to_dict() == {
        "patient001": 8,
        "patient002": 8,
        "patient003": 4,
        "patient004": 8,
    }
    _, masks, _ = load_store(work / "results/acdc/prepared")
    from unetcap.prepare import prepare_mask

    for k in (0, 5, 19):  # the stored masks are the LV cavity (label 3), not the myocardium
        row = index.iloc[k].to_dict()
        cavity = prepare_mask(read_labelled(row, "acdc", {"labels": [3]})[2], 32)
        myocardium = prepare_mask(read_labelled(row, "acdc")[2], 32)
        assert cavity.any() and np.array_equal(masks[k], cavity) and not np.array_equal(masks[k], myocardium)
    assert "cohort.few_images all: 1 patient(s) with fewer than 8 images" in (work / "logs/acdc/cohort.log").read_text()


@pytest.fixture(scope="module")
def phantom_layouts(tmp_path_factory):
    """A small phantom (non-square matrices, one patient with shuffled slice labels) in the
    LVSC layout and written again in the ACDC, M&Ms, folders and Sunnybrook layouts."""
    from unetcap.phantom import write_cohort
    from unetcap.phantom.layouts import write_layout

    root = tmp_path_factory.mktemp("phantom")
    write_cohort(root / "lvsc", 5, seed=5, slices=(3, 4), phases=(4, 5), matrix=(40, 64))
    for layout in ("acdc", "mnms", "folders", "sunnybrook"):
        write_layout(root / "lvsc", root / layout, layout)
    return root


FOLDERS = {"folders": {"slice": r"/s(\d+)_", "phase": r"_p(\d+)\."}}


@pytest.mark.parametrize("layout", ["acdc", "mnms", "folders"])
def test_the_same_phantom_through_two_layouts_gives_the_same_store(phantom_layouts, layout, tmp_path):
    root = phantom_layouts
    stores = {}
    for source in ("lvsc", layout):
        options = FOLDERS if source == "folders" else {}
        sample = write_sample(root / source, tmp_path / f"{source}.csv", 8, source=source, options=options)
        prepare_store(
            tmp_path / f"{source}.csv",
            *store_paths(tmp_path / source),
            32,
            source=source,
            options=options,
            roi={"method": "heart", "fraction": 0.7},
        )
        stores[source] = (sample, *load_store(tmp_path / source)[:2])
    (lvsc, lvsc_images, lvsc_masks), (other, images, masks) = stores["lvsc"], stores[layout]
    assert other.patient.tolist() == lvsc.patient.tolist() and other.slice.tolist() == lvsc.slice.tolist()
    assert (other.phase - (layout == "acdc")).tolist() == lvsc.phase.tolist()  # ACDC frames count from 1
    if layout != "folders":  # NIfTI stores a DICOM image transposed (first axis along a row)
        images, masks = images.transpose(0, 2, 1), masks.transpose(0, 2, 1)
    assert np.abs(images - lvsc_images).max() < 1e-4
    assert np.mean(masks != lvsc_masks) < 0.005 and masks.sum() > 0


def test_the_same_phantom_through_sunnybrook_contours_gives_the_same_store(phantom_layouts, tmp_path):
    """Sunnybrook has contours, not masks: the phantom's myocardium is traced (inner and
    outer contour) and filled again by the reader. Images whose myocardium is no ring (the
    apex: a disc without a cavity) have no inner contour, so Sunnybrook's myocardium leaves
    them out; every other image is in both stores. Tolerance: the images equal, the
    masks differ in under 0.5% of pixels (measured: 0 of 64 x 32 x 32 on this phantom;
    tracing boundary-pixel centres and filling them at 1/16 px gives the masks back)."""
    from unetcap.cohort.lvsc import read_mask
    from unetcap.phantom.layouts import SERIES_MAP, contours_of

    root = phantom_layouts
    options = {"lvsc": {}, "sunnybrook": {"series_map": str(root / "sunnybrook" / SERIES_MAP)}}
    stores = {}
    for source, opts in options.items():  # images_per_patient above every patient's count: all images
        sample = write_sample(root / source, tmp_path / f"{source}.csv", 100, source=source, options=opts)
        prepare_store(tmp_path / f"{source}.csv", *store_paths(tmp_path / source), 32, source=source, options=opts)
        stores[source] = (sample, *load_store(tmp_path / source)[:2])
    (lvsc, lvsc_images, lvsc_masks), (scd, images, masks) = stores["lvsc"], stores["sunnybrook"]

    def key(sample):  # an image: its patient, slice position and place among the slice's phases
        return list(zip(sample.patient, sample.position.round(3), sample.groupby(["patient", "slice"]).cumcount()))

    where = {k: i for i, k in enumerate(key(lvsc))}
    matched = [where[k] for k in key(scd)]
    left_out = sorted(set(range(len(lvsc))) - set(matched))
    assert len(scd) >= 0.5 * len(lvsc) and scd.patient.nunique() == lvsc.patient.nunique()
    assert all(contours_of(read_mask(lvsc["mask"][i])) is None for i in left_out)  # no ring, no inner contour
    assert np.abs(images - lvsc_images[matched]).max() < 1e-6
    assert np.mean(masks != lvsc_masks[matched]) < 0.005 and masks.sum() > 0


def test_bad_input_per_format_is_named_file_by_file(tmp_path):
    import nibabel as nib
    from cohort_fixtures import _affine, _save_nifti

    acdc = tmp_path / "acdc"
    write_acdc(acdc)
    copy_patients(acdc, 4)
    # a 4-D frame where ACDC has 3-D ones, and image and labels of different shapes
    _save_nifti(acdc / "patient002/patient002_frame01.nii.gz", np.zeros((128, 128, 4, 2), np.int16), _affine())
    _save_nifti(acdc / "patient003/patient003_frame07_gt.nii.gz", np.zeros((96, 100, 2), np.uint8), _affine())
    message = raised_error(lambda: scan_cohort(acdc, 4, source="acdc"))
    assert "2 problem(s)" in message
    assert "patient002_frame01.nii.gz: a 4-D volume of shape (128, 128, 4, 2) where ACDC has 3-D frames" in message
    assert "patient003_frame07_gt.nii.gz: labels of shape (96, 100, 2) but the image is (96, 112, 2)" in message
    assert "cohort.labels: [5] are not among the labels of cohort.source acdc (1, 2, 3" in raised_error(
        lambda: scan_cohort(acdc, 4, source="acdc", options={"labels": [5]})
    )
    # a label value outside ACDC's 0-3: prepare names the file, and writes nothing
    acdc = tmp_path / "acdc2"
    write_acdc(acdc)
    copy_patients(acdc, 4)
    gt = acdc / "patient001/patient001_frame01_gt.nii.gz"
    volume = nib.load(str(gt))
    data = np.asarray(volume.dataobj).copy()
    data[0, 0, :] = 7
    nib.save(nib.Nifti1Image(data, volume.affine), str(gt))
    write_sample(acdc, tmp_path / "sample.csv", 4, source="acdc", options={"few_images": "leave_out"})
    message = raised_error(
        lambda: prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 32, source="acdc")
    )
    # named once, under the label file that holds it, not once per sampled slice under the image
    assert "1 problem(s)" in message
    assert (
        "patient001_frame01_gt.nii.gz: label value(s) [7] outside the format's [0, 1, 2, 3] in slice 0, frame 1; "
        "slice 1, frame 1 (2 sampled images)" in message
    )
    assert not (tmp_path / "store/images.npy").exists()

    scd = tmp_path / "scd"
    options = {"series_map": str(write_sunnybrook(scd))}
    contours = scd / "contours/SC-HF-I-01/contours-manual/IRCCI-expert"
    np.savetxt(contours / "IM-0001-0005-ocontour-manual.txt", np.array([[1, 1], [70, 2], [30, 40]]), fmt="%g")
    sample = scan_cohort(scd, 3, source="sunnybrook", options=options)
    with pytest.raises(
        ValueError,
        match=r"contour file IM-0001-0005-ocontour-manual.txt: 1 point\(s\) outside "
        r"the 64x64 image, e.g. x 70, y 2",
    ):
        read_labelled(sample[sample.phase == 5].iloc[0].to_dict(), "sunnybrook", options)
    (scd / "images/SCD0000101/CINESAX_300/IM-0001-0009.dcm").unlink()
    message = raised_error(lambda: scan_cohort(scd, 2, source="sunnybrook", options=options))
    assert "IM-0001-0009-icontour-manual.txt: contours without their image (expected" in message

    export = tmp_path / "export"
    write_folders(export)
    assert "the patient expression '^patient(\\\\d+)/' (cohort.folders.patient) does not match" in raised_error(
        lambda: scan_cohort(export, 2, source="folders", options={"folders": {"patient": r"^patient(\d+)/"}})
    )
    write_sample(export, tmp_path / "folders.csv", 2, source="folders", options={"labels": [7]})
    message = raised_error(
        lambda: prepare_store(
            tmp_path / "folders.csv", *store_paths(tmp_path / "f"), 32, source="folders", options={"labels": [7]}
        )
    )
    assert (
        "4 problem(s)" in message
        and "patient p10: the structure (cohort.labels) is empty in every one of its 2 sampled images" in message
    )


@pytest.mark.parametrize(
    "kind, dtype, scaled", [("Nifti1Image", ">i2", True), ("Nifti1Image", "<u2", False), ("Nifti2Image", "<f4", False)]
)
def test_nifti_voxels_and_header_as_nibabel_reads_them(tmp_path, kind, dtype, scaled):
    """The cohort's NIfTI reader parses the files itself (one read, no nibabel image): the
    voxels (values, dtype, axis order, scaling), shape and spacing are nibabel's."""
    import nibabel as nib

    from unetcap.cohort.nifti import read_volume, read_volume_header

    data = np.arange(5 * 7 * 3, dtype=dtype).reshape(5, 7, 3)
    affine = np.diag([0.8, 1.3, 8.0, 1.0])
    image = getattr(nib, kind)(data, affine)
    if scaled:
        image.header.set_slope_inter(0.5, 3.0)
    path = tmp_path / "volume.nii.gz"
    nib.save(image, str(path))
    volume, voxels = read_volume(str(path))
    expected = np.asanyarray(nib.load(str(path)).dataobj)
    assert voxels.dtype == expected.dtype and np.array_equal(voxels, expected)
    assert volume == read_volume_header(path)
    assert volume.shape == (5, 7, 3) and volume.spacing == pytest.approx((0.8, 1.3))
    assert volume.positions == pytest.approx((0.0, 8.0, 16.0))
    path.write_bytes(path.read_bytes()[:80])  # truncated
    with pytest.raises(ValueError, match="cannot read the NIfTI voxels"):
        read_volume.__wrapped__(str(path))


def test_worker_blocks_keep_patients_whole_so_no_volume_is_read_twice():
    """The prepare stage's blocks cover every row once, in order, at most a block long; a
    patient that fits in a block is never cut between two (two workers would each read
    its volumes); with whole_patients each block is one patient."""
    from unetcap.prepare import _blocks

    sizes = {"a": 20, "b": 25, "c": 250, "d": 5, "e": 30}
    sample = pd.DataFrame({"patient": [p for p, k in sizes.items() for _ in range(k)]})
    blocks = _blocks(sample, 2, whole_patients=False)
    block = -(-len(sample) // 8)
    assert [b[0] for b in blocks[1:]] == [b[1] for b in blocks[:-1]] and blocks[0][0] == 0
    assert blocks[-1][1] == len(sample) and all(0 < end - start <= block for start, end in blocks)
    for patient, size in sizes.items():
        rows = np.flatnonzero(sample.patient == patient)
        cut = sum(start < rows[0] < end <= rows[-1] or rows[0] < start <= rows[-1] for start, end in blocks)
        assert cut == 0 or size > block, patient
    assert [end - start for start, end in _blocks(sample, 2, whole_patients=True)] == list(sizes.values())


def test_folders_cohort_is_walked_once_whatever_its_patient_count(tmp_path, monkeypatch):
    """images/ and masks/ are each walked once per cohort scan, not once per patient (which
    made a scan quadratic in patients); the sample is the same."""
    import os

    from unetcap.cohort import folders

    write_folders(tmp_path / "export")
    options = {"folders": {"slice": r"/s(\d+)_", "phase": r"_p(\d+)\."}}
    walked = []
    real_walk = os.walk

    def counting_walk(top, *args, **kwargs):
        walked.append(os.path.basename(top))
        return real_walk(top, *args, **kwargs)

    monkeypatch.setattr(folders.os, "walk", counting_walk)
    sample = scan_cohort(tmp_path / "export", 4, source="folders", options=options)
    assert sample.patient.nunique() == 4
    assert sorted(walked) == ["images", "masks"]
