"""A synthetic cohort of cine short-axis MRI in the LVSC layout (the embedded demo's data).

:func:`write_cohort` writes one folder per patient, ``DET0000101/DET0000101_SA1_ph0.dcm``
with the myocardium mask beside it as ``DET0000101_SA1_ph0.png``, exactly as the LV
Segmentation Challenge training set is laid out, so the same reader (`unetcap.cohort`)
serves both.

Each patient is a small thorax seen in oblique short-axis planes: a left ventricle (bright
blood pool, papillary muscles, a myocardial ring that thickens in systole while the cavity
shrinks, tapering from base to apex), a right-ventricular crescent with a thin wall,
epicardial fat, lungs, chest wall, liver, aorta and spine, under a smooth bias field, a
slight blur and Rician noise. The myocardium's grey level overlaps the chest wall, the
liver, the RV wall and the papillary muscles, so no intensity threshold segments it.
Everything is drawn from the seed: the same seed gives byte-identical files.

Some patients carry the layout's edge cases (see :func:`edge_cases`): upper-case
extensions, 3-channel mask PNGs, long-axis files the reader must ignore, and slice labels
in the file names that do not follow the geometric order of the slices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from unetcap import UnetcapError
from unetcap.common import atomic_dir

log = logging.getLogger(__name__)

# Vendors of the LVSC cohort, with scanner models by field strength.
MODELS = {
    "GE MEDICAL SYSTEMS": {1.5: ["Signa HDxt", "Signa Excite"], 3.0: ["Signa HDxt", "DISCOVERY MR750"]},
    "Philips Medical Systems": {1.5: ["Achieva", "Intera"], 3.0: ["Achieva"]},
    "SIEMENS": {1.5: ["Avanto", "Espree", "Sonata"], 3.0: ["Verio", "TrioTim"]},
}
# Acquisition matrices a cine protocol typically reconstructs to.
STANDARD_MATRIX = (138, 144, 156, 160, 168, 176, 192, 208, 224, 240, 256, 288, 320, 384, 448, 512)
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; the suffix is a hash of the seed
CHUNK_PIXELS = 1 << 21  # phases rendered together, at most this many pixels at a time
EDGE_CASES = ("upper_case", "rgb_mask", "label_order", "long_axis")


def patient_id(index: int) -> str:
    """The LVSC-style id of the index-th patient (from 0): DET0000101, DET0000201, ..."""
    return f"DET{(index + 1) * 100 + 1:07d}"


def edge_cases(patients: int, seed: int) -> dict[str, list[str]]:
    """Which patients of the cohort `write_cohort(_, patients, seed)` carry which edge case.

    `upper_case`: one patient whose files end in ``.DCM`` / ``.PNG``; `rgb_mask`: one patient
    whose masks are 3-channel PNGs (myocardium in the green channel only); `label_order`:
    one patient whose SA numbers in the file names are a shuffle of the geometric order
    (neither ascending nor descending when it has 3 slices or more); `long_axis`: two
    patients with long-axis files ``<PID>_LA1_ph0`` and ``<PID>_LA2_ph0`` (+ masks) that a
    reader must ignore. With five patients or more these are five different patients.
    """
    order = np.random.default_rng([seed, 0xED6E]).permutation(patients)
    pick = [patient_id(int(order[i % patients])) for i in range(5)]
    return {
        "upper_case": [pick[0]],
        "rgb_mask": [pick[1]],
        "label_order": [pick[2]],
        "long_axis": sorted(set(pick[3:5])),
    }


def write_cohort(out_dir, patients: int, seed: int, *, slices=(8, 24), phases=(18, 35), matrix=(138, 512)) -> list[str]:
    """Write a synthetic cohort of `patients` patients in the LVSC layout to `out_dir`.

    `slices`, `phases` and `matrix` are inclusive (min, max) ranges of each patient's
    short-axis slice count, phase count and image rows/columns (each drawn per patient).
    The same `seed` gives byte-identical files; the folder appears whole or not at all
    (written beside it, then renamed into place, replacing what was there).
    Returns the patient ids, in order.
    """
    slices, phases, matrix = _check(patients, seed, slices, phases, matrix)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        cases = edge_cases(patients, seed)
        ids = []
        for index in range(patients):
            pid = patient_id(index)
            patient = _draw_patient(np.random.default_rng([seed, index]), pid, slices, phases, matrix)
            _write_patient(tmp / pid, patient, seed, cases)
            log.info(
                "patient %s (%d/%d): %d slices x %d phases, %dx%d px at %.2f mm, %s %.1f T",
                pid,
                index + 1,
                patients,
                patient.n_slices,
                patient.n_phases,
                patient.rows,
                patient.cols,
                patient.spacing,
                patient.vendor,
                patient.field,
            )
            ids.append(pid)
    log.info("%d patients -> %s", patients, out)
    return ids


# ---------------------------------------------------------------------------------------
# Checks


def _check(patients, seed, slices, phases, matrix):
    problems = []

    def span(name, value, least):
        try:
            lo, hi = (int(v) for v in value)
        except (TypeError, ValueError):
            problems.append(f"cohort.phantom.{name}: expected [min, max], got {value!r}")
            return None
        if not least <= lo <= hi:
            problems.append(f"cohort.phantom.{name}: need {least} <= min <= max, got [{lo}, {hi}]")
        return lo, hi

    if not isinstance(patients, int) or not 1 <= patients <= 9_999:
        problems.append(f"cohort.patients: need a whole number from 1 to 9999, got {patients!r}")
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"cohort.phantom.seed: need a whole number >= 0, got {seed!r}")
    ranges = span("slices", slices, 1), span("phases", phases, 1), span("matrix", matrix, 16)
    if problems:
        raise UnetcapError("phantom cohort: bad settings\n  " + "\n  ".join(problems))
    return ranges


# ---------------------------------------------------------------------------------------
# One patient: every parameter drawn up front


@dataclass
class _Patient:
    pid: str
    n_slices: int
    n_phases: int
    rows: int
    cols: int
    spacing: float  # pixel spacing, mm (square pixels)
    vendor: str
    model: str
    field: float
    slice_gap: float  # distance between slice centres, mm
    thickness: float
    apex_last: bool  # geometric order runs base -> apex (else apex -> base)
    row_cos: np.ndarray
    col_cos: np.ndarray
    normal: np.ndarray
    origin: np.ndarray  # ImagePositionPatient of the first geometric slice
    centre: tuple[float, float]  # LV centre at the base, pixels (row, col)
    rr_ms: float  # RR interval
    contraction: np.ndarray  # (phases,) 0 at end-diastole, 1 at end-systole
    p: dict  # anatomy, intensities, noise
    bias: np.ndarray  # (rows, cols) multiplicative bias field
    scale: float  # signal 1.0 -> this stored value
    study_date: str


def _draw_matrix(rng, lo, hi):
    """Rows and columns: standard sizes in [lo, hi], mostly about 256, often square."""
    sizes = np.array(sorted({v for v in STANDARD_MATRIX if lo <= v <= hi} | {lo, hi}))
    weight = np.exp(-0.5 * (np.log2(sizes / 256) / 0.6) ** 2)
    rows = int(rng.choice(sizes, p=weight / weight.sum()))
    weight = np.where(sizes < rows, 0, weight * np.where(sizes == rows, 3, 1))
    cols = int(rng.choice(sizes, p=weight / weight.sum()))
    if rng.random() < 0.15:  # some protocols are portrait
        rows, cols = cols, rows
    return rows, cols


def _contraction(n, t_systole, t_relax):
    """Fraction of maximal contraction per phase: 0 at end-diastole (phase 0), 1 at end-systole."""
    phi = np.arange(n) / n
    c = np.zeros(n)
    up = phi < t_systole
    c[up] = 0.5 * (1 - np.cos(np.pi * phi[up] / t_systole))
    down = (phi >= t_systole) & (phi < t_systole + t_relax)
    c[down] = 0.5 * (1 + np.cos(np.pi * (phi[down] - t_systole) / t_relax))
    return c


def _unit(v):
    return v / np.linalg.norm(v)


def _smooth(rng, shape, cells):
    """A smooth random field of about unit amplitude over an image of `shape`."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _draw_patient(rng, pid, slices, phases, matrix) -> _Patient:
    u = rng.uniform
    n_slices = int(rng.integers(slices[0], slices[1] + 1))
    n_phases = int(rng.integers(phases[0], phases[1] + 1))
    rows, cols = _draw_matrix(rng, *matrix)
    size = max(rows, cols)
    if size >= 128:
        spacing = float(np.clip(u(280, 380) / size, 0.7, 2.0))
    else:  # test-sized images: coarser pixels so the heart still fits
        spacing = u(150, 190) / size
    spacing = round(spacing, 4)
    vendor = str(rng.choice(list(MODELS)))
    field = 1.5 if rng.random() < 0.7 else 3.0
    model = str(rng.choice(MODELS[vendor][field]))

    # Left ventricle (mm), end-diastolic, at the base; its long axis spans z = 0 (base) .. 1.
    r_endo = u(20, 29)
    wall = u(6.5, 11)
    shrink = u(0.25, 0.4)  # cavity radius loss at end-systole
    thicken = 1.12 / (1 - shrink) - 1 + u(0, 0.25)  # wall gain: myocardial area grows in systole
    z_endo = u(0.84, 0.98)  # where the cavity closes
    z_epi = z_endo + u(0.05, 0.12)  # where the myocardium ends (beyond 1: present in the last slice)
    length = u(80, 105)
    gap = round(length * u(1.0, 1.12) / max(n_slices - 1, 1), 2) if n_slices > 1 else 8.0
    thickness = round(min(gap, float(rng.choice([6.0, 7.0, 8.0, 10.0]))), 2)
    r_epi = r_endo + wall
    fov = min(rows, cols) * spacing
    room = max(0.0, min(25.0, fov / 2 - 1.7 * r_epi))
    centre = (rows / 2 + u(-room, room) / spacing, cols / 2 + u(-room, room) / spacing)

    rv_ax = u(0.8, 1.1)  # RV half-width over the LV's epicardial radius
    myo = u(0.22, 0.36)
    blood = u(0.82, 1.0)
    p = dict(
        r_endo=r_endo,
        r_epi=r_epi,
        shrink=shrink,
        thicken=thicken,
        z_endo=z_endo,
        z_epi=z_epi,
        harm2=u(0, 0.07),
        ph2=u(0, 2 * np.pi),
        harm3=u(0, 0.035),
        ph3=u(0, 2 * np.pi),
        drift=(u(-6, 6), u(-6, 6)),
        rot=u(-0.35, 0.35),
        pap_r=u(2.5, 4.5),
        pap_angles=(u(0.3, 1.1), u(1.9, 2.7)),
        pap_z=u(0.6, 0.8),
        rv_dx=-r_epi * (rv_ax + u(-0.3, 0.1)),
        rv_dy=u(-8, 8),
        rv_ax=r_epi * rv_ax,
        rv_ay=r_epi * u(1.2, 1.6),
        rv_wall=u(2.5, 4.0),
        rv_z=u(0.6, 0.85),
        rv_shrink=u(0.12, 0.25),
        fat_w=u(1.5, 4.5),
        fat_dir=u(0, 2 * np.pi),
        fat_arc=u(-0.3, 0.5),
        body=(u(-50, -20), u(25, 55), u(140, 190), u(95, 130)),
        sub_fat=u(6, 22),
        muscle=u(8, 18),
        lung_r=(-r_epi - u(45, 65), u(-15, 15), u(40, 60), u(60, 85)),
        lung_l=(r_epi + u(20, 40), u(-5, 25), u(30, 50), u(55, 80)),
        liver=(-u(35, 65), u(35, 65), u(80, 110), u(60, 80)),
        liver_z=u(0.35, 0.65),
        aorta=(u(5, 25), r_epi + u(18, 30), u(9, 13)),
        spine_dy=u(22, 32),
        spine_r=u(14, 19),
        margin=u(3, 7),
        # Grey levels (blood pool ~ 1): the myocardium's overlaps chest wall, liver, RV wall.
        i_blood=blood,
        i_myo=myo,
        i_pap=myo * u(0.95, 1.15),
        i_rv_wall=myo * u(0.95, 1.2),
        i_muscle=myo * u(0.9, 1.25),
        i_liver=myo * u(1.0, 1.4),
        i_fat=u(0.6, 0.9),
        i_soft=myo * u(0.9, 1.6),
        i_medi=myo * u(0.95, 1.5),
        medi_fat=u(0.3, 1.2),
        i_lung=u(0.02, 0.08),
        i_aorta=blood * u(0.85, 1.05),
        i_spine=u(0.2, 0.35),
        flow_dim=u(0.0, 0.1),
        texture=u(0.04, 0.1),
        noise=u(0.02, 0.06),
        blur=u(0.5, 1.0),
    )

    # Geometry in patient coordinates (LPS): the long axis points left, anterior, inferior.
    long_axis = _unit(np.array([0.6, -0.5, -0.6]) + rng.normal(0, 0.12, 3))
    e1 = _unit(np.cross(long_axis, [0.0, 0.0, 1.0]))
    e2 = np.cross(long_axis, e1)
    turn = u(-0.6, 0.6)
    apex_last = bool(rng.random() < 0.7)
    normal = long_axis if apex_last else -long_axis
    row_cos = np.cos(turn) * e1 + np.sin(turn) * e2
    col_cos = np.cross(normal, row_cos)  # so that cross(row, col) = normal
    base_centre = np.array([u(-10, 40), u(-60, -10), u(-80, 10)])
    first = base_centre if apex_last else base_centre - (n_slices - 1) * gap * normal
    origin = first - centre[1] * spacing * row_cos - centre[0] * spacing * col_cos

    bias = np.exp(0.12 * _smooth(rng, (rows, cols), 3)).astype(np.float32)
    ramp = np.linspace(u(0.05, 0.2), -u(0.0, 0.1), rows, dtype=np.float32)[:, None]  # anterior coil
    bias *= np.exp(ramp)
    return _Patient(
        pid=pid,
        n_slices=n_slices,
        n_phases=n_phases,
        rows=rows,
        cols=cols,
        spacing=spacing,
        vendor=vendor,
        model=model,
        field=field,
        slice_gap=gap,
        thickness=thickness,
        apex_last=apex_last,
        row_cos=row_cos,
        col_cos=col_cos,
        normal=normal,
        origin=origin,
        centre=centre,
        rr_ms=60000 / u(55, 90),
        contraction=_contraction(n_phases, u(0.3, 0.4), u(0.3, 0.4)),
        p=p,
        bias=bias,
        scale=u(700, 2600) / 1.6,
        study_date=f"20{int(rng.integers(7, 10)):02d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
    )


