"""What the prepare stage does to one image: its intensities rescaled to [0, 1], resized and
zero padded to a square, optionally cropped first to a region of interest; its mask alike.

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

Plain functions of arrays, no files: the package (`unetcap.prepare`) writes the store
with them.
"""

from __future__ import annotations

import numpy as np

from unetcap import schema


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
ROI_METHODS = schema.allowed("roi", "method")


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
