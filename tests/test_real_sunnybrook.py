"""The Sunnybrook reader and the prepare and splits stages on real files: eight contoured
short-axis images of two patients of the Sunnybrook Cardiac Data (tests/data/sunnybrook/,
public domain; its README says what was kept). Pixels and headers are checked against
pydicom, masks against the contour files parsed and filled here by another method than the
reader's (matplotlib's point-in-polygon test on pixel centres, not cv2.fillPoly)."""

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as PolygonPath

from unetcap import UnetcapError
from unetcap.cohort import count_patients, read_labelled, scan_cohort, write_sample
from unetcap.cohort.sunnybrook import load
from unetcap.common import read_table
from unetcap.prepare import load_store, prepare_store, store_paths
from unetcap.splits import check_sizes, write_manifest

ROOT = Path(__file__).parent / "data" / "sunnybrook"
OPTIONS = {"series_map": str(ROOT / "series_map.csv")}
CAVITY, MYOCARDIUM, BOTH = {"labels": [1]}, {"labels": [2]}, {"labels": [1, 2]}
# The files kept (README): end-diastole with both contours, end-systole with the inner one only.
ED = {"SCD0000101": [79, 119, 179], "SCD0000201": [80, 120, 180]}
ES = {"SCD0000101": [108], "SCD0000201": [107]}
SAME_SLICE = {108: 119, 107: 120}  # an ES image and the ED image of its slice
# A pixel centre within sqrt(1/2) px of a contour: the contour crosses (or touches) the pixel.
CROSSED = math.sqrt(0.5) + 1e-9
ON = 1 / 16  # a pixel centre this near a contour is on it (the reader's precision: 1/16 px)


def sample(options=None, images_per_patient=4):
    return scan_cohort(ROOT, images_per_patient, source="sunnybrook", options={**OPTIONS, **(options or {})})


def contour(prefix, kind: str) -> np.ndarray | None:
    """The points of a contour file ('i' inner, 'o' outer), parsed here: one 'x y' line a
    point, x the column and y the row, pixel centres at whole numbers; None when absent."""
    path = Path(f"{prefix}-{kind}contour-manual.txt")
    if not path.is_file():
        return None
    return np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()])


def centres_inside(points: np.ndarray, shape) -> np.ndarray:
    """Pixels whose centre matplotlib finds inside the closed polygon (undecided on it)."""
    rows, cols = np.indices(shape)
    centres = np.column_stack([cols.ravel(), rows.ravel()]).astype(float)
    return PolygonPath(points, closed=True).contains_points(centres).reshape(shape)


def distance(points: np.ndarray, shape) -> np.ndarray:
    """Distance of each pixel centre to the closed contour (inf beyond 2 px of its box)."""
    out = np.full(shape, np.inf)
    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int) - 2, np.ceil(points.max(0)).astype(int) + 2
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, shape[0] - 1), min(x1, shape[1] - 1)
    rows, cols = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    q = np.column_stack([cols.ravel(), rows.ravel()]).astype(float)[:, None, :]
    start, step = points[None], (np.roll(points, -1, axis=0) - points)[None]
    length = np.maximum((step**2).sum(-1), 1e-12)
    t = np.clip(((q - start) * step).sum(-1) / length, 0, 1)
    near = np.sqrt(((q - start - t[..., None] * step) ** 2).sum(-1)).min(1)
    out[y0 : y1 + 1, x0 : x1 + 1] = near.reshape(rows.shape)
    return out


def number(row) -> int:
    return int(Path(row["source"]).stem.split("-")[-1])


