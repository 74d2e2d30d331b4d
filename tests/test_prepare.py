"""Resizing and padding (aspect ratio kept, area vs bicubic), and the prepared store."""

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from lvsc_fixture import write_cohort

from unetcap import UnetcapError, schema
from unetcap.cohort import write_sample
from unetcap.common import read_table
from unetcap.prepare import (
    heart_centre,
    interpolation,
    load_store,
    prepare_image,
    prepare_mask,
    prepare_store,
    rescale,
    resize_pad,
    roi_box,
    roi_boxes,
    store_paths,
)


def test_rescale_maps_onto_unit_interval():
    out = rescale(np.array([[100, 300], [200, 500]], np.uint16))
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out, [[0, 0.5], [0.25, 1]])
    assert not rescale(np.full((3, 3), 7)).any()


def test_interpolation_is_area_when_shrinking_and_bicubic_when_enlarging():
    assert interpolation((512, 400), 256) == cv2.INTER_AREA
    assert interpolation((138, 192), 256) == cv2.INTER_CUBIC
    assert interpolation((300, 200), 256) == cv2.INTER_AREA  # longer side decides


@pytest.mark.parametrize("shape", [(138, 192), (512, 400), (256, 256), (60, 30)])
def test_resize_pad_keeps_aspect_ratio_and_centres(shape):
    rows, cols = shape
    out = prepare_image(np.ones(shape, np.float32) + np.arange(cols, dtype=np.float32), 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    # the content (a ramp > 0 except its first column) sits in a centred box of the right shape
    box = prepare_mask(np.ones(shape, bool), 64)
    r, c = np.nonzero(box)
    height, width = r.max() - r.min() + 1, c.max() - c.min() + 1
    assert max(height, width) == 64
    assert abs(height / width - rows / cols) < 0.05
    assert abs(r.min() - (64 - r.max() - 1)) <= 1 and abs(c.min() - (64 - c.max() - 1)) <= 1


def test_area_interpolation_averages_when_shrinking():
    checker = np.indices((128, 128)).sum(axis=0) % 2  # 0/1 checkerboard
    out = resize_pad(checker.astype(np.float32), 64, interpolation(checker.shape, 64))
    np.testing.assert_allclose(out, 0.5)  # area: each output pixel is the mean of 2x2


def test_masks_stay_binary():
    mask = np.zeros((138, 192), bool)
    mask[40:90, 60:130] = True
    out = prepare_mask(mask, 256)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}


def test_store_holds_every_indexed_image(tmp_path):
    root = write_cohort(tmp_path / "lvsc")
    sample = write_sample(root, tmp_path / "sample.csv", 6)
    store = prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "prepared"), image_size=32, workers=2)
    images, masks, meta = load_store(tmp_path / "prepared")
    assert meta == store == json.loads((tmp_path / "prepared/store.json").read_text())
    assert images.shape == masks.shape == (len(sample), 32, 32)
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    assert images.min() >= 0 and images.max() <= 1 and set(np.unique(masks)) == {0, 1}
    # hashed while written: the digests are those of the finished files
    assert meta["sha256"] == {
        name: hashlib.sha256((tmp_path / "prepared" / name).read_bytes()).hexdigest()
        for name in ("images.npy", "masks.npy", "index.csv")
    }
    # same input, same bytes (one worker or two)
    prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "again"), image_size=32, workers=1)
    assert json.loads((tmp_path / "again/store.json").read_text())["sha256"] == meta["sha256"]
    # the store's index: the sample plus what each image's own header says
    index = read_table(tmp_path / "prepared/index.csv")
    kept = [c for c in sample.columns if c != "vendor"]  # the index takes the vendor from the header
    assert index[kept].equals(sample[kept])
    assert (index.rows == 64).all() and (index.cols == 64).all()
    assert (index.spacing_row > 0).all() and index.vendor.notna().all()