# ---------------------------------------------------------------------------------------
# Rendering


def _taper(z, z_end):
    """Radius profile of a half ellipsoid: 1 at the base (z = 0), 0 from z_end on."""
    return np.sqrt(np.clip(1 - (np.asarray(z) / z_end) ** 2, 0, None))


def _lv_radii(p, z, c):
    """Endocardial and epicardial radius (mm, before the angular shape) at level z, contraction c."""
    endo_ed = p["r_endo"] * _taper(z, p["z_endo"])
    epi_ed = p["r_epi"] * _taper(z, p["z_epi"])
    endo = endo_ed * (1 - p["shrink"] * c)
    epi = np.minimum(endo + (epi_ed - endo_ed) * (1 + p["thicken"] * c), epi_ed)
    return endo, epi


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 < 1


def _background(p, x, y, z, outline, patches):
    """Static tissues of one slice (grey levels); the heart's neighbourhood is mediastinum,
    myocardium-like tissue with patches of fat where the random field `patches` is high."""
    bx, by, bax, bay = p["body"]
    img = np.zeros(x.shape, np.float32)
    img[_ellipse(x, y, bx, by, bax, bay)] = p["i_fat"]
    inner = _ellipse(x, y, bx, by, bax - p["sub_fat"], bay - p["sub_fat"])
    img[inner] = p["i_muscle"]
    thorax = _ellipse(x, y, bx, by, bax - p["sub_fat"] - p["muscle"], bay - p["sub_fat"] - p["muscle"])
    img[thorax] = p["i_soft"]
    for lung in (p["lung_r"], p["lung_l"]):
        img[thorax & _ellipse(x, y, *lung)] = p["i_lung"]
    grow = np.sqrt(np.clip((z - p["liver_z"]) / 0.4, 0, 1))
    if grow > 0:
        lx, ly, lax, lay = p["liver"]
        img[thorax & _ellipse(x, y, lx, ly, lax * grow, lay * grow)] = p["i_liver"]
    img[outline] = np.where(patches[outline] > p["medi_fat"], p["i_fat"], p["i_medi"])
    ax_, ay_, ar = p["aorta"]
    img[_ellipse(x, y, ax_, ay_, ar, ar)] = p["i_aorta"]
    img[_ellipse(x, y, ax_ - 10, ay_ + p["spine_dy"], p["spine_r"], p["spine_r"])] = p["i_spine"]
    return img


