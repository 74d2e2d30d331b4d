"""Format `acdc`: the ACDC challenge cohort (Bernard et al. 2018), exactly as distributed.

One folder per patient, ``patientNNN/``, holding ``Info.cfg`` (``ED: 1``, ``ES: 12``,
``Group: DCM``, ``Height``, ``Weight``, ``NbFrame``), the 3-D volume of each labelled frame
``patientNNN_frameFF.nii.gz`` and its labels ``patientNNN_frameFF_gt.nii.gz`` (0
background, 1 RV cavity, 2 myocardium, 3 LV cavity), and the 4-D cine
``patientNNN_4d.nii.gz``, which is not used. A labelled image is one slice of a frame with
a label volume (ED and ES); slice order and spacing come from the NIfTI header and affine
(`unetcap.cohort.nifti`), never from file names. The Group (pathology) goes into the
sample and the store's index.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from unetcap.cohort import Patient, order_images
from unetcap.cohort.lvsc import patient_folders
from unetcap.cohort.nifti import load_slice, read_volume_header

log = logging.getLogger(__name__)

DEFAULT_LABELS = [2]  # myocardium
LABEL_VALUES = (0, 1, 2, 3)  # background, RV cavity, myocardium, LV cavity
FRAME = re.compile(r"^(?P<patient>.+)_frame(?P<frame>\d+)_gt\.nii(\.gz)?$", re.IGNORECASE)
IMAGE = re.compile(r"^(?P<patient>.+)_frame(?P<frame>\d+)\.nii(\.gz)?$", re.IGNORECASE)


def read_info(path: Path) -> dict[str, str]:
    """The ``key: value`` lines of an Info.cfg."""
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def patients(root: Path, options: dict) -> list[Patient]:
    """One patient per sub-folder of `root` (``patientNNN``), with its Info.cfg's Group
    (a missing Group is warned about, naming the patient)."""
    found, ungrouped = [], []
    for folder in patient_folders(root, example="patient001/"):
        cfg = folder / "Info.cfg"
        group = read_info(cfg).get("Group", "") if cfg.is_file() else ""
        if cfg.is_file() and not group:
            ungrouped.append(folder.name)
        found.append(Patient(folder.name, folder, group=group))
    if ungrouped:
        log.warning(
            "%d patient(s) without a Group in Info.cfg (their group is left empty): %s",
            len(ungrouped),
            ", ".join(ungrouped[:20]) + (" ..." if len(ungrouped) > 20 else ""),
        )
    return found


def info_problems(cfg: Path, images: dict[int, Path], labels: dict[int, Path]) -> list[tuple[Path, str]]:
    """What is wrong with an Info.cfg, by key: ED and ES must be frame numbers whose volume
    (`images`, by frame) and label volume (`labels`) exist."""
    info, problems = read_info(cfg), []
    for key in ("ED", "ES"):
        value = info.get(key, "")
        if not value.isdecimal():  # what int() reads ('²' is a digit, not a decimal)
            what = f"is {value!r}, not a frame number" if value else "is missing"
            problems.append((cfg, f"key {key} {what} (ACDC's Info.cfg names the ED and ES frames, e.g. '{key}: 1')"))
        elif int(value) not in images:
            problems.append((cfg, f"key {key}: frame {int(value)} has no image volume (_frame{int(value):02d}.nii.gz)"))
        elif int(value) not in labels:
            problems.append(
                (cfg, f"key {key}: frame {int(value)} has no labels ({images[int(value)].name} without its _gt)")
            )
    return problems


def images(patient: Patient, options: dict):
    """Every slice of every frame with a label volume, in study order; Info.cfg's ED and ES
    frames must have both volumes."""
    problems, found = [], []
    volumes = {}
    for path in patient.folder.iterdir():
        match = IMAGE.match(path.name)
        if match:
            volumes[int(match["frame"])] = path
    gts = {int(m["frame"]): p for p in patient.folder.iterdir() if (m := FRAME.match(p.name))}
    cfg = patient.folder / "Info.cfg"
    if not cfg.is_file():
        problems.append((patient.folder, "no Info.cfg (ACDC layout: patientNNN/Info.cfg)"))
    else:
        problems.extend(info_problems(cfg, volumes, gts))
    for gt in sorted(gts.values()):
        match = FRAME.match(gt.name)
        suffix = gt.name[match.end("frame") :].replace("_gt", "", 1)
        image = gt.with_name(gt.name[: match.end("frame")] + suffix)
        if not image.is_file():
            problems.append((gt, f"labels without their image (expected {image.name} beside them)"))
            continue
        try:
            volume = read_volume_header(image)
        except ValueError as err:
            problems.append((image, str(err)))
            continue
        try:
            labels = read_volume_header(gt)
        except ValueError as err:
            problems.append((gt, str(err)))
            continue
        extra = [v for v in (volume, labels) if len(v.shape) != 3 and v.shape[3:] != (1,)]
        if extra:
            problems.extend(
                (v.path, f"a {len(v.shape)}-D volume of shape {v.shape} where ACDC has 3-D frames") for v in extra
            )
            continue
        if volume.shape[:3] != labels.shape[:3]:
            problems.append((gt, f"labels of shape {labels.shape} but the image is {volume.shape}"))
            continue
        frame = int(match["frame"])
        found.extend((position, z, frame, str(image), str(gt)) for z, position in enumerate(volume.positions))
    if not found and not problems:
        problems.append((patient.folder, "no labelled frames (patientNNN_frameFF_gt.nii.gz)"))
    return order_images(found), problems


def load(row, options: dict):
    """(header, pixels, labels) of one sampled slice."""
    return load_slice(row)
