"""The phantom's images: every phase of a short-axis slice, and a long-axis view.

A slice is drawn in the patient's anatomical frame (LV base centre at 0, mm): the static
tissues once, then the moving heart phase by phase inside the window its end-diastolic
outline leaves, then what the scanner adds (bias field, blur, Rician noise) and the stored
12-bit scale. Random draws come from the patient's generator in a fixed order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unetcap.phantom.anatomy import _Patient, _smooth

CHUNK_PIXELS = 1 << 21  # phases rendered together, at most this many pixels at a time


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


@dataclass
class _Heart:
    """What the phases of one slice draw the heart from: per-pixel arrays cut to the window
    around the heart (`win`), and per-phase radii and contraction."""

    p: dict
    win: tuple[slice, slice]
    rr: np.ndarray  # radius in units of the LV's angular shape, mm
    lx: np.ndarray  # anatomical frame, following the LV's drift along its axis
    ly: np.ndarray
    rvx2: np.ndarray  # squared distances from the RV centre
    rvy2: np.ndarray
    fat_side: np.ndarray  # where epicardial fat lies
    myo_level: np.ndarray
    blood_level: np.ndarray
    endo: np.ndarray  # (phases,)
    epi: np.ndarray
    contraction: np.ndarray
    rv_taper: float
    rv_ax: np.ndarray  # (phases,)
    rv_ay: np.ndarray
    pap_ok: bool  # papillary muscles at this level


def _render_slice(pt: _Patient, rng, z: float):
    """All phases of the short-axis slice at level z: images (uint16) and masks (bool)."""
    p, c = pt.p, pt.contraction
    x, y, lx, ly, theta, rr = _slice_coordinates(pt, z)
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
    win = _heart_window(pt, outline)
    heart = _Heart(
        p=p,
        win=win,
        rr=rr[win],
        lx=lx[win],
        ly=ly[win],
        rvx2=rvx2[win],
        rvy2=rvy2[win],
        fat_side=np.cos(theta[win] - p["fat_dir"]) > p["fat_arc"],
        myo_level=(p["i_myo"] * myo_tex[win]).astype(np.float32),
        blood_level=(p["i_blood"] * flow[win]).astype(np.float32),
        endo=endo,
        epi=epi,
        contraction=c,
        rv_taper=rv_taper,
        rv_ax=rv_ax,
        rv_ay=rv_ay,
        pap_ok=0.1 < z < p["pap_z"],
    )
    n, (rows, cols) = pt.n_phases, static.shape
    images = np.empty((n, rows, cols), np.uint16)
    masks = np.zeros((n, rows, cols), bool)
    step = max(1, CHUNK_PIXELS // (rows * cols))
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        img = np.broadcast_to(static, (sl.stop - sl.start, rows, cols)).copy()
        masks[sl, win[0], win[1]] = _draw_heart(img[:, win[0], win[1]], heart, sl)
        _acquire(img, pt, rng)
        images[sl] = img
    return images, masks


def _slice_coordinates(pt: _Patient, z: float):
    """Per pixel of the slice at level z: (x, y) in the anatomical frame (LV base centre at 0,
    mm), (lx, ly) following the LV's drift, the angle around the LV and the radius in units of
    its angular shape."""
    p = pt.p
    ii, jj = np.mgrid[: pt.rows, : pt.cols].astype(np.float32)
    dx, dy = (jj - pt.centre[1]) * pt.spacing, (ii - pt.centre[0]) * pt.spacing
    cos, sin = math.cos(p["rot"]), math.sin(p["rot"])
    x, y = cos * dx + sin * dy, -sin * dx + cos * dy  # anatomical frame, LV base centre at 0
    lx, ly = x - p["drift"][0] * z, y - p["drift"][1] * z
    rho = np.hypot(lx, ly)
    theta = np.arctan2(ly, lx)
    shape = 1 + p["harm2"] * np.cos(2 * (theta - p["ph2"])) + p["harm3"] * np.cos(3 * (theta - p["ph3"]))
    rr = (rho / shape).astype(np.float32)  # radius in units of the LV's angular shape
    return x, y, lx, ly, theta, rr


def _heart_window(pt: _Patient, outline: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns the heart can reach: it moves only inside its end-diastolic
    `outline` (plus epicardial fat), so it is drawn there only."""
    pad = math.ceil(pt.p["fat_w"] / pt.spacing) + 2
    r_any, c_any = np.flatnonzero(outline.any(axis=1)), np.flatnonzero(outline.any(axis=0))
    if len(r_any) == 0:
        r_any = c_any = np.array([0])
    r0, r1 = max(0, r_any[0] - pad), min(pt.rows, r_any[-1] + pad + 1)
    c0, c1 = max(0, c_any[0] - pad), min(pt.cols, c_any[-1] + pad + 1)
    return slice(r0, r1), slice(c0, c1)


def _draw_heart(view: np.ndarray, h: _Heart, sl: slice) -> np.ndarray:
    """Draw the heart of phases `sl` into `view` (phases x the heart's window, a view into the
    images): epicardial fat, the RV, the LV's myocardium, blood pool and papillary muscles.
    Returns the myocardium masks."""
    p = h.p
    en, ep, cc = (v[sl, None, None].astype(np.float32) for v in (h.endo, h.epi, h.contraction))
    outside = h.rr >= ep
    view[outside & (h.rr < ep + p["fat_w"]) & h.fat_side] = p["i_fat"]
    if h.rv_taper > 0:
        ax, ay = h.rv_ax[sl, None, None], h.rv_ay[sl, None, None]
        cavity_rv = (h.rvx2 / (ax * ax) + h.rvy2 / (ay * ay) < 1) & outside
        wall_rv = h.rvx2 / (ax + p["rv_wall"]) ** 2 + h.rvy2 / (ay + p["rv_wall"]) ** 2 < 1
        view[wall_rv & outside] = p["i_rv_wall"]
        np.copyto(view, np.broadcast_to(h.blood_level, view.shape), where=cavity_rv)
    cavity = h.rr < en
    myo = ~cavity & ~outside
    np.copyto(view, np.broadcast_to(h.myo_level, view.shape), where=myo)
    np.copyto(view, h.blood_level * (1 - p["flow_dim"] * cc), where=cavity)
    if h.pap_ok:
        for angle in p["pap_angles"]:
            d = en * (1 + p["harm2"] * math.cos(2 * (angle - p["ph2"]))) - 0.8 * p["pap_r"]
            px, py = d * math.cos(angle), d * math.sin(angle)
            view[cavity & ((h.lx - px) ** 2 + (h.ly - py) ** 2 < p["pap_r"] ** 2)] = p["i_pap"]
    return myo


def _acquire(img: np.ndarray, pt: _Patient, rng) -> None:
    """What the scanner makes of the tissues `img` (phases x rows x cols, float32, in place):
    bias field, blur, Rician noise, then the stored scale, rounded and clipped to 12 bits."""
    p = pt.p
    img *= pt.bias
    for k in range(len(img)):
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
