"""The prepared store: every sampled image resized to a square float32 array in [0, 1],
with its binary mask.

Per image (docs/design.md §4): intensities rescaled to [0, 1]; resized so that the longer side
is `image_size`, keeping the aspect ratio, with area interpolation when shrinking and
bicubic when enlarging; zero padded, centred, to a square; finally clipped to [0, 1] (both
interpolations overshoot by a few ulp to a few per cent at sharp edges). Masks: nearest
neighbour, 0/1.

Optionally a region of interest is cut out before resizing (config `roi`, off in the
paper's protocol): a square of `fraction` times the image's shorter side, centred on the
image (`centre`) or on the heart (`heart`), so that at a low `image_size` the myocardium is
more than a pixel or two thick. The heart is found from the images alone, never from the
masks: it is where the patient's images change most over the cardiac cycle
(`heart_centre`).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.cohort import HEADER_COLUMNS, FileProblem, read_labelled
from unetcap.common import Problems, atomic_path, parallel_map, read_table, write_table, write_text_atomic

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
    out[top : top + new_rows, left : left + new_cols] = array
    return out


def prepare_image(
    pixels: np.ndarray, size: int, out: np.ndarray | None = None, box: tuple[int, int, int] | None = None
) -> np.ndarray:
    """A raw image as the network sees it: float32, size x size, values in [0, 1] (into
    `out`, all zeros, when given); only the square `box` (top, left, side) of it when given.
    Intensities are rescaled over the whole image, so a crop does not change them."""
    image = rescale(pixels)
    if box is not None:
        image = crop(image, box)
    image = resize_pad(image, size, interpolation(image.shape, size), out)
    np.clip(image, 0.0, 1.0, out=image)  # area and bicubic both overshoot a little at edges
    return image


def prepare_mask(
    mask: np.ndarray, size: int, out: np.ndarray | None = None, box: tuple[int, int, int] | None = None
) -> np.ndarray:
    """A boolean mask as uint8 0/1, size x size, nearest-neighbour resized (into `out`);
    only the square `box` of it when given."""
    import cv2

    mask = mask.astype(np.uint8)
    if box is not None:
        mask = crop(mask, box)
    return resize_pad(mask, size, cv2.INTER_NEAREST, out)


# ---------------------------------------------------------------- region of interest
ROI_METHODS = ("none", "centre", "heart")


def crop(array: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The square `box` = (top, left, side) of `array` (a view)."""
    top, left, side = box
    return array[top : top + side, left : left + side]


def roi_box(shape: tuple[int, int], fraction: float, centre: tuple[float, float] | None = None) -> tuple[int, int, int]:
    """(top, left, side) of a square of `fraction` times the shorter side of an image of
    `shape`, centred on `centre` (row, column; default the image's centre) and moved, if
    need be, to lie inside the image."""
    rows, cols = shape
    side = max(1, min(rows, cols, round(fraction * min(rows, cols))))
    cy, cx = ((rows - 1) / 2, (cols - 1) / 2) if centre is None else centre
    top = int(np.clip(round(cy - (side - 1) / 2), 0, rows - side))
    left = int(np.clip(round(cx - (side - 1) / 2), 0, cols - side))
    return top, left, side


def commonest_shape(images: list[np.ndarray]) -> tuple[int, int]:
    """The matrix most of `images` have (the first of equals)."""
    shapes = [im.shape for im in images]
    return max(shapes, key=shapes.count) if shapes else (0, 0)


