"""One phantom patient, every parameter drawn up front: scanner, matrix and spacing, the
heart's shape and motion, the thorax around it, grey levels, slice geometry and bias field.

The draws happen in a fixed order from the patient's own generator, so the same seed gives
the same patient (and the same files); a function here that draws must keep its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Vendors of the LVSC cohort, with scanner models by field strength.
MODELS = {
    "GE MEDICAL SYSTEMS": {1.5: ["Signa HDxt", "Signa Excite"], 3.0: ["Signa HDxt", "DISCOVERY MR750"]},
    "Philips Medical Systems": {1.5: ["Achieva", "Intera"], 3.0: ["Achieva"]},
    "SIEMENS": {1.5: ["Avanto", "Espree", "Sonata"], 3.0: ["Verio", "TrioTim"]},
}
# Acquisition matrices a cine protocol typically reconstructs to.
STANDARD_MATRIX = (138, 144, 156, 160, 168, 176, 192, 208, 224, 240, 256, 288, 320, 384, 448, 512)


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
    """Patient `pid` of `slices`, `phases` and `matrix` ((min, max) ranges), every parameter
    drawn from `rng`: scanner and matrix, left ventricle, slice stack, anatomy and grey
    levels, geometry, bias field, then the cardiac cycle, scale and study date."""
    u = rng.uniform
    n_slices = int(rng.integers(slices[0], slices[1] + 1))
    n_phases = int(rng.integers(phases[0], phases[1] + 1))
    rows, cols = _draw_matrix(rng, *matrix)
    spacing = _draw_spacing(rng, max(rows, cols))
    vendor = str(rng.choice(list(MODELS)))
    field = 1.5 if rng.random() < 0.7 else 3.0
    model = str(rng.choice(MODELS[vendor][field]))
    lv = _draw_ventricle(rng)
    gap, thickness = _draw_stack(rng, n_slices)
    fov = min(rows, cols) * spacing
    room = max(0.0, min(25.0, fov / 2 - 1.7 * lv["r_epi"]))
    centre = (rows / 2 + u(-room, room) / spacing, cols / 2 + u(-room, room) / spacing)
    p = _draw_anatomy(rng, lv)
    row_cos, col_cos, normal, origin, apex_last = _draw_geometry(rng, n_slices, gap, centre, spacing)
    bias = _draw_bias(rng, rows, cols)
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


def _draw_spacing(rng, size: int) -> float:
    """Pixel spacing (mm) for a matrix whose longer side is `size`: a field of view of a
    thorax, coarser for test-sized images so that the heart still fits."""
    u = rng.uniform
    if size >= 128:
        spacing = float(np.clip(u(280, 380) / size, 0.7, 2.0))
    else:  # test-sized images: coarser pixels so the heart still fits
        spacing = u(150, 190) / size
    return round(spacing, 4)


def _draw_ventricle(rng) -> dict:
    """The left ventricle (mm), end-diastolic, at the base; its long axis spans z = 0 (base) .. 1."""
    u = rng.uniform
    r_endo = u(20, 29)
    wall = u(6.5, 11)
    shrink = u(0.25, 0.4)  # cavity radius loss at end-systole
    thicken = 1.12 / (1 - shrink) - 1 + u(0, 0.25)  # wall gain: myocardial area grows in systole
    z_endo = u(0.84, 0.98)  # where the cavity closes
    z_epi = z_endo + u(0.05, 0.12)  # where the myocardium ends (beyond 1: present in the last slice)
    return dict(r_endo=r_endo, r_epi=r_endo + wall, shrink=shrink, thicken=thicken, z_endo=z_endo, z_epi=z_epi)


def _draw_stack(rng, n_slices: int) -> tuple[float, float]:
    """(slice gap, slice thickness) in mm: the slices span the ventricle's length and a bit."""
    u = rng.uniform
    length = u(80, 105)
    gap = round(length * u(1.0, 1.12) / max(n_slices - 1, 1), 2) if n_slices > 1 else 8.0
    thickness = round(min(gap, float(rng.choice([6.0, 7.0, 8.0, 10.0]))), 2)
    return gap, thickness


def _draw_anatomy(rng, lv: dict) -> dict:
    """The patient's parameters `p`: the left ventricle `lv` with its shape, motion and
    papillary muscles, the right ventricle, epicardial fat, the thorax around the heart,
    grey levels, texture, noise and blur."""
    u = rng.uniform
    rv_ax = u(0.8, 1.1)  # RV half-width over the LV's epicardial radius
    myo = u(0.22, 0.36)
    blood = u(0.82, 1.0)
    r_epi = lv["r_epi"]
    p = dict(
        **lv,
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
    )
    p.update(_draw_thorax(rng, r_epi))
    p.update(_draw_grey_levels(rng, myo, blood))
    return p


def _draw_thorax(rng, r_epi: float) -> dict:
    """Body outline, subcutaneous fat and chest-wall muscle, lungs, liver, aorta and spine (mm)."""
    u = rng.uniform
    return dict(
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
    )


def _draw_grey_levels(rng, myo: float, blood: float) -> dict:
    """Grey levels (blood pool ~ 1): the myocardium's overlaps chest wall, liver, RV wall;
    then texture, noise and blur."""
    u = rng.uniform
    return dict(
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


def _draw_geometry(rng, n_slices: int, gap: float, centre, spacing: float):
    """(row cosines, column cosines, slice normal, origin of the first geometric slice,
    apex_last) in patient coordinates (LPS): the long axis points left, anterior, inferior."""
    u = rng.uniform
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
    return row_cos, col_cos, normal, origin, apex_last


def _draw_bias(rng, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) multiplicative bias field: smooth, brighter towards the anterior coil."""
    u = rng.uniform
    bias = np.exp(0.12 * _smooth(rng, (rows, cols), 3)).astype(np.float32)
    ramp = np.linspace(u(0.05, 0.2), -u(0.0, 0.1), rows, dtype=np.float32)[:, None]  # anterior coil
    bias *= np.exp(ramp)
    return bias