def test_the_sample_takes_the_images_with_the_contours_each_structure_needs():
    """Myocardium: the ED images (both contours); LV cavity: also the ES ones (inner contour
    only). Slices ordered by position along the slice normal, from the DICOM geometry."""
    myocardium, cavity = sample(), sample(CAVITY)
    for patient in ED:
        assert sorted(map(number, myocardium[myocardium.patient == patient].to_dict("records"))) == ED[patient]
        assert sorted(map(number, cavity[cavity.patient == patient].to_dict("records"))) == sorted(
            ED[patient] + ES[patient]
        )
    assert len(sample(BOTH)) == len(myocardium) == 6
    for row in cavity.to_dict("records"):
        ds = pydicom.dcmread(row["source"], stop_before_pixels=True)
        cosines = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(cosines[:3], cosines[3:])
        assert row["position"] == pytest.approx(float(np.dot(np.array(ds.ImagePositionPatient, float), normal)))
    for patient, rows in cavity.groupby("patient"):
        assert np.all(np.diff(rows.position.to_numpy()) >= 0) and rows.slice.tolist() == [0, 1, 1, 2]
        slice_of = {number(r): r["slice"] for r in rows.to_dict("records")}
        assert all(slice_of[es] == slice_of[SAME_SLICE[es]] for es in ES[patient])


def test_pixels_and_header_fields_equal_pydicoms():
    rows = sample(CAVITY).to_dict("records")
    assert len(rows) == 8
    for row in rows:
        header, pixels, _ = read_labelled(row, "sunnybrook", {**OPTIONS, **CAVITY})
        ds = pydicom.dcmread(row["source"])
        expected = ds.pixel_array
        assert pixels.dtype == expected.dtype == np.int16 and np.array_equal(pixels, expected)
        assert (header["rows"], header["cols"]) == (ds.Rows, ds.Columns) == pixels.shape == (256, 256)
        assert [header["spacing_row"], header["spacing_col"]] == [float(v) for v in ds.PixelSpacing]
        assert header["vendor"] == ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert header["field_strength"] == float(ds.MagneticFieldStrength) == 1.5


def test_label_image_is_cavity_inside_inner_and_myocardium_between_the_contours():
    """The reader's label image (1 LV cavity, 2 myocardium) against its masks per structure;
    an ES image (inner contour only) has no myocardium."""
    for row in sample(CAVITY).to_dict("records"):
        _, _, labels = load(row, {})
        opts = lambda labels: {**OPTIONS, **labels}  # noqa: E731
        cavity = read_labelled(row, "sunnybrook", opts(CAVITY))[2]
        myocardium = read_labelled(row, "sunnybrook", opts(MYOCARDIUM))[2]
        assert np.array_equal(cavity, labels == 1) and np.array_equal(myocardium, labels == 2)
        assert np.array_equal(read_labelled(row, "sunnybrook", opts(BOTH))[2], labels > 0)
        assert cavity.sum() > 500  # a dilated heart-failure LV: about 1000 to 2100 px of 1.87 mm^2
        if number(row) in SAME_SLICE:
            assert not myocardium.any() and contour(row["mask"], "o") is None
        else:
            assert 400 < myocardium.sum() < 1500
            assert not (cavity & myocardium).any()


