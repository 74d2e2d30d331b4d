"""NIfTI volumes as the cohort readers use them (ACDC, M&Ms, 2-D NIfTI in `folders`).

An image is one slice of a volume: `slice_label` is its index along the third axis, and
`phase` its frame along the fourth when the volume has one. The 2-D array is the volume's
first two axes as stored (rows = first axis), for the image and its labels alike, so both
stay aligned whatever the orientation. Slice positions come from the affine: the origin of
slice k projected on the slice normal (the cross product of the in-plane axes), in mm, so
the slice order never depends on file names or on the direction the slices were stored in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Volume:
    """What a NIfTI header says, without the voxels."""

    path: Path
    shape: tuple[int, ...]
    positions: tuple[float, ...]  # per slice (third axis), mm along the slice normal
    spacing: tuple[float, float]  # in-plane: first axis, second axis (mm)


def read_volume_header(path) -> Volume:
    """The header of a .nii / .nii.gz file; ValueError with a readable reason when it is not one."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises many kinds on corrupt files
        raise ValueError(f"not a readable NIfTI file ({type(err).__name__}: {err})") from None
    shape = tuple(int(n) for n in image.shape)
    if len(shape) < 2:
        raise ValueError(f"NIfTI of shape {shape}: not an image")
    affine = np.asarray(image.affine, dtype=float)
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    norm = float(np.linalg.norm(normal))
    normal = normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
    depth = shape[2] if len(shape) > 2 else 1
    positions = tuple(float((affine[:3, :3] @ [0.0, 0.0, k] + affine[:3, 3]) @ normal) for k in range(depth))
    zooms = image.header.get_zooms()
    return Volume(Path(path), shape, positions, (float(zooms[0]), float(zooms[1])))


@lru_cache(maxsize=4)
def read_voxels(path: str) -> np.ndarray:
    """All voxels of a volume (scaled as the header says), cached: a patient's sampled images
    are prepared one after another, so each volume is decompressed once."""
    import nibabel as nib

    try:
        return np.asanyarray(nib.load(path).dataobj)
    except Exception as err:
        raise ValueError(f"cannot read the NIfTI voxels ({type(err).__name__}: {err})") from None


def plane(path, slice_index: int, frame: int) -> np.ndarray:
    """The 2-D image of slice `slice_index` (and `frame`, for a 4-D volume) of a volume."""
    voxels = read_voxels(str(path))
    if voxels.ndim == 2:
        return voxels
    if voxels.ndim == 3:
        return voxels[:, :, slice_index]
    if voxels.ndim == 4:
        return voxels[:, :, slice_index, frame]
    if voxels.ndim == 5 and voxels.shape[4] == 1:
        return voxels[:, :, slice_index, frame, 0]
    raise ValueError(f"NIfTI of shape {voxels.shape}: expected 2 to 4 dimensions")


def load_slice(row, volume_header: Volume | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, pixels, labels) of the sampled slice `row` (source and mask volumes)."""
    header = volume_header or read_volume_header(row["source"])
    z, t = int(row["slice_label"]), int(row["phase"])
    pixels = plane(row["source"], z, t)
    labels = plane(row["mask"], z, t)
    if not np.all(np.isfinite(labels)):
        raise ValueError(f"labels of {row['mask']} are not all finite")
    return ({"rows": pixels.shape[0], "cols": pixels.shape[1], "spacing_row": header.spacing[0],
             "spacing_col": header.spacing[1], "vendor": "", "field_strength": float("nan")},
            pixels, np.rint(labels).astype(np.int16))


def labelled_frames(path) -> list[int]:
    """The frames (fourth axis) of a 4-D label volume that hold any label."""
    voxels = read_voxels(str(path))
    if voxels.ndim < 4:
        return [0] if np.any(voxels) else []
    return [t for t in range(voxels.shape[3]) if np.any(voxels[:, :, :, t])]