def test_failed_preparation_leaves_nothing_half_written(tmp_path):
    root = write_cohort(tmp_path / "lvsc")
    sample = write_sample(root, tmp_path / "sample.csv", 6)
    for source in sample.source[1:3]:  # break two sampled images (not read by the scan)
        open(source, "r+b").truncate(900)
    with pytest.raises(UnetcapError) as err:
        prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "prepared"), image_size=32, workers=2)
    assert "2 problem(s)" in str(err.value)
    for source in sample.source[1:3]:
        assert f"{source}: " in str(err.value)  # truncated: no or too little pixel data
    assert list((tmp_path / "prepared").iterdir()) == []


def test_workers_start_safely_after_opencv_ran_its_threads(tmp_path):
    """The workers are forked with OpenCV at one thread each; a parent that has already run
    OpenCV's thread pool (a resize in the test process, say) must not hang them, and gets its
    own thread count back afterwards."""
    root = write_cohort(tmp_path / "lvsc")
    write_sample(root, tmp_path / "sample.csv", 6)
    code = (
        "import sys, cv2, numpy as np\n"
        "cv2.setNumThreads(2)\n"
        "cv2.resize(np.ones((3000, 3000), np.float32), (999, 999), interpolation=cv2.INTER_AREA)\n"
        "from unetcap.prepare import prepare_store, store_paths\n"
        "prepare_store(sys.argv[1], *store_paths(sys.argv[2]), image_size=32, workers=2)\n"
        "print(cv2.getNumThreads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "sample.csv"), str(tmp_path / "prepared")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2"]
    assert (tmp_path / "prepared/store.json").exists()


# ---------------------------------------------------------------- the [0, 1] contract
@pytest.mark.parametrize("shape, size", [((224, 154), 64), ((154, 224), 64), ((138, 192), 256), ((192, 138), 256)])
def test_prepared_images_stay_in_unit_interval_on_non_square_matrices(shape, size):
    """Area (shrinking) and bicubic (enlarging) interpolation both overshoot [0, 1] on
    images with sharp edges (seen on real data: 1.0000002 from a 224x154 image at 64 px);
    the prepared image never does."""
    rng = np.random.default_rng(0)
    overshoot, worst = 0.0, (1.0, 0.0)
    for _ in range(60):
        pixels = (rng.random(shape) * 4000).astype(np.uint16)
        pixels[rng.random(shape) < 0.5] = 4000  # half the pixels at the maximum
        raw = resize_pad(rescale(pixels), size, interpolation(shape, size))
        overshoot = max(overshoot, raw.max() - 1, -raw.min())
        out = prepare_image(pixels, size)
        worst = (min(worst[0], out.min()), max(worst[1], out.max()))
    assert overshoot > 0  # the interpolation alone leaves [0, 1]: the case is exercised
    assert worst[0] >= 0 and worst[1] <= 1


# ---------------------------------------------------------------- region of interest
def test_roi_box_is_a_square_of_the_shorter_side_kept_inside_the_image():
    assert roi_box((100, 200), 0.5) == (25, 75, 50)  # centred
    assert roi_box((100, 200), 0.5, centre=(0, 0)) == (0, 0, 50)  # moved inside
    assert roi_box((100, 200), 0.5, centre=(99, 199)) == (50, 150, 50)
    assert roi_box((100, 200), 1.0, centre=(10, 30)) == (0, 0, 100)
    top, left, side = roi_box((138, 192), 0.4, centre=(60.0, 120.0))
    assert side == 55 and abs(top + (side - 1) / 2 - 60) <= 0.5 and abs(left + (side - 1) / 2 - 120) <= 0.5