def test_masks_equal_an_independent_fill_of_the_contours_but_on_the_contour_line():
    """Every pixel whose centre is farther than sqrt(1/2) px from the contours (the contour
    does not cross it) gets the same label from the reader as from matplotlib's point-in-polygon
    test on pixel centres; and the reader takes every pixel whose centre is inside.

    The two fills differ on the pixels the contour crosses: cv2.fillPoly (the reader) fills
    the polygon's rasterised outline too, so a pixel whose centre lies up to sqrt(1/2) px
    outside the contour is filled; the point-in-polygon test takes centres inside only. On
    these contours (points every 0.5 px) that is 37 to 78 pixels per contour, all of them
    outside it: 17 to 23% of the pixels within sqrt(1/2) px of the contour, fewer than half
    the contour's length in px (a band about half a pixel wide). The myocardium (outer minus
    inner fill) loses them on its inner edge and gains them on its outer one: Dice 0.92 to
    0.95 against the independent fill. The asserted bounds leave some room above these
    (the reader's convention is cv2.fillPoly's, stated in `sunnybrook.fill`)."""
    for row in sample(CAVITY).to_dict("records"):
        shape = (256, 256)
        fills = {"i": read_labelled(row, "sunnybrook", {**OPTIONS, **CAVITY})[2]}
        if number(row) not in SAME_SLICE:
            fills["o"] = read_labelled(row, "sunnybrook", {**OPTIONS, **BOTH})[2]  # cavity + myocardium
        for kind, reader in fills.items():
            points = contour(row["mask"], kind)
            mine, near = centres_inside(points, shape), distance(points, shape)
            differ = reader != mine
            assert not differ[near > CROSSED].any(), f"{row['mask']} {kind}: differ off the contour line"
            assert reader[mine & (near > ON)].all(), f"{row['mask']} {kind}: an inside pixel not filled"
            crossed = near <= CROSSED
            assert 0 < differ.sum() <= 0.3 * crossed.sum()  # measured 0.17 to 0.23 of the crossed pixels
            assert differ.sum() <= 0.5 * np.hypot(*np.diff(points, axis=0, append=points[:1]).T).sum() + 8
        if "o" in fills:
            reader_myo = read_labelled(row, "sunnybrook", {**OPTIONS, **MYOCARDIUM})[2]
            mine_myo = centres_inside(contour(row["mask"], "o"), shape) & ~centres_inside(
                contour(row["mask"], "i"), shape
            )
            dice = 2 * (reader_myo & mine_myo).sum() / (reader_myo.sum() + mine_myo.sum())
            assert dice > 0.88, f"{row['mask']}: myocardium Dice {dice:.3f} against the independent fill"


def test_contours_are_read_with_x_the_column():
    """In SSFP cine MRI the blood pool is bright and the myocardium dark: the reader's cavity
    is at least 1.8 times as bright as its myocardium, by far more than with the masks
    transposed (x read as the row), which land off the heart (measured 1.9 to 2.6 against
    1.0 to 1.9)."""
    for row in sample(BOTH).to_dict("records"):
        _, pixels, labels = load(row, {})
        contrast = pixels[labels == 1].mean() / pixels[labels == 2].mean()
        transposed = pixels[labels.T == 1].mean() / pixels[labels.T == 2].mean()
        assert contrast > 1.8 and contrast > transposed + 0.5, (row["source"], contrast, transposed)


