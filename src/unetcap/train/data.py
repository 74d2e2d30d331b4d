"""The arrays of one run, and the batches an epoch feeds the network.

No TensorFlow here: batches and augmentation are numpy (and OpenCV for rotations), drawn
from generators seeded by (run seed, epoch), so a resumed run draws what an uninterrupted
one would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unetcap import UnetcapError
from unetcap.prepare import load_store, preparation
from unetcap.splits import fold_indices, holdout_patients, read_manifest
from unetcap.train.settings import Augment


@dataclass
class RunData:
    """The arrays of one run: images (n, S, S, 1) float32 and masks (n, S, S, 1) uint8, with
    the store rows of the test images; and the holdout pool, (patient, store rows) read
    from the memory-mapped store (`store_images`, `store_masks`) patient by patient when
    it is scored."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_rows: np.ndarray
    image_size: int
    data_sha256: str
    preparation: dict
    holdout: list = field(default_factory=list)  # [(patient, store rows)]
    repeat: int = 0  # the draw of development patients the fold belongs to
    store_images: np.ndarray | None = None
    store_masks: np.ndarray | None = None

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.x_train),
            "val": len(self.x_val),
            "test": len(self.x_test),
            "holdout": sum(len(rows) for _, rows in self.holdout),
        }

    def holdout_arrays(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, S, S, 1) float32 and masks (n, S, S, 1) uint8 of store rows."""
        idx = np.asarray(rows, dtype=np.int64)
        x = np.ascontiguousarray(self.store_images[idx], dtype=np.float32)[..., None]
        return x, np.ascontiguousarray(self.store_masks[idx], dtype=np.uint8)[..., None]


def load_run_data(images, masks, store, manifest, size: int, fold: int) -> RunData:
    """The train, val and test arrays of one fold of one dataset size, read from the
    prepared store and the split manifest (docs/contracts.md), checked before training:
    shapes against store.json, the manifest's size and rows, images finite in [0, 1],
    masks 0/1. Raises one UnetcapError naming the file and what is wrong."""
    image_array, mask_array, meta = load_store(store, images, masks)
    n, s = int(meta["n_images"]), int(meta["image_size"])
    problems = []
    if s % 32:
        problems.append(
            f"{store}: image_size {s} is not a multiple of 32, which the U-Net "
            "needs (it halves the image 5 times): set image_size to one"
        )
    plan = read_manifest(manifest)
    if plan.get("size") != size:
        problems.append(f"{manifest}: manifest of size {plan.get('size')}, the run asks for size {size}")
    if problems:
        raise UnetcapError("; ".join(problems))
    try:
        rows = fold_indices(plan, fold)
        holdout = holdout_patients(plan)
    except (KeyError, TypeError) as err:
        raise UnetcapError(f"{manifest}: malformed split manifest ({err!r})") from None
    except UnetcapError as err:
        raise UnetcapError(f"{manifest}: {err}") from None
    for part, idx in rows.items():
        outside = [i for i in idx if not 0 <= i < n]
        if outside:
            problems.append(f"{manifest}: {part} rows {outside[:5]} are outside the store's 0..{n - 1}")
        if not idx:
            problems.append(f"{manifest}: fold {fold} has no {part} images")
    if problems:
        raise UnetcapError("; ".join(problems))
    arrays = {}
    for part, idx in rows.items():
        idx = np.asarray(idx, dtype=np.int64)
        if part == "holdout":  # checked here, read again patient by patient when scored
            for start in range(0, len(idx), 256):
                _check_arrays(image_array, mask_array, idx[start : start + 256], images, masks, problems)
            continue
        x, y = _check_arrays(image_array, mask_array, idx, images, masks, problems)
        arrays[part] = (x[..., None], y[..., None])
    if problems:
        raise UnetcapError("; ".join(problems))
    return RunData(
        *arrays["train"],
        *arrays["val"],
        *arrays["test"],
        test_rows=np.asarray(rows["test"], dtype=np.int64),
        image_size=s,
        data_sha256=str(meta["data_sha256"]),
        preparation=preparation(meta),
        holdout=holdout,
        repeat=fold // int(plan["folds"]),
        store_images=image_array,
        store_masks=mask_array,
    )


def _check_arrays(image_array, mask_array, idx, images, masks, problems: list) -> tuple[np.ndarray, np.ndarray]:
    """The store's rows `idx` as float32 images and uint8 masks; rows whose images are not
    finite values in [0, 1], or whose masks are not 0/1, added to `problems`."""
    x = np.ascontiguousarray(image_array[idx], dtype=np.float32)
    y = np.ascontiguousarray(mask_array[idx], dtype=np.uint8)
    bad_x = ~np.isfinite(x).all(axis=(1, 2)) | (x.min(axis=(1, 2)) < 0) | (x.max(axis=(1, 2)) > 1)
    if bad_x.any():
        problems.append(f"{images}: rows {idx[bad_x][:5].tolist()} are not finite values in [0, 1]")
    bad_y = y.max(axis=(1, 2)) > 1
    if bad_y.any():
        problems.append(f"{masks}: rows {idx[bad_y][:5].tolist()} are not 0/1 masks")
    return x, y


def epoch_batches(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The batches of one epoch, as sorted row numbers of the training set.

    steps 0 (the paper's epoch): one pass over the n images in the order `rng` shuffles them,
    the last batch smaller when batch_size does not divide n. steps > 0: that many batches
    of batch_size images drawn uniformly with replacement (as nnU-Net does), so an epoch is
    the same number of optimizer steps whatever the subset's size."""
    if steps:
        return [np.sort(b) for b in rng.integers(0, n, size=(steps, batch_size))]
    order = rng.permutation(n)
    return [np.sort(order[start : start + batch_size]) for start in range(0, n, batch_size)]


def augment_batch(
    x: np.ndarray, y: np.ndarray, augment: Augment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A randomly changed copy of a batch (images (b, S, S, 1) float32 in [0, 1], masks
    (b, S, S, 1)); see `Augment`. Draws the same numbers from `rng` whatever the images."""
    import cv2

    x, y = x.copy(), y.copy()
    b, s = len(x), x.shape[1]
    flips = rng.random((b, 2)) < 0.5
    angles = rng.uniform(-augment.rotate, augment.rotate, b)
    gamma = np.exp(rng.uniform(-augment.intensity, augment.intensity, b))
    gain = 1 + rng.uniform(-augment.intensity, augment.intensity, b)
    for i in range(b):
        if augment.flip:
            for axis in (0, 1):
                if flips[i, axis]:
                    x[i], y[i] = np.flip(x[i], axis), np.flip(y[i], axis)
        if augment.rotate > 0:
            turn = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), float(angles[i]), 1.0)
            x[i, ..., 0] = cv2.warpAffine(
                x[i, ..., 0], turn, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            y[i, ..., 0] = cv2.warpAffine(
                y[i, ..., 0], turn, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
    if augment.intensity > 0:
        np.power(np.clip(x, 0, 1), gamma[:, None, None, None].astype(np.float32), out=x)
        x *= gain[:, None, None, None].astype(np.float32)
    np.clip(x, 0, 1, out=x)
    return x, y


def segmentation_rows(test_rows: np.ndarray, count: int, seed: int, size: int) -> np.ndarray:
    """The store rows of the test images whose segmentations a run keeps: `count` of the
    subset's test images drawn by (config seed, size), in store order. Every run of a size
    keeps the same images."""
    test_rows = np.sort(np.asarray(test_rows, dtype=np.int64))
    count = min(count, len(test_rows))
    return np.sort(np.random.default_rng([seed, size]).choice(test_rows, count, replace=False))
