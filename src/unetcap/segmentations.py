"""Predicted segmentations kept for looking at: a few test images per run, all runs merged.

A run keeps `segmentations.npz` beside its metrics.json: the store rows of its kept test
images (`unetcap.train.data.segmentation_rows`: the same images for every run of a size),
each image's predicted mask (p > 0.5, the rounding of DICE) and its own DICE. The merge
writes `results/<study>/segmentations.npz`: every run's kept segmentations with its run columns, and
each kept image once, with its true mask, from the prepared store, so that the figure
rebuilds from the merged files alone.

Masks are stored bit-packed (numpy packbits over each image's pixels) and the files
compressed: 4 images at 256 px cost about 2 kB a run.
"""

from __future__ import annotations

import io

import numpy as np

from unetcap import UnetcapError
from unetcap.common import write_bytes_atomic
from unetcap.metrics import read_metrics
from unetcap.prepare import load_store
from unetcap.scoring import dice

RUN_KEYS = ("size", "backbone", "lr", "reg", "fold")


def _save(path, **arrays) -> None:
    """np.savez_compressed, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _pack(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks).astype(bool)
    return np.packbits(masks.reshape(len(masks), -1), axis=1)


def _unpack(packed: np.ndarray, size: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=size * size).reshape(-1, size, size).astype(bool)


def write_run_segmentations(path, rows, truth, probability) -> None:
    """A run's kept segmentations: `rows` (store rows), `truth` masks and `probability` maps
    (n, S, S) of those images; stores the predicted masks and each image's DICE."""
    probability = np.asarray(probability).reshape(len(rows), *np.shape(probability)[1:3])
    truth = np.asarray(truth).reshape(probability.shape)
    predicted = np.rint(probability) >= 1  # DICE's rounding
    size = probability.shape[1] if len(rows) else 0
    _save(
        path,
        rows=np.asarray(rows, np.int64),
        size=np.int64(size),
        predicted=_pack(predicted),
        dice=np.array([dice(t, p) for t, p in zip(truth, probability)], np.float64),
    )


def read_run_segmentations(path) -> dict:
    """{"rows", "predicted" (n, S, S) bool, "dice"} of a run's segmentations.npz."""
    try:
        with np.load(path, allow_pickle=False) as data:
            size = int(data["size"])
            return {"rows": data["rows"], "predicted": _unpack(data["predicted"], size), "dice": data["dice"]}
    except (OSError, ValueError, KeyError) as err:
        raise UnetcapError(f"{path}: cannot read the run's segmentations ({err}); rerun the run") from None


def merge_segmentations(paths, metrics_paths, store, out) -> None:
    """results/<study>/segmentations.npz from every run's segmentations.npz (`paths[i]` belongs to
    the run of `metrics_paths[i]`, its metrics.json), with the kept images and true masks
    from the prepared `store` (store.json)."""
    if len(paths) != len(metrics_paths):
        raise UnetcapError(f"merge: {len(metrics_paths)} metrics files but {len(paths)} segmentations")
    runs = [read_metrics(p)["run"] for p in metrics_paths]
    images, masks, _ = load_store(store)
    write_segmentations(out, runs, [read_run_segmentations(p) for p in paths], images, masks)


def write_segmentations(out, runs: list[dict], kept: list[dict], images, masks) -> None:
    """The merged file from each run's columns (`runs[i]`, with RUN_KEYS) and kept
    segmentations (`kept[i]`, as `read_run_segmentations` gives them), and the store's
    `images` and `masks` (N x S x S, indexed by store row). Arrays: size, backbone, lr, reg,
    fold, rows (runs x k, -1 where a run kept fewer), dice, predicted (runs x k, packed),
    image_rows, image (uint8, 0-255), truth (packed), image_size."""
    s = int(np.shape(images)[1])
    k = max((len(r["rows"]) for r in kept), default=0)
    rows = np.full((len(kept), k), -1, np.int64)
    dices = np.full((len(kept), k), np.nan)
    predicted = np.zeros((len(kept), k, -(-s * s // 8)), np.uint8)
    for i, r in enumerate(kept):
        n = len(r["rows"])
        rows[i, :n], dices[i, :n] = r["rows"], r["dice"]
        if n:
            predicted[i, :n] = _pack(r["predicted"])
    image_rows = np.unique(rows[rows >= 0])
    image = np.rint(np.asarray(images[image_rows], np.float32) * 255).astype(np.uint8)
    truth = _pack(np.asarray(masks[image_rows]))
    columns = {key: np.array([run[key] for run in runs]) for key in RUN_KEYS}
    _save(
        out,
        **columns,
        rows=rows,
        dice=dices,
        predicted=predicted,
        image_rows=image_rows,
        image=image,
        truth=truth,
        image_size=np.int64(s),
    )


def read_segmentations(path) -> dict:
    """The merged segmentations: the run columns (RUN_KEYS), "rows", "dice", "predicted"
    (runs x k x S x S bool), and "images": {row: (image float in [0, 1], true mask)}."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise UnetcapError(f"{path}: cannot read the merged segmentations ({err})") from None
    missing = [
        key
        for key in (*RUN_KEYS, "rows", "dice", "predicted", "image_rows", "image", "truth", "image_size")
        if key not in arrays
    ]
    if missing:
        raise UnetcapError(f"{path}: missing arrays {missing} (rerun the merge rule)")
    s = int(arrays["image_size"])
    runs, k = arrays["rows"].shape
    predicted = (
        _unpack(arrays["predicted"].reshape(runs * k, -1), s).reshape(runs, k, s, s)
        if k
        else np.zeros((runs, 0, s, s), bool)
    )
    truth = _unpack(arrays["truth"], s)
    images = {int(row): (arrays["image"][i] / 255.0, truth[i]) for i, row in enumerate(arrays["image_rows"])}
    return {
        **{key: arrays[key] for key in RUN_KEYS},
        "rows": arrays["rows"],
        "dice": arrays["dice"],
        "predicted": predicted,
        "images": images,
    }