def test_prepared_store_at_the_native_size_is_the_rescaled_image_and_its_mask(tmp_path):
    """image_size 256 = the matrix, no crop: no resizing, so each stored image is the DICOM's
    pixels mapped linearly onto [0, 1] and each mask the reader's, exactly."""
    options = {**OPTIONS, **CAVITY}
    table = write_sample(ROOT, tmp_path / "sample.csv", 4, source="sunnybrook", options=options)
    store = prepare_store(
        tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 256, source="sunnybrook", options=options
    )
    images, masks, meta = load_store(tmp_path / "store")
    index = read_table(tmp_path / "store" / "index.csv")
    assert meta["n_images"] == store["n_images"] == len(table) == len(index) == 8
    for k, row in enumerate(table.to_dict("records")):
        ds = pydicom.dcmread(row["source"])
        raw = ds.pixel_array.astype(np.float64)
        np.testing.assert_allclose(images[k], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
        assert np.array_equal(masks[k], read_labelled(row, "sunnybrook", options)[2].astype(np.uint8))
        assert index.patient[k] == row["patient"] and (index.rows[k], index.cols[k]) == (ds.Rows, ds.Columns)
        # the index is written with 6 significant digits (common.write_table): 1.367188 -> 1.36719
        spacing = [float(v) for v in ds.PixelSpacing]
        assert [index.spacing_row[k], index.spacing_col[k]] == pytest.approx(spacing, rel=1e-5)
        assert index.vendor[k] == ds.Manufacturer and index.field_strength[k] == 1.5


@pytest.mark.parametrize("roi", [{"method": "none"}, {"method": "centre", "fraction": 0.5}])
def test_prepared_store_is_finite_in_the_unit_interval_with_0_1_masks(tmp_path, roi):
    """The myocardium at 64 px, whole images and the central half: images finite in [0, 1],
    masks 0/1 with the myocardium in every image (the central half keeps all of it). The
    sample has no non-square matrix: every image is 256 x 256 (non-square matrices are
    tested on the phantom in test_format_readers.py and test_prepare.py)."""
    write_sample(ROOT, tmp_path / "sample.csv", 3, source="sunnybrook", options=OPTIONS)
    prepare_store(
        tmp_path / "sample.csv", *store_paths(tmp_path / "store"), 64, source="sunnybrook", options=OPTIONS, roi=roi
    )
    images, masks, _ = load_store(tmp_path / "store")
    index = read_table(tmp_path / "store" / "index.csv")
    assert images.shape == masks.shape == (6, 64, 64)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert images.reshape(6, -1).max(1).min() > 0.5  # no image left dark
    assert set(np.unique(masks)) == {0, 1} and masks.reshape(6, -1).sum(1).min() > 0
    assert (index.rows == 256).all() and (index.cols == 256).all() and (index.roi_kept == 1).all()
    scale = (64 / (256 * roi.get("fraction", 1))) ** 2
    for k, row in enumerate(read_table(tmp_path / "sample.csv").to_dict("records")):
        area = read_labelled(row, "sunnybrook", OPTIONS)[2].sum() * scale  # the myocardium's area, resized
        assert 0.7 * area < masks[k].sum() < 1.3 * area


def test_two_patients_are_too_few_for_the_splits(tmp_path):
    """Two patients cannot give a study: a subset's test set takes at least two holdout
    patients and its development set at least one per fold. The workflow refuses when it
    starts (check_sizes on count_patients, workflow/rules/common.smk), and the splits stage
    (write_manifest) refuses too, with the counts; config/test.yaml's images_per_patient of
    10 is more than these patients have: cohort.few_images decides."""
    assert count_patients(ROOT, "sunnybrook", OPTIONS) == 2
    with pytest.raises(UnetcapError) as err:
        write_sample(ROOT, tmp_path / "s.csv", 10, source="sunnybrook", options={**OPTIONS, "few_images": "error"})
    assert str(err.value).count("patient with too few readable labelled images: 3 images, need at least 10") == 2
    with pytest.raises(UnetcapError, match="every patient was left out"):
        write_sample(ROOT, tmp_path / "s.csv", 10, source="sunnybrook", options={**OPTIONS, "few_images": "leave_out"})
    table = write_sample(ROOT, tmp_path / "sample.csv", 10, source="sunnybrook", options=OPTIONS)  # few_images: all
    assert table.groupby("patient").size().to_dict() == {"SCD0000101": 3, "SCD0000201": 3}
    # config/test.yaml: sizes [40], folds 2, holdout_fraction 0.2: no holdout patient at all
    with pytest.raises(
        UnetcapError,
        match=r"cannot give dataset size 40 \(needs 4 development and 2 holdout patients; "
        r"the cohort of 2 gives 2 and 0\)",
    ):
        check_sizes([40], 2, 2, 10, 0.2)
    # the smallest study there is (one fold, half the patients held out): still two holdout patients short of one
    for size, folds, fraction, needs in ((40, 2, 0.2, "4 development and 2 holdout"), (4, 1, 0.5, "1 development")):
        with pytest.raises(UnetcapError) as err:
            write_manifest(
                tmp_path / "sample.csv",
                tmp_path / "size.json",
                size=size,
                folds=folds,
                seed=11,
                images_per_patient=10,
                holdout_fraction=fraction,
            )
        assert f"cannot give dataset size {size} (needs {needs}" in str(err.value)
        assert "the cohort of 2 gives" in str(err.value)
    assert not (tmp_path / "size.json").exists()
