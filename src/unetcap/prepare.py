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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError, write_text_atomic
from unetcap.cohort import HEADER_COLUMNS, Problems, parallel_map, read_dicom, read_mask, read_table, write_table

log = logging.getLogger(__name__)


def rescale(image: np.ndarray) -> np.ndarray:
    """Intensities mapped linearly onto [0, 1] (a constant image becomes all zeros)."""
    image = np.array(image, dtype=np.float32)  # a copy: the caller's array stays as it was
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image)
    image -= low
    image *= np.float32(1 / (high - low))
    return image


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


# Each worker process opens the output arrays once (memory-mapped, shared with the file).
_OUTPUTS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _outputs(images_path: str, masks_path: str) -> tuple[np.ndarray, np.ndarray]:
    key = (images_path, masks_path)
    if key not in _OUTPUTS:
        _OUTPUTS.clear()
        _OUTPUTS[key] = (np.load(images_path, mmap_mode="r+"), np.load(masks_path, mmap_mode="r+"))
    return _OUTPUTS[key]


def _prepare_one(job: tuple[int, str, str, int, str, str]):
    """Read, check and prepare one sampled image into row `row` of the output arrays.
    Returns (its header fields, None) or (None, (path, what is wrong))."""
    row, source, mask_path, size, images_path, masks_path = job
    try:
        header, pixels = read_dicom(source)
    except ValueError as err:
        return None, (source, str(err))
    try:
        mask = read_mask(mask_path)
    except UnetcapError as err:
        return None, (mask_path, str(err).removeprefix(f"{mask_path}: "))
    if pixels.shape != mask.shape:
        return None, (mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                                 f"{Path(source).name} is {pixels.shape[0]}x{pixels.shape[1]}")
    images, masks = _outputs(images_path, masks_path)
    images[row] = prepare_image(pixels, size)
    masks[row] = prepare_mask(mask, size)
    return header, None


def prepare_store(sample_csv, out_dir, image_size: int, workers: int = 1) -> dict:
    """Read, check and prepare every sampled image of the cohort into `out_dir`:
    images.npy (float32, N x S x S), masks.npy (uint8 0/1), index.csv (the sample with each
    image's original shape, pixel spacing, vendor and field strength) and store.json
    (shapes, sha256 of each file).

    Each sampled file is read once, spread over `workers` processes. Every image that fails
    its checks or its decoding is collected and reported in one UnetcapError; nothing is
    left at the final names in that case.
    """
    from unetcap.provenance import sha256_file, sha256_json

    sample = read_table(sample_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, size = len(sample), int(image_size)
    names = ("images.npy", "masks.npy", "index.csv")
    tmp = {name: out_dir / f".{name}.tmp" for name in names}
    for name, dtype in (("images.npy", np.float32), ("masks.npy", np.uint8)):
        np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype, shape=(n, size, size)).flush()
    jobs = [(row, source, mask, size, str(tmp["images.npy"]), str(tmp["masks.npy"]))
            for row, (source, mask) in enumerate(zip(sample.source, sample["mask"]))]
    problems = Problems(f"preparing {sample_csv}")
    headers = []
    try:
        for i, (header, error) in enumerate(parallel_map(_prepare_one, jobs, workers, chunksize=32)):
            if error:
                problems.add(*error)
            headers.append(header)
            if (i + 1) % 1000 == 0 or i + 1 == n:
                log.info("prepared %d / %d images", i + 1, n)
        _OUTPUTS.clear()
        problems.raise_if_any()
        index = pd.concat([sample, pd.DataFrame(headers)[HEADER_COLUMNS]], axis=1)
        write_table(index, tmp["index.csv"])
        with ThreadPoolExecutor(len(names)) as pool:  # hashing releases the GIL
            sha = dict(zip(names, pool.map(sha256_file, tmp.values())))
        for name, path in tmp.items():
            os.replace(path, out_dir / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    store = {"schema": 1, "n_images": n, "image_size": size, "sha256": sha, "data_sha256": sha256_json(sha)}
    write_text_atomic(out_dir / "store.json", json.dumps(store, indent=1) + "\n")
    return store


def load_store(store, images=None, masks=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(images, masks, store.json) of a prepared store, the arrays memory-mapped and checked
    against store.json. `store` is store.json or its folder; the arrays default to its
    siblings. Raises one UnetcapError naming the file and what is wrong."""
    store = Path(store)
    if store.is_dir():
        store = store / "store.json"
    images = Path(images) if images else store.with_name("images.npy")
    masks = Path(masks) if masks else store.with_name("masks.npy")
    try:
        meta = json.loads(store.read_text())
    except (OSError, ValueError) as err:
        raise UnetcapError(f"{store}: cannot read the prepared store's description ({err})") from None
    missing = [f"{store}: missing field {key}" for key in ("n_images", "image_size", "data_sha256")
               if key not in meta]
    if missing:
        raise UnetcapError("; ".join(missing))
    n, s = int(meta["n_images"]), int(meta["image_size"])
    try:
        image_array = np.load(images, mmap_mode="r")
        mask_array = np.load(masks, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise UnetcapError(f"cannot read the prepared arrays {images}, {masks}: {err}") from None
    problems = [f"{path}: {array.dtype} {array.shape}, but {store} says {np.dtype(dtype)} {(n, s, s)} "
                f"(rerun the prepare rule)"
                for path, array, dtype in ((images, image_array, np.float32), (masks, mask_array, np.uint8))
                if array.shape != (n, s, s) or array.dtype != dtype]
    if problems:
        raise UnetcapError("; ".join(problems))
    return image_array, mask_array, meta