def heart_centre(images: list[np.ndarray], slices: list) -> tuple[float, float] | None:
    """Where the heart is in one patient's images (row, column), from the images alone: the
    per-pixel standard deviation over the cardiac phases of each slice (images rescaled to
    [0, 1]), averaged over the slices and smoothed with a Gaussian of a 24th of the shorter
    side; then the weighted centroid of the region around its peak that moves at least half
    as much. The ventricles' contraction is what changes most in a breath-held cine. None
    when no slice has two phases of the patient's commonest matrix, or when the phases do not
    differ at all (nothing moves), so the caller can fall back to the image's centre."""
    import cv2

    shape = commonest_shape(images)
    groups: dict = {}
    for image, slice_ in zip(images, slices):
        if image.shape == shape:
            groups.setdefault(slice_, []).append(rescale(image))
    maps = [np.std(np.stack(group), axis=0) for group in groups.values() if len(group) >= 2]
    if not maps:
        return None
    motion = np.mean(maps, axis=0, dtype=np.float32)
    if not motion.max() > 0:
        return None  # identical phases: nothing to find the heart by
    sigma = min(shape) / 24
    motion = cv2.GaussianBlur(motion, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    # the centroid of the region around the peak where the motion is at least half the peak's:
    # the ventricle's wall moves in a ring, whose middle moves less than the ring itself
    peak = np.unravel_index(int(np.argmax(motion)), shape)
    _, labels = cv2.connectedComponents((motion >= 0.5 * motion[peak]).astype(np.uint8))
    weight = np.where(labels == labels[peak], motion, 0)
    rows, cols = np.indices(shape)
    return float((weight * rows).sum() / weight.sum()), float((weight * cols).sum() / weight.sum())


def roi_boxes(images: list[np.ndarray], slices: list, method: str, fraction: float) -> tuple[list, str]:
    """The crop box of each of one patient's images (None each for method "none"), and how
    its centre was found ("none", "centre", "heart", or "centre: ..." when the heart could
    not be found)."""
    if method == "none":
        return [None] * len(images), "none"
    found = "centre"
    centre = None
    if method == "heart":
        centre = heart_centre(images, slices)
        found = "heart" if centre is not None else "centre: no motion between phases"
    shape = commonest_shape(images)
    return [roi_box(im.shape, fraction, centre if im.shape == shape else None) for im in images], found


def preparation(store: dict) -> dict:
    """How a store was prepared, for a run's metrics.json: {"roi_method", "roi_fraction"}
    (stores written before the region of interest existed: "none", 1.0)."""
    roi = store.get("roi") or {}
    return {"roi_method": str(roi.get("method", "none")), "roi_fraction": float(roi.get("fraction", 1.0))}


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


ROI_COLUMNS = ["roi", "roi_top", "roi_left", "roi_side", "roi_kept"]


def _prepare_block(job):
    """Read, check and prepare the sampled images of one block (consecutive rows; whole
    patients when the region of interest is found per patient) and write them into the
    output files; nothing is written when any of its images has a problem. Returns
    ([header fields + ROI columns] or [None, ...], [(path, what is wrong)], [warning],
    [whether each image's structure is non-empty, None where it could not be read])."""
    start, items, groups, size, roi, reading, images_file, masks_file = job
    (images_path, images_offset, image_bytes), (masks_path, masks_offset, mask_bytes) = images_file, masks_file
    raw, problems, warnings = [], [], []
    for item in items:
        raw.append(None)
        try:
            header, pixels, mask = read_labelled(item, **reading)
        except ValueError as err:
            problems.append(err.fields if isinstance(err, FileProblem) else (item["source"], str(err)))
            continue
        raw[-1] = (header, pixels, mask)
        if pixels.size and pixels.min() == pixels.max():
            warnings.append(f"{item['source']}: a constant image with empty labels (kept: it teaches 'no heart here')")
    labelled = [None if r is None else bool(r[2].any()) for r in raw]
    if problems:
        return [None] * len(items), problems, warnings, labelled
    boxes, found = [], []
    for patient in dict.fromkeys(p for p, _ in groups):  # the block's patients, in order
        rows = [k for k, (p, _) in enumerate(groups) if p == patient]
        patient_boxes, how = roi_boxes([raw[k][1] for k in rows], [groups[k][1] for k in rows], **roi)
        boxes.extend(patient_boxes)
        found.extend([how] * len(rows))
    images = np.zeros((len(items), size, size), np.float32)
    masks = np.zeros((len(items), size, size), np.uint8)
    headers = []
    for k, ((header, pixels, mask), box) in enumerate(zip(raw, boxes)):
        prepare_image(pixels, size, images[k], box)
        prepare_mask(mask, size, masks[k], box)
        top, left, side = box if box is not None else (0, 0, 0)
        total = int(np.count_nonzero(mask))
        kept = (int(np.count_nonzero(crop(mask, box))) / total if box is not None else 1.0) if total else np.nan
        headers.append(
            {**header, "roi": found[k], "roi_top": top, "roi_left": left, "roi_side": side, "roi_kept": kept}
        )
    outside = np.count_nonzero(~((images >= 0) & (images <= 1)), axis=(1, 2))  # NaN fails both
    for k in np.flatnonzero(outside):
        problems.append((items[k]["source"], "prepared image outside [0, 1] or not finite", "", int(outside[k])))
    if problems:  # the store's contract: nothing outside [0, 1] is written, whatever the reader gave
        return [None] * len(items), problems, warnings, labelled
    _write_rows(images_path, images_offset + start * image_bytes, images)
    _write_rows(masks_path, masks_offset + start * mask_bytes, masks)
    return headers, problems, warnings, labelled


def _blocks(sample: pd.DataFrame, workers: int, whole_patients: bool) -> list[tuple[int, int]]:
    """(start, end) row ranges of the worker tasks, in order: whole patients, packed up to a
    block of BLOCK rows (fewer when that gives under 4 blocks per worker), so that two
    workers never read the same volume; a patient with more rows than a block is cut into
    blocks, unless `whole_patients` (then each block is one patient)."""
    n = len(sample)
    patient = sample.patient.to_numpy()
    starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]]).tolist() if n else []
    spans = list(zip(starts, [*starts[1:], n]))
    if whole_patients:
        return spans
    block = max(1, min(BLOCK, -(-n // (4 * workers))))
    blocks, begin = [], 0
    for start, end in spans:
        if end - begin > block and start > begin:  # this patient does not fit: close the block before it
            blocks.append((begin, start))
            begin = start
        while end - begin > block:  # a patient larger than a block
            blocks.append((begin, begin + block))
            begin += block
    if begin < n:
        blocks.append((begin, n))
    return blocks


def prepare_store(
    sample_csv,
    out_dir,
    image_size: int,
    workers: int = 1,
    roi: dict | None = None,
    source: str = "lvsc",
    options: dict | None = None,
) -> dict:
    """Read, check and prepare every sampled image of the cohort into `out_dir`:
    images.npy (float32, N x S x S), masks.npy (uint8 0/1), index.csv (the sample with each
    image's original shape, pixel spacing, vendor and field strength, and its crop box)
    and store.json (shapes, the region of interest, sha256 of each file).

    `roi` is config `roi` ({"method": none | centre | heart, "fraction": ...}; default none);
    `source` and `options` are config `cohort.source` and `cohort` (the reader, the labels).
    Each sampled file is read once. Blocks of consecutive images go to `workers` processes
    (OpenCV at one thread each), which write their rows into the arrays; the parent hashes
    the arrays as the blocks come back. Every image that fails its checks or its decoding is
    collected and reported in one UnetcapError; nothing is left at the final names in that
    case.
    """
    from unetcap.provenance import FileHash, sha256_file, sha256_json

    roi = {"method": "none", "fraction": 1.0, **(roi or {})}
    if roi["method"] not in ROI_METHODS:
        raise UnetcapError(f"roi.method {roi['method']!r} is not one of {list(ROI_METHODS)}")
    if not 0 < roi["fraction"] <= 1:
        raise UnetcapError(f"roi.fraction must be in (0, 1], not {roi['fraction']!r}")
    roi = {"method": str(roi["method"]), "fraction": float(roi["fraction"])}
    sample = read_table(sample_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, size = len(sample), int(image_size)
    names = ("images.npy", "masks.npy", "index.csv")
    # all three renamed into place together, only when every image was prepared
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(out_dir / name)) for name in names}
        outputs = []  # (path, offset of the data, bytes per row) of the two arrays
        for name, dtype in (("images.npy", np.float32), ("masks.npy", np.uint8)):
            array = np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype, shape=(n, size, size))
            outputs.append((str(tmp[name]), array.offset, array[0].nbytes))
            del array
        items = sample[["source", "mask", "slice_label", "phase"]].to_dict("records")
        groups = list(zip(sample.patient, sample.slice))
        reading = {"source": source, "options": options}
        jobs = [
            (start, items[start:end], groups[start:end], size, roi, reading, *outputs)
            for start, end in _blocks(sample, workers, whole_patients=roi["method"] == "heart")
        ]
        problems = Problems(f"preparing {sample_csv}")
        headers, labelled = [], []
        # The arrays are hashed while the workers write them: block results come back in
        # order, and the rows before them are final.
        with (
            FileHash(outputs[0][0]) as image_hash,
            FileHash(outputs[1][0]) as mask_hash,
            opencv_threads(1) if workers > 1 else nullcontext(),
        ):
            logged = 0
            for block_headers, block_problems, warnings, block_labelled in parallel_map(_prepare_block, jobs, workers):
                for problem in block_problems:
                    problems.add(*problem)
                for warning in warnings:
                    log.warning(warning)
                headers.extend(block_headers)
                labelled.extend(block_labelled)
                if not problems.found:
                    for file_hash, (_, offset, row_bytes) in zip((image_hash, mask_hash), outputs):
                        file_hash.advance(offset + len(headers) * row_bytes)
                if len(headers) - logged >= 10 * BLOCK or len(headers) == n:
                    logged = len(headers)
                    log.info("prepared %d / %d images", len(headers), n)
            # a patient whose structure is empty in every image that could be read, in the same pass
            flags = pd.Series(labelled, index=sample.patient.to_numpy(), dtype=object)
            for patient, flag in flags.groupby(level=0, sort=False):
                read = flag.dropna()
                if len(read) and not read.astype(bool).any():
                    rows = sample.index[sample.patient == patient]
                    problems.add(
                        Path(sample.source[rows[0]]).parent,
                        f"patient {patient}: the structure (cohort.labels) is empty in every one of its "
                        f"{len(read)} {'readable ' if len(read) < len(rows) else ''}sampled images",
                    )
            problems.raise_if_any()
            found = pd.DataFrame(headers)[HEADER_COLUMNS + ROI_COLUMNS]
            if "vendor" in sample:  # a table's vendor where the image header has none
                found["vendor"] = found["vendor"].where(found["vendor"] != "", sample["vendor"].fillna(""))
            index = pd.concat([sample.drop(columns="vendor", errors="ignore"), found], axis=1)
            write_table(index, tmp["index.csv"])
            sha = {
                "images.npy": image_hash.hexdigest(),
                "masks.npy": mask_hash.hexdigest(),
                "index.csv": sha256_file(tmp["index.csv"]),
            }
    _log_roi(index, roi)
    store = {"schema": 1, "n_images": n, "image_size": size, "roi": roi, "sha256": sha, "data_sha256": sha256_json(sha)}
    write_text_atomic(out_dir / "store.json", json.dumps(store, indent=1) + "\n")
    return store


def _log_roi(index: pd.DataFrame, roi: dict) -> None:
    """One log line on the crop: how each patient's centre was found and how much of the
    myocardium the crops kept (measured on the masks after the crop was chosen)."""
    if roi["method"] == "none":
        return
    how = index.groupby("patient")["roi"].first().value_counts().to_dict()
    kept = index["roi_kept"].dropna()
    cut = kept[kept < 1]
    log.info(
        "region of interest %s, fraction %.3g: patients by centre %s; myocardium kept in the crop: "
        "%d of %d images whole%s",
        roi["method"],
        roi["fraction"],
        how,
        len(kept) - len(cut),
        len(kept),
        f", the others {cut.min():.1%} to {cut.max():.1%}" if len(cut) else "",
    )


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
    missing = [f"{store}: missing field {key}" for key in ("n_images", "image_size", "data_sha256") if key not in meta]
    if missing:
        raise UnetcapError("; ".join(missing))
    n, s = int(meta["n_images"]), int(meta["image_size"])
    try:
        image_array = np.load(images, mmap_mode="r")
        mask_array = np.load(masks, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise UnetcapError(f"cannot read the prepared arrays {images}, {masks}: {err}") from None
    problems = [
        f"{path}: {array.dtype} {array.shape}, but {store} says {np.dtype(dtype)} {(n, s, s)} (rerun the prepare rule)"
        for path, array, dtype in ((images, image_array, np.float32), (masks, mask_array, np.uint8))
        if array.shape != (n, s, s) or array.dtype != dtype
    ]
    if problems:
        raise UnetcapError("; ".join(problems))
    return image_array, mask_array, meta
