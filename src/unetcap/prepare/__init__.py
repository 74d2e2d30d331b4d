"""The prepared store (stage 2): every sampled image resized to a square float32 array in
[0, 1], with its binary mask, written into four files: images.npy, masks.npy, index.csv and
store.json (docs/contracts.md).

What happens to each image (rescaling, resizing, padding, the region of interest) is in
the module `image`; its functions are importable from here too. Here the sampled images
are read in worker processes, their rows written into the arrays, the store's contract
checked, the files hashed and the index and store.json written, each at the path the
prepare rule names (`store_paths` gives the usual names in one folder); `load_store` opens
a store again.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from unetcap import UnetcapError, schema
from unetcap.cohort import HEADER_COLUMNS, FileProblem, read_labelled
from unetcap.common import Problems, atomic_path, parallel_map, read_table, write_table, write_text_atomic
from unetcap.prepare.image import (
    ROI_METHODS,
    commonest_shape,
    crop,
    heart_centre,
    interpolation,
    prepare_image,
    prepare_mask,
    rescale,
    resize_pad,
    roi_box,
    roi_boxes,
)
from unetcap.provenance import FileHash, sha256_file, sha256_json

__all__ = [
    "BLOCK",
    "ROI_COLUMNS",
    "ROI_METHODS",
    "STORE_FILES",
    "StorePaths",
    "commonest_shape",
    "crop",
    "heart_centre",
    "interpolation",
    "load_store",
    "opencv_threads",
    "prepare_image",
    "prepare_mask",
    "prepare_store",
    "preparation",
    "rescale",
    "resize_pad",
    "roi_box",
    "roi_boxes",
    "store_paths",
]

log = logging.getLogger(__name__)

BLOCK = 100  # most images per task of a worker: one write per array and block
# The store's files under the names the workflow gives them; store.json's sha256 keys.
STORE_FILES = ("images.npy", "masks.npy", "index.csv", "store.json")


class StorePaths(NamedTuple):
    """Where the four files of a prepared store are (the prepare rule's named outputs)."""

    images: Path
    masks: Path
    index: Path
    store: Path


def store_paths(folder) -> StorePaths:
    """The four files of a prepared store kept in `folder` under the workflow's names
    (STORE_FILES): what `prepare_store` writes when given a folder's worth of paths."""
    folder = Path(folder)
    return StorePaths(*(folder / name for name in STORE_FILES))


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
    images,
    masks,
    index,
    store,
    image_size: int,
    workers: int = 1,
    roi: dict | None = None,
    source: str = "lvsc",
    options: dict | None = None,
) -> dict:
    """Read, check and prepare every sampled image of the cohort into the store's four files,
    each written exactly at the path given (the prepare rule's named outputs; `store_paths`
    gives them for one folder): `images` (float32, N x S x S), `masks` (uint8 0/1), `index`
    (the sample with each image's original shape, pixel spacing, vendor and field strength,
    and its crop box) and `store` (store.json: shapes, the region of interest, sha256 of each
    file). Returns store.json's content.

    `roi` is config `roi` ({"method": none | centre | heart, "fraction": ...}; default none);
    `source` and `options` are config `cohort.source` and `cohort` (the reader, the labels).
    Each sampled file is read once. Blocks of consecutive images go to `workers` processes
    (OpenCV at one thread each), which write their rows into the arrays; the parent hashes
    the arrays as the blocks come back. Every image that fails its checks or its decoding is
    collected and reported in one UnetcapError; nothing is left at the final names in that
    case.
    """
    roi = _roi_settings(roi)
    sample = read_table(sample_csv)
    n, size = len(sample), int(image_size)
    # all three renamed into place together, only when every image was prepared
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(path)) for name, path in zip(STORE_FILES, (images, masks, index))}
        arrays = _open_arrays(tmp, n, size)
        jobs = _jobs(sample, size, roi, {"source": source, "options": options}, arrays, workers)
        problems = Problems(f"preparing {sample_csv}")
        # The arrays are hashed while the workers write them: block results come back in
        # order, and the rows before them are final.
        with (
            FileHash(arrays[0][0]) as image_hash,
            FileHash(arrays[1][0]) as mask_hash,
            opencv_threads(1) if workers > 1 else nullcontext(),
        ):
            headers, labelled = _run_blocks(jobs, workers, problems, arrays, (image_hash, mask_hash), n)
            _empty_patients(sample, labelled, problems)  # in the same pass
            problems.raise_if_any()
            table = _index_table(sample, headers)
            write_table(table, tmp["index.csv"])
            sha = {
                "images.npy": image_hash.hexdigest(),
                "masks.npy": mask_hash.hexdigest(),
                "index.csv": sha256_file(tmp["index.csv"]),
            }
    _log_roi(table, roi)
    meta = {"schema": 1, "n_images": n, "image_size": size, "roi": roi, "sha256": sha, "data_sha256": sha256_json(sha)}
    write_text_atomic(store, json.dumps(meta, indent=1) + "\n")
    return meta


