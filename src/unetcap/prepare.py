"""The prepared store: every sampled image resized to a square float32 array in [0, 1],
with its binary mask.

Per image (DESIGN §3): intensities rescaled to [0, 1]; resized so that the longer side
is `image_size`, keeping the aspect ratio, with area interpolation when shrinking and
bicubic when enlarging; zero padded, centred, to a square. Masks: nearest neighbour, 0/1.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from unetcap import UnetcapError
from unetcap.cohort import Problems, parallel_map, read_image, read_index, read_mask

log = logging.getLogger(__name__)


def rescale(image: np.ndarray) -> np.ndarray:
    """Intensities mapped linearly onto [0, 1] (a constant image becomes all zeros)."""
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def interpolation(shape: tuple[int, int], size: int) -> int:
    """OpenCV interpolation for bringing `shape` to `size`: area to shrink, bicubic to enlarge."""
    import cv2

    return cv2.INTER_AREA if max(shape) > size else cv2.INTER_CUBIC


def resize_pad(array: np.ndarray, size: int, interp: int) -> np.ndarray:
    """`array` scaled so that its longer side is `size` (aspect ratio kept), then zero
    padded, centred, to size x size."""
    import cv2

    rows, cols = array.shape
    scale = size / max(rows, cols)
    new_rows, new_cols = max(1, round(rows * scale)), max(1, round(cols * scale))
    if (new_rows, new_cols) != (rows, cols):
        array = cv2.resize(array, (new_cols, new_rows), interpolation=interp)
    out = np.zeros((size, size), dtype=array.dtype)
    top, left = (size - new_rows) // 2, (size - new_cols) // 2
    out[top:top + new_rows, left:left + new_cols] = array
    return out


def prepare_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """A raw image as the network sees it: float32, size x size, values in [0, 1]."""
    image = resize_pad(rescale(pixels), size, interpolation(pixels.shape, size))
    return np.clip(image, 0.0, 1.0)  # bicubic overshoots a little at edges


def prepare_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask as uint8 0/1, size x size, nearest-neighbour resized."""
    import cv2

    return resize_pad(mask.astype(np.uint8), size, cv2.INTER_NEAREST)


def _prepare_pair(job: tuple[str, str, int]):
    """(image, mask, None) prepared, or (None, None, (path, what is wrong))."""
    source, mask_path, size = job
    try:
        pixels, mask = read_image(source), read_mask(mask_path)
    except Exception as err:  # collected and reported together by the caller
        return None, None, (source, f"cannot decode ({type(err).__name__}: {err})")
    if pixels.shape != mask.shape:
        return None, None, (mask_path, f"mask is {mask.shape} but its image is {pixels.shape}")
    return prepare_image(pixels, size), prepare_mask(mask, size), None


def prepare_store(index_csv, out_dir, image_size: int, workers: int = 1) -> dict:
    """Decode and prepare every image of the cohort index into `out_dir`:
    images.npy (float32, N x S x S), masks.npy (uint8 0/1) and store.json (shapes, sha256).

    Only the images in the index are decoded. Every image that fails to decode is collected
    and reported in one UnetcapError; nothing is left at the final names in that case.
    """
    from unetcap.provenance import sha256_file, sha256_json

    index = read_index(index_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, size = len(index), int(image_size)
    tmp = {name: out_dir / f".{name}.tmp" for name in ("images.npy", "masks.npy")}
    images = np.lib.format.open_memmap(tmp["images.npy"], mode="w+", dtype=np.float32, shape=(n, size, size))
    masks = np.lib.format.open_memmap(tmp["masks.npy"], mode="w+", dtype=np.uint8, shape=(n, size, size))
    problems = Problems(f"preparing {index_csv}")
    jobs = [(s, m, size) for s, m in zip(index.source, index["mask"])]
    try:
        for i, (image, mask, error) in enumerate(parallel_map(_prepare_pair, jobs, workers, chunksize=64)):
            if error:
                problems.add(*error)
                continue
            images[i], masks[i] = image, mask
            if (i + 1) % 1000 == 0 or i + 1 == n:
                log.info("prepared %d / %d images", i + 1, n)
        problems.raise_if_any()
        images.flush(), masks.flush()
        del images, masks
        for name, path in tmp.items():
            os.replace(path, out_dir / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    sha = {name: sha256_file(out_dir / name) for name in ("images.npy", "masks.npy")}
    sha["index.csv"] = sha256_file(index_csv)
    store = {"schema": 1, "n_images": n, "image_size": size, "sha256": sha, "data_sha256": sha256_json(sha)}
    (out_dir / "store.json.tmp").write_text(json.dumps(store, indent=1) + "\n")
    os.replace(out_dir / "store.json.tmp", out_dir / "store.json")
    return store


def load_store(store_dir) -> tuple[np.ndarray, np.ndarray, dict]:
    """(images, masks, store.json) of a prepared store, the arrays memory-mapped."""
    store_dir = Path(store_dir)
    try:
        meta = json.loads((store_dir / "store.json").read_text())
    except (OSError, ValueError) as err:
        raise UnetcapError(f"{store_dir}/store.json: cannot read the prepared store ({err})") from None
    images = np.load(store_dir / "images.npy", mmap_mode="r")
    masks = np.load(store_dir / "masks.npy", mmap_mode="r")
    return images, masks, meta
