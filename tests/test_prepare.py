"""Resizing and padding (aspect ratio kept, area vs bicubic), and the prepared store."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lvsc_fixture import write_cohort
from unetcap import UnetcapError
from unetcap.cohort import read_table, write_sample
from unetcap.prepare import (interpolation, load_store, prepare_image, prepare_mask,
                             prepare_store, rescale, resize_pad)

ROOT = Path(__file__).resolve().parents[1]


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
    store = prepare_store(tmp_path / "sample.csv", tmp_path / "prepared", image_size=32, workers=2)
    images, masks, meta = load_store(tmp_path / "prepared")
    assert meta == store == json.loads((tmp_path / "prepared/store.json").read_text())
    assert images.shape == masks.shape == (len(sample), 32, 32)
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    assert images.min() >= 0 and images.max() <= 1 and set(np.unique(masks)) == {0, 1}
    # hashed while written: the digests are those of the finished files
    assert meta["sha256"] == {name: hashlib.sha256((tmp_path / "prepared" / name).read_bytes()).hexdigest()
                              for name in ("images.npy", "masks.npy", "index.csv")}
    # same input, same bytes (one worker or two)
    prepare_store(tmp_path / "sample.csv", tmp_path / "again", image_size=32, workers=1)
    assert json.loads((tmp_path / "again/store.json").read_text())["sha256"] == meta["sha256"]
    # the store's index: the sample plus what each image's own header says
    index = read_table(tmp_path / "prepared/index.csv")
    assert index[sample.columns].equals(sample)
    assert (index.rows == 64).all() and (index.cols == 64).all()
    assert (index.spacing_row > 0).all() and index.vendor.notna().all()


def test_failed_preparation_leaves_nothing_half_written(tmp_path):
    root = write_cohort(tmp_path / "lvsc")
    sample = write_sample(root, tmp_path / "sample.csv", 6)
    for source in sample.source[1:3]:  # break two sampled images (not read by the scan)
        open(source, "r+b").truncate(900)
    with pytest.raises(UnetcapError) as err:
        prepare_store(tmp_path / "sample.csv", tmp_path / "prepared", image_size=32, workers=2)
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
    code = ("import sys, cv2, numpy as np\n"
            "cv2.setNumThreads(2)\n"
            "cv2.resize(np.ones((3000, 3000), np.float32), (999, 999), interpolation=cv2.INTER_AREA)\n"
            "from unetcap.prepare import prepare_store\n"
            "prepare_store(sys.argv[1], sys.argv[2], image_size=32, workers=2)\n"
            "print(cv2.getNumThreads())\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sample.csv"), str(tmp_path / "prepared")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2"]
    assert (tmp_path / "prepared/store.json").exists()