def _render_slice(pt: _Patient, rng, z: float):
    """All phases of the short-axis slice at level z: images (uint16) and masks (bool)."""
    p, c = pt.p, pt.contraction
    ii, jj = np.mgrid[: pt.rows, : pt.cols].astype(np.float32)
    dx, dy = (jj - pt.centre[1]) * pt.spacing, (ii - pt.centre[0]) * pt.spacing
    cos, sin = math.cos(p["rot"]), math.sin(p["rot"])
    x, y = cos * dx + sin * dy, -sin * dx + cos * dy  # anatomical frame, LV base centre at 0
    lx, ly = x - p["drift"][0] * z, y - p["drift"][1] * z
    rho = np.hypot(lx, ly)
    theta = np.arctan2(ly, lx)
    shape = 1 + p["harm2"] * np.cos(2 * (theta - p["ph2"])) + p["harm3"] * np.cos(3 * (theta - p["ph3"]))
    rr = (rho / shape).astype(np.float32)  # radius in units of the LV's angular shape

    endo, epi = _lv_radii(p, z, c)  # (phases,)
    rv_taper = float(_taper(z, p["rv_z"]))
    rv_ax = p["rv_ax"] * rv_taper * (1 - p["rv_shrink"] * c)
    rv_ay = p["rv_ay"] * rv_taper * (1 - p["rv_shrink"] * c)
    rvx2, rvy2 = (lx - p["rv_dx"]) ** 2, (ly - p["rv_dy"]) ** 2
    epi_ed = float(epi[0])
    outline = rr < epi_ed + p["margin"]
    if rv_taper > 0:
        m = p["rv_wall"] + p["margin"]
        outline |= rvx2 / (rv_ax[0] + m) ** 2 + rvy2 / (rv_ay[0] + m) ** 2 < 1
    static = _background(p, x, y, z, outline, _smooth(rng, outline.shape, 12))
    static *= 1 + p["texture"] * _smooth(rng, static.shape, 6)
    myo_tex = 1 + 0.5 * p["texture"] * _smooth(rng, static.shape, 8)
    flow = 1 + p["texture"] * _smooth(rng, static.shape, 5)
    pap_ok = 0.1 < z < p["pap_z"]

    # The heart moves only inside its end-diastolic outline (plus epicardial fat): draw there.
    pad = math.ceil(p["fat_w"] / pt.spacing) + 2
    r_any, c_any = np.flatnonzero(outline.any(axis=1)), np.flatnonzero(outline.any(axis=0))
    if len(r_any) == 0:
        r_any = c_any = np.array([0])
    r0, r1 = max(0, r_any[0] - pad), min(pt.rows, r_any[-1] + pad + 1)
    c0, c1 = max(0, c_any[0] - pad), min(pt.cols, c_any[-1] + pad + 1)
    win = (slice(r0, r1), slice(c0, c1))
    rr, lx, ly, rvx2, rvy2 = rr[win], lx[win], ly[win], rvx2[win], rvy2[win]
    fat_side = np.cos(theta[win] - p["fat_dir"]) > p["fat_arc"]
    myo_level = (p["i_myo"] * myo_tex[win]).astype(np.float32)
    blood_level = (p["i_blood"] * flow[win]).astype(np.float32)

    n, (rows, cols) = pt.n_phases, static.shape
    images = np.empty((n, rows, cols), np.uint16)
    masks = np.zeros((n, rows, cols), bool)
    step = max(1, CHUNK_PIXELS // (rows * cols))
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        en, ep, cc = (v[sl, None, None].astype(np.float32) for v in (endo, epi, c))
        img = np.broadcast_to(static, (len(cc), rows, cols)).copy()
        heart = img[:, win[0], win[1]]  # a view: drawing here draws into img
        outside = rr >= ep
        heart[outside & (rr < ep + p["fat_w"]) & fat_side] = p["i_fat"]
        if rv_taper > 0:
            ax, ay = rv_ax[sl, None, None], rv_ay[sl, None, None]
            cavity_rv = (rvx2 / (ax * ax) + rvy2 / (ay * ay) < 1) & outside
            wall_rv = rvx2 / (ax + p["rv_wall"]) ** 2 + rvy2 / (ay + p["rv_wall"]) ** 2 < 1
            heart[wall_rv & outside] = p["i_rv_wall"]
            np.copyto(heart, np.broadcast_to(blood_level, heart.shape), where=cavity_rv)
        cavity = rr < en
        myo = ~cavity & ~outside
        np.copyto(heart, np.broadcast_to(myo_level, heart.shape), where=myo)
        np.copyto(heart, blood_level * (1 - p["flow_dim"] * cc), where=cavity)
        if pap_ok:
            for angle in p["pap_angles"]:
                d = en * (1 + p["harm2"] * math.cos(2 * (angle - p["ph2"]))) - 0.8 * p["pap_r"]
                px, py = d * math.cos(angle), d * math.sin(angle)
                heart[cavity & ((lx - px) ** 2 + (ly - py) ** 2 < p["pap_r"] ** 2)] = p["i_pap"]
        masks[sl, win[0], win[1]] = myo
        img *= pt.bias
        for k in range(len(cc)):
            cv2.GaussianBlur(img[k], (0, 0), p["blur"], dst=img[k])
        # Rician noise: the magnitude of a complex signal with Gaussian noise in both parts.
        sigma = np.float32(p["noise"] * p["i_blood"])
        img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
        img *= img
        imag = rng.standard_normal(img.shape, dtype=np.float32)
        imag *= sigma
        imag *= imag
        img += imag
        np.sqrt(img, out=img)
        img *= np.float32(pt.scale)
        np.clip(np.rint(img, out=img), 0, 4095, out=img)
        images[sl] = img
    return images, masks


def _render_long_axis(pt: _Patient, rng, turn: float):
    """A long-axis view through the LV centre line at end-diastole: image, mask, geometry."""
    p = pt.p
    rows, cols = pt.cols, pt.rows  # a different shape from the short-axis images
    ii, jj = np.mgrid[:rows, :cols].astype(np.float32)
    span = (pt.n_slices - 1) * pt.slice_gap
    along = (ii - rows / 2) * pt.spacing + span / 2  # mm along the normal from the first slice
    k = along / max(span, 1e-6)
    z = k if pt.apex_last else 1 - k
    b = np.abs(jj - cols / 2) * pt.spacing
    endo, epi = _lv_radii(p, np.clip(z, 0, None), 0.0)
    heart = z >= 0
    myo = heart & (b >= endo) & (b < epi)
    img = np.full((rows, cols), p["i_soft"], np.float32)
    img[np.abs(jj - cols / 2) * pt.spacing > p["r_epi"] + 25] = p["i_lung"]
    outline = np.maximum(epi, p["r_epi"] * (z < 0)) + p["margin"]
    img[(z > -0.6) & (z < p["z_epi"]) & (b < outline)] = p["i_medi"]
    img[(z < 0) & (z > -0.5) & (b < p["r_endo"] * 1.1)] = p["i_blood"]  # atrium
    img[myo] = p["i_myo"]
    img[heart & (b < endo)] = p["i_blood"]
    img = cv2.GaussianBlur(img, (0, 0), p["blur"])
    sigma = p["noise"] * p["i_blood"]
    noisy = np.hypot(
        img + rng.standard_normal(img.shape, dtype=np.float32) * sigma,
        rng.standard_normal(img.shape, dtype=np.float32) * sigma,
    )
    image = np.clip(np.rint(noisy * pt.scale), 0, 4095).astype(np.uint16)
    row_cos = math.cos(turn) * pt.row_cos + math.sin(turn) * pt.col_cos
    mid = (
        pt.origin
        + pt.centre[1] * pt.spacing * pt.row_cos
        + pt.centre[0] * pt.spacing * pt.col_cos
        + span / 2 * pt.normal
    )
    origin = mid - cols / 2 * pt.spacing * row_cos - rows / 2 * pt.spacing * pt.normal
    return image, myo, (row_cos, pt.normal, origin)


# ---------------------------------------------------------------------------------------
# Files


def _ds(x: float) -> str:
    """A decimal string (DS) of at most 16 characters."""
    return f"{round(float(x), 6) + 0.0:.6f}".rstrip("0").rstrip(".")


def _uid(seed, *parts) -> str:
    return generate_uid(UID_ROOT, entropy_srcs=["unetcap-phantom", str(seed), *map(str, parts)])


def _dataset(pt: _Patient, seed: int) -> Dataset:
    """The header shared by a patient's short-axis images; per-image fields set later."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = pt.study_date
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = pt.vendor
    ds.ManufacturerModelName = pt.model
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CARDIAC MRI"
    ds.SeriesDescription = "CINE SAX"
    ds.PatientName = pt.pid
    ds.PatientID = pt.pid
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "HEART"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SS", "SK"]
    ds.ScanOptions = "CG"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _ds(pt.thickness)
    ds.RepetitionTime = _ds(3.0 + 0.4 * (pt.field == 1.5))
    ds.EchoTime = _ds(1.4 + 0.2 * (pt.field == 1.5))
    ds.ImagingFrequency = _ds(42.577478 * pt.field)
    ds.MagneticFieldStrength = _ds(pt.field)
    ds.SpacingBetweenSlices = _ds(pt.slice_gap)
    ds.FlipAngle = "60" if pt.field == 1.5 else "45"
    ds.NominalInterval = _ds(round(pt.rr_ms))
    ds.HeartRate = str(round(60000 / pt.rr_ms))
    ds.CardiacNumberOfImages = pt.n_phases
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(seed, pt.pid, "study")
    ds.SeriesInstanceUID = _uid(seed, pt.pid, "series", "SA")
    ds.FrameOfReferenceUID = _uid(seed, pt.pid, "frame")
    ds.StudyID = "1"
    ds.SeriesNumber = 5
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in (*pt.row_cos, *pt.col_cos)]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pt.rows, pt.cols
    ds.PixelSpacing = [_ds(pt.spacing), _ds(pt.spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds(round(0.5 * pt.scale))
    ds.WindowWidth = _ds(round(1.1 * pt.scale))
    return ds


def _save(ds: Dataset, path: Path, sop: str, position, instance: int, trigger: float, pixels) -> None:
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [_ds(v) for v in position]
    orientation = [float(v) for v in ds.ImageOrientationPatient]
    ds.SliceLocation = _ds(np.dot(position, np.cross(orientation[:3], orientation[3:])))
    ds.TriggerTime = _ds(trigger)
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(pixels, dtype="<u2").tobytes())  # PixelData
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _save_mask(path: Path, mask: np.ndarray, rgb: bool) -> None:
    png = mask.astype(np.uint8) * 255
    if rgb:  # myocardium in the green channel only (BGR or RGB alike)
        zero = np.zeros_like(png)
        png = np.dstack([zero, png, zero])
    if not cv2.imwrite(str(path), png):
        raise UnetcapError(f"{path}: could not write the mask PNG")


def _write_patient(folder: Path, pt: _Patient, seed: int, cases: dict) -> None:
    folder.mkdir()
    upper = pt.pid in cases["upper_case"]
    dcm, png = (".DCM", ".PNG") if upper else (".dcm", ".png")
    rgb = pt.pid in cases["rgb_mask"]
    rng = np.random.default_rng([seed, int(pt.pid[3:]), 1])
    labels = list(range(1, pt.n_slices + 1))
    if pt.pid in cases["label_order"]:
        labels = labels[::-1]
        while pt.n_slices >= 3 and (labels == sorted(labels) or labels == sorted(labels, reverse=True)):
            labels = [int(v) for v in rng.permutation(pt.n_slices) + 1]
    ds = _dataset(pt, seed)
    for k, label in enumerate(labels):  # k: geometric order along the normal
        z = k / (pt.n_slices - 1) if pt.n_slices > 1 else 0.5
        if not pt.apex_last:
            z = 1 - z
        images, masks = _render_slice(pt, rng, z)
        position = pt.origin + k * pt.slice_gap * pt.normal
        for phase in range(pt.n_phases):
            stem = f"{pt.pid}_SA{label}_ph{phase}"
            _save(
                ds,
                folder / (stem + dcm),
                _uid(seed, pt.pid, "SA", label, phase),
                position,
                (label - 1) * pt.n_phases + phase + 1,
                phase * pt.rr_ms / pt.n_phases,
                images[phase],
            )
            _save_mask(folder / (stem + png), masks[phase], rgb)
    if pt.pid in cases["long_axis"]:
        for view, turn in ((1, 0.0), (2, math.pi / 3)):
            image, mask, (row_cos, col_cos, origin) = _render_long_axis(pt, rng, turn)
            la = _dataset(pt, seed)
            la.SeriesInstanceUID = _uid(seed, pt.pid, "series", "LA", view)
            la.SeriesNumber = 5 + view
            la.SeriesDescription = f"CINE LA{view}"
            la.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
            la.Rows, la.Columns = image.shape
            stem = f"{pt.pid}_LA{view}_ph0"
            _save(la, folder / (stem + dcm), _uid(seed, pt.pid, "LA", view, 0), origin, 1, 0.0, image)
            _save_mask(folder / (stem + png), mask, rgb)