def _roi_settings(roi: dict | None) -> dict:
    """Config `roi`, checked against the schema, with its defaults for what is not given (as
    the workflow hands it over)."""
    roi = schema.validated(roi, "roi")
    return {"method": str(roi["method"]), "fraction": float(roi["fraction"])}


def _open_arrays(tmp: dict, n: int, size: int) -> list[tuple[str, int, int]]:
    """Create the two .npy files at their temporary names `tmp` (by STORE_FILES name), n x size
    x size each; returns (path, offset of the data, bytes per row) of each, for the workers'
    positioned writes."""
    arrays = []
    for name, dtype in (("images.npy", np.float32), ("masks.npy", np.uint8)):
        array = np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype, shape=(n, size, size))
        arrays.append((str(tmp[name]), array.offset, array[0].nbytes))
        del array
    return arrays


def _jobs(sample: pd.DataFrame, size: int, roi: dict, reading: dict, arrays: list, workers: int) -> list[tuple]:
    """The workers' tasks, one per block of rows (`_blocks`), as `_prepare_block` takes them."""
    items = sample[["source", "mask", "slice_label", "phase"]].to_dict("records")
    groups = list(zip(sample.patient, sample.slice))
    return [
        (start, items[start:end], groups[start:end], size, roi, reading, *arrays)
        for start, end in _blocks(sample, workers, whole_patients=roi["method"] == "heart")
    ]


def _run_blocks(jobs, workers: int, problems: Problems, arrays: list, hashes: tuple, n: int) -> tuple[list, list]:
    """Run the blocks in `workers` processes, in order: their problems into `problems`, their
    warnings and the progress to the log, and, while nothing has failed, the `hashes` of the
    two arrays advanced over the rows written so far. Returns (each image's header fields,
    whether its structure is non-empty), in store order."""
    headers, labelled = [], []
    logged = 0
    for block_headers, block_problems, warnings, block_labelled in parallel_map(_prepare_block, jobs, workers):
        for problem in block_problems:
            problems.add(*problem)
        for warning in warnings:
            log.warning(warning)
        headers.extend(block_headers)
        labelled.extend(block_labelled)
        if not problems.found:
            for file_hash, (_, offset, row_bytes) in zip(hashes, arrays):
                file_hash.advance(offset + len(headers) * row_bytes)
        if len(headers) - logged >= 10 * BLOCK or len(headers) == n:
            logged = len(headers)
            log.info("prepared %d / %d images", len(headers), n)
    return headers, labelled


def _empty_patients(sample: pd.DataFrame, labelled: list, problems: Problems) -> None:
    """A problem for each patient whose structure is empty in every image that could be read
    (`labelled`: per image True, False, or None where it could not be read)."""
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


def _index_table(sample: pd.DataFrame, headers: list[dict]) -> pd.DataFrame:
    """The store's index: the sample (without its vendor) and each image's header fields and
    crop box, the vendor from the header, else from the sample's table."""
    found = pd.DataFrame(headers)[HEADER_COLUMNS + ROI_COLUMNS]
    if "vendor" in sample:  # a table's vendor where the image header has none
        found["vendor"] = found["vendor"].where(found["vendor"] != "", sample["vendor"].fillna(""))
    return pd.concat([sample.drop(columns="vendor", errors="ignore"), found], axis=1)


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
