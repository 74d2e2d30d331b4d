"""NIfTI volumes as the cohort readers use them (ACDC, M&Ms, 2-D NIfTI in `folders`).

An image is one slice of a volume: `slice_label` is its index along the third axis, and
`phase` its frame along the fourth when the volume has one. The 2-D array is the volume's
first two axes as stored (rows = first axis), for the image and its labels alike, so both
stay aligned whatever the orientation. Slice positions come from the affine: the origin of
slice k projected on the slice normal (the cross product of the in-plane axes), in mm, so
the slice order never depends on file names or on the direction the slices were stored in.

Headers are parsed with nibabel's NIfTI-1 and NIfTI-2 header classes directly
(``nib.load`` would first sniff every image class it knows, reading the header again for
each): the header alone when the cohort is scanned; when its slices are prepared, the
whole file is read and decompressed in one go and the voxels are taken from its bytes as
the header says (offset, data type, byte order, scaling by nibabel's own
``apply_read_scaling``), without building a nibabel image, which costs as much again as
the decompression.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from unetcap.cohort import blame, integer_labels

NIFTI2_SIZES = (540, 0x1C020000)  # a NIfTI-2 header's first field (sizeof_hdr), in either byte order


@dataclass(frozen=True)
class Volume:
    """What a NIfTI header says, without the voxels."""

    path: Path
    shape: tuple[int, ...]
    positions: tuple[float, ...]  # per slice (third axis), mm along the slice normal
    spacing: tuple[float, float]  # in-plane: first axis, second axis (mm)


def _image_class(head: bytes):
    """nibabel's NIfTI-1 or NIfTI-2 image class, from a file's first four bytes."""
    import nibabel as nib

    size = struct.unpack("<i", head[:4])[0] if len(head) >= 4 else 0
    return nib.Nifti2Image if size in NIFTI2_SIZES else nib.Nifti1Image


def _compressed(path) -> bool:
    return str(path).lower().endswith(".gz")


def _volume(path, header) -> Volume:
    """The Volume a NIfTI header describes; ValueError when it is not an image."""
    shape = tuple(int(n) for n in header.get_data_shape())
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"NIfTI of shape {shape}: not an image")
    dtype = header.get_data_dtype()
    if dtype.kind not in "biuf":
        raise ValueError(f"NIfTI of data type {dtype}: voxels that are not real numbers")
    affine = np.asarray(header.get_best_affine(), dtype=float)
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    norm = float(np.linalg.norm(normal))
    normal = normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
    depth = shape[2] if len(shape) > 2 else 1
    origin, step = float(affine[:3, 3] @ normal), float(affine[:3, 2] @ normal)
    positions = tuple(origin + k * step for k in range(depth))
    if not all(map(math.isfinite, positions)):
        raise ValueError("slice positions that are not finite numbers (the header's pixdim, qform or sform)")
    zooms = header.get_zooms()
    return Volume(Path(path), shape, positions, (float(zooms[0]), float(zooms[1])))


def read_volume_header(path) -> Volume:
    """The header of a .nii / .nii.gz file (only the header is read); ValueError with a
    readable reason when it is not one."""
    try:
        with (gzip.open if _compressed(path) else open)(path, "rb") as f:
            header_class = _image_class(f.read(4)).header_class
            f.seek(0)
            header = header_class.from_fileobj(f)
    except Exception as err:  # nibabel and gzip raise many kinds on corrupt files
        raise ValueError(f"not a readable NIfTI file ({type(err).__name__}: {err})") from None
    return _volume(path, header)


@lru_cache(maxsize=4)
def read_volume(path: str) -> tuple[Volume, np.ndarray]:
    """(header, all voxels scaled as the header says) of a volume, from one read of the
    file; cached: a patient's sampled images are prepared one after another, so each volume
    is read and decompressed once. The voxels are a read-only view of the file's bytes."""
    from nibabel.volumeutils import apply_read_scaling

    try:
        data = Path(path).read_bytes()
        if _compressed(path):
            data = gzip.decompress(data)
        header = _image_class(data).header_class.from_fileobj(io.BytesIO(data))
        shape = header.get_data_shape()
        voxels = np.frombuffer(data, header.get_data_dtype(), math.prod(shape), int(header.get_data_offset())).reshape(
            shape, order="F"
        )
        voxels = apply_read_scaling(voxels, *header.get_slope_inter())
    except Exception as err:
        raise ValueError(f"cannot read the NIfTI voxels ({type(err).__name__}: {err})") from None
    return _volume(path, header), voxels


def read_voxels(path) -> np.ndarray:
    """All voxels of a volume (`read_volume`'s, cached)."""
    return read_volume(str(path))[1]


def plane(voxels: np.ndarray, slice_index: int, frame: int) -> np.ndarray:
    """The 2-D image of slice `slice_index` (and `frame`, for a 4-D volume) of a volume's voxels."""
    if voxels.ndim == 2:
        return voxels
    if voxels.ndim == 3:
        return voxels[:, :, slice_index]
    if voxels.ndim == 4:
        return voxels[:, :, slice_index, frame]
    if voxels.ndim == 5 and voxels.shape[4] == 1:
        return voxels[:, :, slice_index, frame, 0]
    raise ValueError(f"NIfTI of shape {voxels.shape}: expected 2 to 4 dimensions")


def load_slice(row) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, pixels, labels) of the sampled slice `row` (source and mask volumes)."""
    volume, voxels = read_volume(str(row["source"]))
    z, t = int(row["slice_label"]), int(row["phase"])
    pixels = plane(voxels, z, t)
    with blame(row["mask"]):
        labels = integer_labels(plane(read_voxels(row["mask"]), z, t), np.int16, f"slice {z}, frame {t}")
    return (
        {
            "rows": pixels.shape[0],
            "cols": pixels.shape[1],
            "spacing_row": volume.spacing[0],
            "spacing_col": volume.spacing[1],
            "vendor": "",
            "field_strength": float("nan"),
        },
        pixels,
        labels,
    )


def labelled_frames(path) -> list[int]:
    """The frames (fourth axis) of a 4-D label volume that hold any label."""
    voxels = read_voxels(path)
    if voxels.ndim < 4:
        return [0] if np.any(voxels) else []
    return [t for t in range(voxels.shape[3]) if np.any(voxels[:, :, :, t])]
