"""Format `mnms`: the M&Ms (Campello et al. 2021) and M&Ms-2 cohorts, exactly as distributed.

One folder per patient, named by its code. M&Ms: ``<code>/<code>_sa.nii.gz`` (4-D cine)
and ``<code>_sa_gt.nii.gz`` (4-D, labelled at ED and ES only: 1 LV cavity, 2 myocardium,
3 RV). The labelled frames are those of the information CSV (config `cohort.info`:
``External code``, ``VendorName``, ``Centre``, ``ED``, ``ES``), which also gives vendor and
centre, or else the frames whose label volume holds any label. M&Ms-2:
``<code>/<code>_SA_ED.nii.gz`` and ``<code>_SA_ES.nii.gz`` with ``_gt`` label volumes
beside them (same labels); its CSV (``SUBJECT_CODE``, ``VENDOR``, ``DISEASE``) gives vendor
and diagnosis. Slice order and spacing come from the NIfTI header and affine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unetcap import UnetcapError
from unetcap.cohort import Patient, order_images
from unetcap.cohort.lvsc import patient_folders
from unetcap.cohort.nifti import labelled_frames, load_slice, read_volume_header

DEFAULT_LABELS = [2]  # myocardium
LABEL_VALUES = (0, 1, 2, 3)  # background, LV cavity, myocardium, RV
# Column names of the information CSVs of M&Ms and M&Ms-2, per field (first present wins).
INFO_COLUMNS = {
    "code": ("External code", "SUBJECT_CODE", "code", "patient"),
    "vendor": ("VendorName", "VENDOR", "Vendor", "vendor"),
    "centre": ("Centre", "CENTRE", "centre"),
    "group": ("Pathology", "DISEASE", "group"),
    "ED": ("ED",),
    "ES": ("ES",),
}
PHASES = ("ED", "ES")  # M&Ms-2's two labelled volumes, as phases 0 and 1


def read_information(path) -> dict[str, dict]:
    """The information CSV as {code: {vendor, centre, group, ED, ES}} (fields it lacks left out)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:  # pandas' ParserError, EmptyDataError; UnicodeDecodeError
        raise UnetcapError(f"{path}: cannot read the information CSV (config key cohort.info): {err}") from None
    table.columns = [c.strip() for c in table.columns]
    columns = {field: next((c for c in names if c in table.columns), None) for field, names in INFO_COLUMNS.items()}
    if columns["code"] is None:
        raise UnetcapError(f"{path}: no patient code column (one of {', '.join(INFO_COLUMNS['code'])})")
    info = {}
    for _, row in table.iterrows():
        info[str(row[columns["code"]]).strip()] = {
            field: str(row[col]).strip() for field, col in columns.items() if col is not None and field != "code"
        }
    return info


def patients(root: Path, options: dict) -> list[Patient]:
    """One patient per sub-folder of `root`, named by its code, with the information CSV's
    vendor, centre, diagnosis and labelled frames when config `cohort.info` names one."""
    info = read_information(options["info"]) if options.get("info") else {}
    bad = []
    for code, entry in info.items():
        ed, es = entry.get("ED", ""), entry.get("ES", "")
        if (ed == "") != (es == "") or not all(v.isdecimal() for v in (ed, es) if v):
            bad.append(f"row {code}: ED {ed!r}, ES {es!r}")
    if bad:
        raise UnetcapError(
            f"{options['info']}: ED and ES must both be frame numbers (or both empty) in every row "
            f"(config key cohort.info): {'; '.join(bad[:20])}"
        )
    found = []
    for folder in patient_folders(root, example="A0S9V9/"):
        entry = info.get(folder.name, {})
        frames = tuple(int(entry[k]) for k in ("ED", "ES") if entry.get(k, ""))
        found.append(
            Patient(
                folder.name,
                folder,
                group=entry.get("group", ""),
                centre=entry.get("centre", ""),
                vendor=entry.get("vendor", ""),
                frames=frames,
            )
        )
    return found


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.nii.gz", folder / f"{name}.nii"):
        if candidate.is_file():
            return candidate
    return None


def images(patient: Patient, options: dict):
    """Every slice of every labelled frame, in study order."""
    folder, code = patient.folder, patient.id
    pairs, problems = _volume_pairs(folder, code)
    found = []
    for image, gt, phase in pairs:
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
        if volume.shape[:4] != labels.shape[:4]:
            problems.append((gt, f"labels of shape {labels.shape} but the image is {volume.shape}"))
            continue
        frames = [phase] if phase is not None else _cine_frames(patient, options, volume, gt, problems)
        if frames is None:
            continue
        found.extend(
            (position, z, t, str(image), str(gt)) for t in frames for z, position in enumerate(volume.positions)
        )
    if not found and not problems:
        problems.append(
            (
                folder,
                f"no labelled volumes ({code}_sa.nii.gz with {code}_sa_gt.nii.gz, "
                f"or {code}_SA_ED.nii.gz with {code}_SA_ED_gt.nii.gz)",
            )
        )
    return order_images(found), problems


def _volume_pairs(folder: Path, code: str) -> tuple[list[tuple[Path, Path, int | None]], list]:
    """The patient's (image volume, label volume, phase or None for the 4-D cine): the cine
    with its labels, else the ED and ES volumes with theirs; and [(path, problem)] for a
    volume without its partner."""
    problems, pairs = [], []
    cine, cine_gt = _find(folder, f"{code}_sa"), _find(folder, f"{code}_sa_gt")
    if cine is not None:
        if cine_gt is None:
            problems.append((cine, f"cine without labels (expected {code}_sa_gt.nii.gz beside it)"))
        else:
            pairs.append((cine, cine_gt, None))
    else:
        for phase, name in enumerate(PHASES):
            image, gt = _find(folder, f"{code}_SA_{name}"), _find(folder, f"{code}_SA_{name}_gt")
            if image is not None and gt is not None:
                pairs.append((image, gt, phase))
            elif image is not None or gt is not None:
                problems.append((image or gt, f"{name} volume without its {'labels' if image else 'image'}"))
    return pairs, problems


def _cine_frames(patient: Patient, options: dict, volume, gt: Path, problems: list) -> list[int] | None:
    """The labelled frames of a 4-D cine: the information CSV's ED and ES when it gives them
    (checked against the cine's frames and the label volume), else the frames the label
    volume labels. None, with the reason added to `problems`, when they cannot be used."""
    try:
        frames = list(patient.frames) or labelled_frames(gt)
    except ValueError as err:
        problems.append((gt, str(err)))
        return None
    depth = volume.shape[3] if len(volume.shape) > 3 else 1
    outside = [t for t in frames if not 0 <= t < depth]
    if outside:
        problems.append((gt, f"labelled frames {outside} (cohort.info) outside the cine's {depth} frames"))
        return None
    if patient.frames:  # the information CSV against the label volume
        try:
            labelled = labelled_frames(gt)
        except ValueError as err:
            problems.append((gt, str(err)))
            return None
        contradicted = [f"{key} is frame {t}" for key, t in zip(("ED", "ES"), frames) if t not in labelled]
        if contradicted:
            problems.append(
                (
                    options["info"],
                    f"row {patient.id}: {' and '.join(contradicted)}, but {gt.name} labels only "
                    f"frame(s) {labelled} (config key cohort.info)",
                )
            )
            return None
    return frames


def load(row, options: dict):
    """(header, pixels, labels) of one sampled slice."""
    return load_slice(row)
