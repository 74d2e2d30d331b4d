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
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError, write_text_atomic
from unetcap.cohort import HEADER_COLUMNS, Problems, parallel_map, read_dicom, read_mask, read_table, write_table

log = logging.getLogger(__name__)

BLOCK = 100  # most images per task of a worker: one write per array and block


def rescale(image: np.ndarray) -> np.ndarray:
    """Intensities mapped linearly onto [0, 1] as a float32 copy (a constant image becomes
    all zeros)."""
    import cv2

    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        image = image.astype(np.float64)  # what OpenCV's minMaxLoc takes
    low, high = cv2.minMaxLoc(image)[:2]
    out = image.astype(np.float32)
    if high <= low:
        out[...] = 0
        return out
    out -= np.float32(low)
    out *= np.float32(1 / (high - low))
    return out


def interpolation(shape: tuple[int, int], size: int) -> int:
    """OpenCV interpolation for bringing `shape` to `size`: area to shrink, bicubic to enlarge."""
    import cv2

    return cv2.INTER_AREA if max(shape) > size else cv2.INTER_CUBIC


def resize_pad(array: np.ndarray, size: int, interp: int, out: np.ndarray | None = None) -> np.ndarray:
    """`array` scaled so that its longer side is `size` (aspect ratio kept), then zero
    padded, centred, to size x size; into `out` (all zeros, size x size) when given."""
    import cv2

    rows, cols = array.shape
    scale = size / max(rows, cols)
    new_rows, new_cols = max(1, round(rows * scale)), max(1, round(cols * scale))
    if (new_rows, new_cols) != (rows, cols):
        array = cv2.resize(array, (new_cols, new_rows), interpolation=interp)
    if out is None:
        out = np.zeros((size, size), dtype=array.dtype)
    top, left = (size - new_rows) // 2, (size - new_cols) // 2
    out[top:top + new_rows, left:left + new_cols] = array
    return out


def prepare_image(pixels: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """A raw image as the network sees it: float32, size x size, values in [0, 1] (into
    `out`, all zeros, when given)."""
    import cv2

    interp = interpolation(pixels.shape, size)
    image = resize_pad(rescale(pixels), size, interp, out)
    if interp == cv2.INTER_CUBIC:
        np.clip(image, 0.0, 1.0, out=image)  # bicubic overshoots a little at edges
    return image


def prepare_mask(mask: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask as uint8 0/1, size x size, nearest-neighbour resized (into `out`)."""
    import cv2

    return resize_pad(mask.astype(np.uint8), size, cv2.INTER_NEAREST, out)


@contextmanager
def opencv_threads(n: int):
    """OpenCV's thread pool at `n` threads inside the block, as before after it. Set in the
    parent before worker processes are forked: a forked child must not resize a pool whose
    threads it did not inherit (it hangs)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _write_rows(path: str, offset: int, block: np.ndarray) -> None:
    """`block` written at byte `offset` of the file (positioned writes, no memory map)."""
    data = memoryview(np.ascontiguousarray(block)).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


def _prepare_block(job):
    """Read, check and prepare the sampled images of one block (consecutive rows) and write
    them into the output files. Returns ([header fields or None], [(path, what is wrong)])."""
    start, pairs, size, images_file, masks_file = job
    (images_path, images_offset, image_bytes), (masks_path, masks_offset, mask_bytes) = images_file, masks_file
    images = np.zeros((len(pairs), size, size), np.float32)
    masks = np.zeros((len(pairs), size, size), np.uint8)
    headers, problems = [], []
    for k, (source, mask_path) in enumerate(pairs):
        headers.append(None)
        try:
            header, pixels = read_dicom(source)
        except ValueError as err:
            problems.append((source, str(err)))
            continue
        try:
            mask = read_mask(mask_path)
        except UnetcapError as err:
            problems.append((mask_path, str(err).removeprefix(f"{mask_path}: ")))
            continue
        if pixels.shape != mask.shape:
            problems.append((mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                                        f"{Path(source).name} is {pixels.shape[0]}x{pixels.shape[1]}"))
            continue
        prepare_image(pixels, size, images[k])
        prepare_mask(mask, size, masks[k])
        headers[-1] = header
    if not problems:
        _write_rows(images_path, images_offset + start * image_bytes, images)
        _write_rows(masks_path, masks_offset + start * mask_bytes, masks)
    return headers, problems


def prepare_store(sample_csv, out_dir, image_size: int, workers: int = 1) -> dict:
    """Read, check and prepare every sampled image of the cohort into `out_dir`:
    images.npy (float32, N x S x S), masks.npy (uint8 0/1), index.csv (the sample with each
    image's original shape, pixel spacing, vendor and field strength) and store.json
    (shapes, sha256 of each file).

    Each sampled file is read once. Blocks of consecutive images go to `workers` processes
    (OpenCV at one thread each), which write their rows into the arrays; the parent hashes
    the arrays as the blocks come back. Every image that fails its checks or its decoding is
    collected and reported in one UnetcapError; nothing is left at the final names in that
    case.
    """
    from unetcap.provenance import FileHash, sha256_file, sha256_json

    sample = read_table(sample_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, size = len(sample), int(image_size)
    names = ("images.npy", "masks.npy", "index.csv")
    tmp = {name: out_dir / f".{name}.tmp" for name in names}
    outputs = []  # (path, offset of the data, bytes per row) of the two arrays
    for name, dtype in (("images.npy", np.float32), ("masks.npy", np.uint8)):
        array = np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype, shape=(n, size, size))
        outputs.append((str(tmp[name]), array.offset, array[0].nbytes))
        del array
    pairs = list(zip(sample.source, sample["mask"]))
    block = max(1, min(BLOCK, -(-n // (4 * workers))))  # at least 4 blocks per worker
    jobs = [(start, pairs[start:start + block], size, *outputs) for start in range(0, n, block)]
    problems = Problems(f"preparing {sample_csv}")
    headers = []
    try:
        # The arrays are hashed while the workers write them: block results come back in
        # order, and the rows before them are final.
        with (FileHash(outputs[0][0]) as image_hash, FileHash(outputs[1][0]) as mask_hash,
              opencv_threads(1) if workers > 1 else nullcontext()):
            for block_headers, block_problems in parallel_map(_prepare_block, jobs, workers):
                for problem in block_problems:
                    problems.add(*problem)
                headers.extend(block_headers)
                for file_hash, (_, offset, row_bytes) in zip((image_hash, mask_hash), outputs):
                    file_hash.advance(offset + len(headers) * row_bytes)
                if len(headers) % (10 * block) == 0 or len(headers) == n:
                    log.info("prepared %d / %d images", len(headers), n)
            problems.raise_if_any()
            index = pd.concat([sample, pd.DataFrame(headers)[HEADER_COLUMNS]], axis=1)
            write_table(index, tmp["index.csv"])
            sha = {"images.npy": image_hash.hexdigest(), "masks.npy": mask_hash.hexdigest(),
                   "index.csv": sha256_file(tmp["index.csv"])}
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