def test_heart_centre_is_where_the_images_change_over_the_phases():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:120, :160]
    background = 500 + 300 * ((yy - 70) ** 2 / 50**2 + (xx - 60) ** 2 / 70**2 < 1)  # a bright static body
    images, slices = [], []
    for s in range(3):
        for radius in (14, 11, 8, 11):  # a ventricle contracting at (40, 110)
            image = background + 1500 * (np.hypot(yy - 40, xx - 110) < radius) + rng.normal(0, 20, yy.shape)
            images.append(np.clip(image, 0, None).astype(np.uint16))
            slices.append(s)
    row, col = heart_centre(images, slices)
    assert abs(row - 40) <= 2 and abs(col - 110) <= 2
    boxes, how = roi_boxes(images, slices, "heart", 0.5)
    assert how == "heart" and len(set(boxes)) == 1
    top, left, side = boxes[0]
    assert side == 60 and top <= 40 - 14 and top + side >= 40 + 14 and left <= 110 - 14 and left + side >= 110 + 14
    # one phase per slice, or phases that never change: the image's centre instead
    assert heart_centre(images[::4], slices[::4]) is None
    assert roi_boxes([images[0]] * 4, [0] * 4, "heart", 0.5) == (
        [roi_box((120, 160), 0.5)] * 4,
        "centre: no motion between phases",
    )


def test_heart_crop_never_reads_the_masks(tmp_path):
    """The same images with other masks give the same crops and the same prepared images;
    on the phantom the crop holds the whole myocardium."""
    from unetcap.phantom import write_cohort as write_phantom

    write_phantom(tmp_path / "phantom", 3, 5, slices=(3, 3), phases=(5, 5), matrix=(96, 128))
    write_sample(tmp_path / "phantom", tmp_path / "sample.csv", 10)
    roi = {"method": "heart", "fraction": 0.5}
    first = prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "a"), image_size=32, workers=2, roi=roi)
    index = read_table(tmp_path / "a/index.csv")
    assert (index.roi == "heart").all() and (index.roi_side > 0).all()
    assert index.roi_kept.dropna().min() == 1.0  # nothing of the myocardium cut off
    for mask in read_table(tmp_path / "sample.csv")["mask"]:  # other masks: a block in a corner
        other = np.zeros(cv2.imread(mask, cv2.IMREAD_UNCHANGED).shape[:2], np.uint8)
        other[:10, :10] = 255
        cv2.imwrite(mask, other)
    second = prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "b"), image_size=32, workers=1, roi=roi)
    assert second["sha256"]["images.npy"] == first["sha256"]["images.npy"]
    assert second["sha256"]["masks.npy"] != first["sha256"]["masks.npy"]
    again = read_table(tmp_path / "b/index.csv")
    assert again[["roi_top", "roi_left", "roi_side"]].equals(index[["roi_top", "roi_left", "roi_side"]])
    assert first["roi"] == roi


def test_centre_crop_magnifies_the_middle_and_none_keeps_the_whole_image(tmp_path):
    root = write_cohort(tmp_path / "lvsc", patients=2)
    write_sample(root, tmp_path / "sample.csv", 6)
    whole = prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "none"), image_size=32)
    prepare_store(
        tmp_path / "sample.csv",
        *store_paths(tmp_path / "centre"),
        image_size=32,
        roi={"method": "centre", "fraction": 0.5},
    )
    assert whole["roi"] == schema.validated({}, "roi")  # the schema's defaults, as the workflow passes them
    masks = {name: np.load(tmp_path / name / "masks.npy") for name in ("none", "centre")}
    # the fixture's rings sit at the centre of 64x64 images: half the field of view, twice the size
    assert int(masks["centre"].sum()) == pytest.approx(4 * int(masks["none"].sum()), rel=0.15)
    index = read_table(tmp_path / "centre/index.csv")
    assert index[["roi_top", "roi_left", "roi_side"]].drop_duplicates().values.tolist() == [[16, 16, 32]]
    with pytest.raises(UnetcapError, match="roi.method: 'middle' is not one of"):
        prepare_store(tmp_path / "sample.csv", *store_paths(tmp_path / "bad"), image_size=32, roi={"method": "middle"})
